"""What every granted action's records share (abstract: no table of their own).

An operation is one request on one approval (a redeploy, a pod deletion); its targets are the
records of what it did, one per Deployment restarted or pod deleted, shown on the ticket. The
fields here keep the names and types the tables had before they were shared, so no migration
renames or moves anything. The links to the user and the ticket stay on each model:
their reverse names (`user.redeploy_operations`, `ticket.pod_deletions`, ...) differ by kind.
"""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _


class GrantedOperation(models.Model):
    """One request of a granted action: one approval, in a few states."""

    class State(models.TextChoices):
        # Labels as Django derives them from the names (so no migration), made translatable.
        QUEUED = "QUEUED", _("Queued")
        RUNNING = "RUNNING", _("Running")
        SUCCEEDED = "SUCCEEDED", _("Succeeded")
        FAILED = "FAILED", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    application_name = models.CharField(_("Application name"), max_length=128)
    namespace = models.CharField(_("Namespace"), max_length=63)
    deployment_name = models.CharField(_("Deployment name"), max_length=253)
    cluster_name = models.CharField(_("Cluster"), max_length=64, blank=True)
    # When the taken grant would have expired: what a give-back puts back.
    authorization_expires_at = models.DateTimeField(_("Expires"), null=True, blank=True)
    state = models.CharField(_("State"), max_length=16, choices=State.choices, default=State.QUEUED)
    message = models.TextField(_("Message"), blank=True)
    request_ip = models.GenericIPAddressField(_("Request IP"), null=True, blank=True)
    celery_task_id = models.CharField(_("Celery task ID"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    started_at = models.DateTimeField(_("Started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["requested_by", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.application_name} {self.namespace}/{self.deployment_name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)


class OperationTarget(models.Model):
    """The record of one thing an operation did and how it ended (the ticket's records row).
    Each kind adds its operation, its ticket link and its own states."""

    cluster_name = models.CharField(_("Cluster"), max_length=64)
    namespace = models.CharField(_("Namespace"), max_length=63)
    deployment_name = models.CharField(_("Deployment name"), max_length=253)
    success = models.BooleanField(_("Success"), null=True)
    message = models.TextField(_("Message"), blank=True)
    operated_at = models.DateTimeField(_("Operated at"), null=True, blank=True)
    # Following what the action set off stops here (the Deployment's progress deadline).
    deadline_at = models.DateTimeField(_("Deadline"), null=True, blank=True)
    finished_at = models.DateTimeField(_("Finished at"), null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)
