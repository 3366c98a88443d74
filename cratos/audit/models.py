"""The audit log: one append-only table every app writes through cratos.audit.recorder."""

from functools import cache

from django.conf import settings
from django.db import models
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _


@cache
def _labels(choices: type[models.TextChoices], language: str | None) -> dict[str, str]:
    """The choices' labels translated, once per language (`language`: the active one)."""
    return {value: str(label) for value, label in choices.choices}


class AuditEvent(models.Model):
    """Append-only record of every step. Written by services only; never updated or deleted:
    on PostgreSQL a trigger refuses UPDATE and DELETE (installed by the append_only migration)."""

    class Action(models.TextChoices):
        # Labels as Django derives them from the names (so no migration), made translatable.
        TICKET_CREATED = "ticket.created", _("Ticket Created")
        TICKET_REFUSED = "ticket.refused", _("Ticket Refused")
        TICKET_ENTRY_ADDED = "ticket.entry_added", _("Ticket Entry Added")
        TICKET_ENTRY_REMOVED = "ticket.entry_removed", _("Ticket Entry Removed")
        TICKET_SUBMITTED = "ticket.submitted", _("Ticket Submitted")
        TICKET_APPROVED = "ticket.approved", _("Ticket Approved")
        TICKET_REJECTED = "ticket.rejected", _("Ticket Rejected")
        TICKET_CANCELLED = "ticket.cancelled", _("Ticket Cancelled")
        TICKET_EXPIRED = "ticket.expired", _("Ticket Expired")
        TICKET_COMPLETED = "ticket.completed", _("Ticket Completed")
        AUTHORIZATION_MINTED = "authorization.minted", _("Authorization Minted")
        AUTHORIZATION_CONSUMED = "authorization.consumed", _("Authorization Consumed")
        AUTHORIZATION_RESTORED = "authorization.restored", _("Authorization Restored")
        AUTHORIZATION_EXPIRED = "authorization.expired", _("Authorization Expired")
        AUTHORIZATION_REVOKED = "authorization.revoked", _("Authorization Revoked")
        REDEPLOY_REQUESTED = "redeploy.requested", _("Redeploy Requested")
        REDEPLOY_REFUSED = "redeploy.refused", _("Redeploy Refused")
        REDEPLOY_STARTED = "redeploy.started", _("Redeploy Started")
        REDEPLOY_SUCCEEDED = "redeploy.succeeded", _("Redeploy Succeeded")
        REDEPLOY_FAILED = "redeploy.failed", _("Redeploy Failed")
        POD_DELETION_REQUESTED = "pod_deletion.requested", _("Pod Deletion Requested")
        POD_DELETION_REFUSED = "pod_deletion.refused", _("Pod Deletion Refused")
        POD_DELETION_STARTED = "pod_deletion.started", _("Pod Deletion Started")
        POD_DELETION_SUCCEEDED = "pod_deletion.succeeded", _("Pod Deletion Succeeded")
        POD_DELETION_FAILED = "pod_deletion.failed", _("Pod Deletion Failed")
        ROLLOUT_COMPLETE = "rollout.complete", _("Rollout Complete")
        ROLLOUT_FAILED = "rollout.failed", _("Rollout Failed")
        CLUSTER_IMPORTED = "cluster.imported", _("Cluster Imported")
        APPLICATIONS_SYNCED = "applications.synced", _("Applications Synced")
        LOGIN_LOCKED = "login.locked", _("Login Locked")
        IDENTITY_ACCESS_CHANGED = "identity.access_changed", _("Identity Access Changed")
        NOTICE_CHANNEL_FAILED = "notice.channel_failed", _("Notice Channel Failed")
        AUTHORIZATION_EXPIRY_WARNED = (
            "authorization.expiry_warned",
            _("Authorization Expiry Warned"),
        )

    class Outcome(models.TextChoices):
        SUCCESS = "SUCCESS", _("Success")
        FAILURE = "FAILURE", _("Failure")
        INFO = "INFO", _("Info")

    created_at = models.DateTimeField(_("Time"), auto_now_add=True)
    # DO_NOTHING: deleting a user must not rewrite history (the table refuses UPDATE); the id
    # stays as it was, and actor_username keeps the name.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_constraint=False,
        verbose_name=_("Actor"),
    )
    # Names are copied so the record stays readable after users, tickets or clusters change.
    actor_username = models.CharField(_("Actor's user name"), max_length=150, blank=True)
    action = models.CharField(_("Action"), max_length=32, choices=Action.choices)
    outcome = models.CharField(
        _("Outcome"), max_length=8, choices=Outcome.choices, default=Outcome.SUCCESS
    )
    # Plain ids, not foreign keys: the log outlives what it names, and knows no app's models.
    ticket_id = models.BigIntegerField(_("Ticket ID"), null=True, blank=True, db_index=True)
    ticket_no = models.CharField(_("Ticket no."), max_length=32, blank=True)
    operation_id = models.UUIDField(_("Operation ID"), null=True, blank=True, db_index=True)
    application_name = models.CharField(_("Application name"), max_length=128, blank=True)
    cluster_name = models.CharField(_("Cluster"), max_length=64, blank=True)
    namespace = models.CharField(_("Namespace"), max_length=63, blank=True)
    deployment_name = models.CharField(_("Deployment name"), max_length=253, blank=True)
    message = models.TextField(_("Message"), blank=True)
    generation = models.BigIntegerField(_("Generation"), null=True, blank=True)
    resource_version = models.CharField(_("Resource version"), max_length=64, blank=True)
    request_ip = models.GenericIPAddressField(_("Request IP"), null=True, blank=True)
    celery_task_id = models.CharField(_("Celery task ID"), max_length=64, blank=True)

    class Meta:
        # The table it had when the log lived in the redeploy app: moving code moves no rows.
        db_table = "redeploy_auditevent"
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="audit_newest"),
            models.Index(fields=["action", "-created_at"], name="audit_action"),
            models.Index(fields=["actor_username", "-created_at"], name="audit_actor"),
            models.Index(fields=["application_name", "-created_at"], name="audit_application"),
            models.Index(fields=["ticket_no", "-created_at"], name="audit_ticket_no"),
            models.Index(fields=["cluster_name", "-created_at"], name="audit_cluster"),
            models.Index(fields=["outcome", "-created_at", "-id"], name="audit_outcome"),
            models.Index(fields=["namespace", "-created_at", "-id"], name="audit_namespace"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are append-only.")

    # Django's own get_FOO_display translates every choice of the field on each call (30 for
    # an action): on the audit page, twice per row, most of the rendering time went there.
    def get_action_display(self) -> str:
        return _labels(self.Action, get_language()).get(self.action, self.action)

    def get_outcome_display(self) -> str:
        return _labels(self.Outcome, get_language()).get(self.outcome, self.outcome)
