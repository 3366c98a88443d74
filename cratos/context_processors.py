from django.utils.functional import SimpleLazyObject

from redeploy.audit_selectors import may_review_audit
from tickets.rules import is_approver


def roles(request):
    """Role flags for menus, from the same rules the pages enforce (evaluated when used)."""
    return {
        "may_review": SimpleLazyObject(lambda: may_review_audit(user=request.user)),
        "may_approve": SimpleLazyObject(lambda: is_approver(user=request.user)),
    }
