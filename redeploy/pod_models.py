"""The pod-delete action's records: one operation per request (one approval), one target per
pod it names. Kept apart from models.py so neither grows past a readable size; models.py
imports them, so Django finds them there."""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class PodDeletion(models.Model):
    """One pod-delete request: some pods of one application's Deployment, one approval."""

    class State(models.TextChoices):
        QUEUED = "QUEUED", _("Queued")
        RUNNING = "RUNNING", _("Running")
        SUCCEEDED = "SUCCEEDED", _("Succeeded")
        FAILED = "FAILED", _("Failed")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="pod_deletions"
    )
    application_name = models.CharField(max_length=128)
    cluster_name = models.CharField(max_length=64, blank=True)
    namespace = models.CharField(max_length=63)
    deployment_name = models.CharField(max_length=253)
    # The pods asked for, in the request's order: the worker turns them into targets.
    pod_names = models.JSONField(default=list)
    # The ticket whose grant this operation took (set when taken).
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pod_deletions",
    )
    # When the taken grant would have expired: what a give-back puts back.
    authorization_expires_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    message = models.TextField(blank=True)
    request_ip = models.GenericIPAddressField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["requested_by", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.application_name} {self.namespace}/{self.deployment_name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)


class PodDeletionTarget(models.Model):
    """The record of one pod's deletion: what was done and how it ended."""

    class State(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        DELETING = "DELETING", _("Deleting")
        SUCCEEDED = "SUCCEEDED", _("Succeeded")
        FAILED = "FAILED", _("Failed")

    operation = models.ForeignKey(PodDeletion, on_delete=models.CASCADE, related_name="targets")
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pod_deletion_targets",
    )
    cluster_name = models.CharField(max_length=64)
    namespace = models.CharField(max_length=63)
    deployment_name = models.CharField(max_length=253)
    pod_name = models.CharField(max_length=253)
    pod_uid = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    success = models.BooleanField(null=True)
    message = models.TextField(blank=True)
    # Set (committed) before the DELETE is sent, and kept once it was or may have been applied:
    # a redelivered task never deletes the pod again, and the grant is used, not given back.
    deleted = models.BooleanField(default=False)
    operated_at = models.DateTimeField(null=True, blank=True)
    # Following the replacement stops here (the Deployment's progress deadline).
    deadline_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["operation", "pk"]

    def __str__(self) -> str:
        return f"{self.cluster_name}/{self.namespace}/{self.pod_name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCEEDED, self.State.FAILED)
