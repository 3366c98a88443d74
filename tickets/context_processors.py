from django.utils.functional import SimpleLazyObject

from .rules import is_approver


def approver_role(request):
    """May the user decide tickets (for menus), by the rule the pages enforce."""
    return {"may_approve": SimpleLazyObject(lambda: is_approver(user=request.user))}
