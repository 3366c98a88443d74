"""The admin index's count of unsettled operations (templates/admin/index.html)."""

from django import template

from ..reconcile import stuck_after, unsettled_counts

register = template.Library()


@register.inclusion_tag("admin/redeploy/unsettled_operations.html")
def unsettled_operations() -> dict:
    return {
        "counts": unsettled_counts(),
        "minutes": int(stuck_after().total_seconds() // 60),
    }
