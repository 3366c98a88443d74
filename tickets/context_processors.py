from django.utils.functional import SimpleLazyObject

from .rules import is_approver
from .selectors import count_awaiting_decision

# The badge beside the approvals link counts this far, then reads "99+" (the queue itself
# says how many wait in all).
BADGE_MOST = 99


def waiting_badge(count: int) -> str:
    """The badge's text for `count` waiting tickets; empty for none."""
    if count > BADGE_MOST:
        return f"{BADGE_MOST}+"
    return str(count) if count else ""


def approver_role(request):
    """May the user decide tickets (for menus), by the rule the pages enforce, and how many
    await them now (the badge beside the approvals link)."""
    return {
        "may_approve": SimpleLazyObject(lambda: is_approver(user=request.user)),
        "approvals_waiting": SimpleLazyObject(
            lambda: waiting_badge(
                count_awaiting_decision(user=request.user, at_most=BADGE_MOST + 1)
            )
        ),
    }
