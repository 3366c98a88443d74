"""The audit log in the admin: read-only, like every record of what happened."""

from django.contrib import admin
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from cratos.admin_forms import ReadOnlyAdminMixin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "time",
        "actor_username",
        "action",
        "outcome",
        "ticket_no",
        "application_name",
        "cluster_name",
        "namespace",
        "deployment_name",
        "short_message",
    )
    list_filter = ("action", "outcome")
    search_fields = (
        "ticket_no",
        "actor_username",
        "application_name",
        "cluster_name",
        "namespace",
        "deployment_name",
        "message",
    )
    date_hierarchy = "created_at"
    # Counting every row of a large table on each page load is what makes it slow.
    show_full_result_count = False
    fields = readonly_fields = (
        "created_at",
        "actor",
        "actor_username",
        "action",
        "outcome",
        "ticket_id",
        "ticket_no",
        "operation_id",
        "application_name",
        "cluster_name",
        "namespace",
        "deployment_name",
        "message",
        "generation",
        "resource_version",
        "request_ip",
        "celery_task_id",
    )

    @admin.display(description=_("Time"), ordering="created_at")
    def time(self, event: AuditEvent):
        return event.created_at

    @admin.display(description=_("Message"))
    def short_message(self, event: AuditEvent) -> str:
        return Truncator(event.message).chars(120)
