from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.fields import EncryptedTextField

from .operation_models import GrantedOperation, OperationTarget
from .validators import validate_dns1123_label, validate_dns1123_subdomain


def validate_tags(value) -> None:
    if not isinstance(value, list) or not all(
        isinstance(tag, dict)
        and set(tag) == {"key", "value"}
        and isinstance(tag["key"], str)
        and tag["key"]
        and isinstance(tag["value"], str)
        for tag in value
    ):
        raise ValidationError(
            gettext('Tags must be a list of {"key": "...", "value": "..."} objects.')
        )


def render_tags(tags: list[dict]) -> str:
    """The manual's rendering: `key:value,key:value`, in the tags' own order."""
    return ",".join(f"{tag['key']}:{tag['value']}" for tag in tags)


class Application(models.Model):
    class OwnersSource(models.TextChoices):
        # Where owner_teams came from: a sync sets LABEL ones; ADMIN ones are never overwritten.
        LABEL = "LABEL", _("Deployment label")
        ADMIN = "ADMIN", _("Set in the admin")

    name = models.CharField(_("Name"), max_length=128, unique=True)
    description = models.TextField(_("Description"), blank=True)
    # Ordered key/value pairs, e.g. [{"key": "team", "value": "shop"}]; order is kept for display.
    tags = models.JSONField(_("Tags"), default=list, blank=True, validators=[validate_tags])
    owner_teams = models.ManyToManyField(
        "teams.Team",
        blank=True,
        related_name="applications",
        verbose_name=_("owner teams"),
        help_text=_("Their members may request this application and decide its owners' step."),
    )
    owners_source = models.CharField(
        _("owners set by"),
        max_length=8,
        choices=OwnersSource.choices,
        default=OwnersSource.LABEL,
        help_text=_("Set in the admin: a sync from Deployment labels leaves the owners alone."),
    )
    open_to_requesters = models.BooleanField(
        _("open to every requester"),
        default=False,
        help_text=_("Anyone may request it, not only members of its owner teams."),
    )
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("application")
        verbose_name_plural = _("applications")
        permissions = [("redeploy_application", "Can redeploy an application")]

    def __str__(self) -> str:
        return self.name

    @property
    def tags_display(self) -> str:
        return render_tags(self.tags)


class KubernetesCluster(models.Model):
    # The encrypted fields: what a query that needs no credentials defers (each costs a
    # decryption, ~0.1 ms, when a row is read).
    CREDENTIAL_FIELDS = ("token", "client_cert_data", "client_key_data", "kubeconfig")

    name = models.CharField(_("Name"), max_length=64, unique=True)
    server = models.URLField(_("API server URL"), max_length=512, blank=True)
    ca_data = models.TextField(_("CA certificate (PEM)"), blank=True)
    insecure_skip_tls_verify = models.BooleanField(_("Skip TLS verification"), default=False)
    # Plain http:// sends the credentials in clear text: allowed only when asked for.
    allow_plain_http = models.BooleanField(
        _("allow plain HTTP"),
        default=False,
        help_text=_("Talk to an http:// API server: credentials travel unencrypted."),
    )
    # Credentials, encrypted at rest and never rendered back. A kubeconfig, when given, wins.
    token = EncryptedTextField(_("Token"), blank=True)
    client_cert_data = EncryptedTextField(_("client certificate (PEM)"), blank=True)
    client_key_data = EncryptedTextField(_("client key (PEM)"), blank=True)
    kubeconfig = EncryptedTextField(_("kubeconfig"), blank=True)
    kubeconfig_context = models.CharField(_("kubeconfig context"), max_length=253, blank=True)
    in_cluster = models.BooleanField(
        _("In-cluster"),
        default=False,
        help_text=_("Use the pod's ServiceAccount instead of stored credentials."),
    )
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("Updated at"), auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("Kubernetes cluster")
        verbose_name_plural = _("Kubernetes clusters")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not (self.in_cluster or self.kubeconfig or self.server):
            raise ValidationError(
                gettext("Give an API server URL, a kubeconfig, or choose in-cluster.")
            )
        if self.server.lower().startswith("http://") and not self.allow_plain_http:
            raise ValidationError(
                {
                    "server": gettext(
                        "This server speaks plain HTTP: use https://, or allow plain HTTP."
                    )
                }
            )


