from django.utils.functional import SimpleLazyObject

from redeploy.audit_selectors import may_review_audit


def roles(request):
    """`may_review` for menus and links: the same rule the audit pages enforce."""
    return {"may_review": SimpleLazyObject(lambda: may_review_audit(user=request.user))}
