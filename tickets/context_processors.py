from django.utils.functional import SimpleLazyObject

from .rules import is_approver
from .selectors import tickets_awaiting_decision


def approver_role(request):
    """May the user decide tickets (for menus), by the rule the pages enforce, and how many
    await them now (the count beside the approvals link)."""
    return {
        "may_approve": SimpleLazyObject(lambda: is_approver(user=request.user)),
        "approvals_waiting": SimpleLazyObject(
            lambda: tickets_awaiting_decision(user=request.user).count()
        ),
    }
