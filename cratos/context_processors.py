from django.utils.functional import SimpleLazyObject

from cratos.audit.selectors import may_review_audit


def audit_role(request):
    """May the user read the audit log (for menus), by the rule the pages enforce."""
    return {"may_review": SimpleLazyObject(lambda: may_review_audit(user=request.user))}
