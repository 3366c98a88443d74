"""The pod-delete action's records: one operation per request (one approval), one target per
pod it names. Kept apart from models.py so neither grows past a readable size; models.py
imports them, so Django finds them there."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .operation_models import GrantedOperation, OperationTarget


class PodDeletion(GrantedOperation):
    """One pod-delete request: some pods of one application's Deployment, one approval."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="pod_deletions",
        verbose_name=_("Requested by"),
    )
    # The pods asked for, in the request's order: the worker turns them into targets.
    pod_names = models.JSONField(_("Pods"), default=list)
    # The ticket whose grant this operation took (set when taken).
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pod_deletions",
        verbose_name=_("Ticket"),
    )

    class Meta(GrantedOperation.Meta):
        verbose_name = _("pod deletion")
        verbose_name_plural = _("pod deletions")


class PodDeletionTarget(OperationTarget):
    """The record of one pod's deletion: what was done and how it ended."""

    class State(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        DELETING = "DELETING", _("Deleting")
        SUCCEEDED = "SUCCEEDED", _("Succeeded")
        FAILED = "FAILED", _("Failed")

    operation = models.ForeignKey(
        PodDeletion,
        on_delete=models.CASCADE,
        related_name="targets",
        verbose_name=_("Pod deletion"),
    )
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="pod_deletion_targets",
        verbose_name=_("Ticket"),
    )
    pod_name = models.CharField(_("Pod"), max_length=253)
    pod_uid = models.CharField(_("Pod UID"), max_length=64, blank=True)
    state = models.CharField(
        _("State"), max_length=16, choices=State.choices, default=State.PENDING
    )
    # Set (committed) before the DELETE is sent, and kept once it was or may have been applied:
    # a redelivered task never deletes the pod again, and the grant is used, not given back.
    deleted = models.BooleanField(_("Deleted"), default=False)

    class Meta:
        verbose_name = _("pod deletion target")
        verbose_name_plural = _("pod deletion targets")
        ordering = ["operation", "pk"]

    def __str__(self) -> str:
        return f"{self.cluster_name}/{self.namespace}/{self.pod_name} ({self.state})"