class DeploymentBinding(models.Model):
    """An "application resource": where one application runs as a Deployment."""

    application = models.ForeignKey(
        Application,
        on_delete=models.CASCADE,
        related_name="bindings",
        verbose_name=_("Application"),
    )
    cluster = models.ForeignKey(
        KubernetesCluster,
        on_delete=models.CASCADE,
        related_name="bindings",
        verbose_name=_("Cluster"),
    )
    namespace = models.CharField(_("Namespace"), max_length=63, validators=[validate_dns1123_label])
    deployment_name = models.CharField(
        _("Deployment name"), max_length=253, validators=[validate_dns1123_subdomain]
    )
    created_at = models.DateTimeField(_("Created"), auto_now_add=True)
    # The Deployment as the last sync saw it (the web never asks the cluster): for pages only.
    desired_replicas = models.PositiveIntegerField(_("Desired replicas"), null=True, blank=True)
    ready_replicas = models.PositiveIntegerField(_("Ready replicas"), null=True, blank=True)
    paused = models.BooleanField(_("Paused"), default=False)
    # Argo CD, Flux or Helm, from the Deployment's labels and annotations; empty: none seen.
    managed_by = models.CharField(_("Managed by"), max_length=32, blank=True)
    seen_at = models.DateTimeField(_("Seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("Deployment binding")
        verbose_name_plural = _("Deployment bindings")
        ordering = ["application__name", "cluster__name", "namespace", "deployment_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "cluster", "namespace", "deployment_name"],
                name="unique_deployment_binding",
            )
        ]
        indexes = [models.Index(fields=["application", "namespace", "deployment_name"])]

    def __str__(self) -> str:
        return f"{self.application}: {self.cluster}/{self.namespace}/{self.deployment_name}"


class RedeployOperation(GrantedOperation):
    """One redeploy request; it restarts one Deployment in one or several clusters (targets)."""

    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="redeploy_operations",
        verbose_name=_("Requested by"),
    )
    cluster_name = models.CharField(
        _("Cluster"), max_length=64, blank=True, help_text=_("Empty: every cluster.")
    )
    # The ticket whose authorization this operation consumed (set once consumed).
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="redeploy_operations",
        verbose_name=_("Ticket"),
    )

    class Meta(GrantedOperation.Meta):
        verbose_name = _("redeploy")
        verbose_name_plural = _("redeploys")


class RedeployTarget(OperationTarget):
    """The redeploy record of one Deployment in one cluster: what was done and how it ended."""

    class State(models.TextChoices):
        PENDING = "PENDING", _("Pending")
        ROLLING = "ROLLING", _("Rolling")
        SUCCEEDED = "SUCCEEDED", _("Succeeded")
        FAILED = "FAILED", _("Failed")

    operation = models.ForeignKey(
        RedeployOperation,
        on_delete=models.CASCADE,
        related_name="targets",
        verbose_name=_("Redeploy"),
    )
    ticket = models.ForeignKey(
        "tickets.Ticket",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="redeploy_targets",
        verbose_name=_("Ticket"),
    )
    binding = models.ForeignKey(
        DeploymentBinding, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = models.CharField(
        _("State"), max_length=16, choices=State.choices, default=State.PENDING
    )
    # The restartedAt value chosen before the PATCH; kept once the restart was (or may have
    # been) applied, so a redelivered task never restarts again.
    restarted_at = models.CharField(_("Restarted at"), max_length=40, blank=True)
    generation = models.BigIntegerField(_("Generation"), null=True, blank=True)
    resource_version = models.CharField(_("Resource version"), max_length=64, blank=True)
    replicas = models.IntegerField(_("Replicas"), null=True, blank=True)
    updated_replicas = models.IntegerField(_("Updated replicas"), null=True, blank=True)
    available_replicas = models.IntegerField(_("Available replicas"), null=True, blank=True)
    progress_deadline_seconds = models.PositiveIntegerField(
        _("Progress deadline (seconds)"), null=True, blank=True
    )

    class Meta:
        verbose_name = _("redeploy target")
        verbose_name_plural = _("redeploy targets")
        ordering = ["operation", "cluster_name"]
        # The dashboard reads the last 30 days of redeploys.
        indexes = [models.Index(fields=["operated_at"], name="target_operated_at")]

    def __str__(self) -> str:
        return f"{self.cluster_name}/{self.namespace}/{self.deployment_name} ({self.state})"


# The pod-delete action's models live in their own module; imported here for Django to find.
from .pod_models import PodDeletion, PodDeletionTarget  # noqa: E402, F401
