"""Admin for applications, clusters and bindings; redeploy and pod-deletion records read-only.

Cluster credentials are write-only here: no page renders a stored token, certificate, key or
kubeconfig, and a credential field left blank keeps what is stored.
"""

import json

from django import forms
from django.contrib import admin
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from cratos.admin_forms import ReadOnlyAdminMixin, WriteOnlyCredentialsForm, WriteOnlyTextarea

from .models import (
    Application,
    DeploymentBinding,
    KubernetesCluster,
    PodDeletion,
    PodDeletionTarget,
    RedeployOperation,
    RedeployTarget,
    validate_tags,
)


class TagsJSONField(forms.JSONField):
    """Tags edited as indented JSON, so the ordered key/value pairs read one per line."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, ensure_ascii=False, indent=2, cls=self.encoder)


class ApplicationForm(forms.ModelForm):
    tags = TagsJSONField(
        label=_("Tags"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60, "class": "monospace"}),
        help_text=_('Ordered key/value pairs, e.g. [{"key": "team", "value": "shop"}].'),
    )

    class Meta:
        model = Application
        fields = [
            "name",
            "description",
            "tags",
            "owner_teams",
            "owners_source",
            "open_to_requesters",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Left out of a post, the owners' source stays as it was (save_model may set ADMIN).
        self.fields["owners_source"].required = False

    def clean_owners_source(self):
        return self.cleaned_data["owners_source"] or self.instance.owners_source

    def clean_tags(self):
        tags = self.cleaned_data["tags"]
        if tags is None:
            return []
        # The model skips validators for empty values such as {}; check the shape here too.
        validate_tags(tags)
        return tags


class DeploymentBindingInline(admin.TabularInline):
    model = DeploymentBinding
    fields = ("cluster", "namespace", "deployment_name")
    extra = 0


@admin.register(Application)
class ApplicationAdmin(admin.ModelAdmin):
    form = ApplicationForm
    list_display = ("name", "owners", "tags_display", "description", "updated_at")
    list_filter = ("owner_teams", "owners_source", "open_to_requesters")
    search_fields = ("name", "description", "owner_teams__name")
    filter_horizontal = ("owner_teams",)
    inlines = [DeploymentBindingInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("owner_teams")

    def save_model(self, request, obj, form, change):
        # Owners picked here win over the Deployment label at the next sync.
        if "owner_teams" in form.changed_data and "owners_source" not in form.changed_data:
            obj.owners_source = Application.OwnersSource.ADMIN
        super().save_model(request, obj, form, change)

    @admin.display(description=_("Owners"))
    def owners(self, application: Application) -> str:
        return ", ".join(str(team) for team in application.owner_teams.all()) or "-"

    @admin.display(description=_("Tags"))
    def tags_display(self, application: Application) -> str:
        return application.tags_display


CREDENTIAL_FIELDS = ("token", "client_cert_data", "client_key_data", "kubeconfig")


class KubernetesClusterForm(WriteOnlyCredentialsForm):
    credential_fields = CREDENTIAL_FIELDS
    # API servers speak TLS; a URL typed without a scheme means https.
    server = forms.URLField(
        label=_("API server URL"), required=False, assume_scheme="https", max_length=512
    )

    class Meta:
        model = KubernetesCluster
        fields = [
            "name",
            "server",
            "ca_data",
            "insecure_skip_tls_verify",
            "allow_plain_http",
            "in_cluster",
            "token",
            "client_cert_data",
            "client_key_data",
            "kubeconfig",
            "kubeconfig_context",
        ]
        widgets = {
            "token": forms.PasswordInput(render_value=False),
            "client_cert_data": WriteOnlyTextarea(attrs={"rows": 4}),
            "client_key_data": WriteOnlyTextarea(attrs={"rows": 4}),
            "kubeconfig": WriteOnlyTextarea(attrs={"rows": 8}),
        }

    def clean(self):
        typed = [name for name in self.credential_fields if name in self.changed_data]
        cleaned = super().clean()
        # Stored credentials never follow a cluster to a new server (one that could be the
        # attacker's): a new URL needs its credentials typed again, and drops the others.
        if self.instance.pk and "server" in self.changed_data:
            if not typed and not cleaned.get("in_cluster"):
                self.add_error(
                    "server",
                    _("A new server URL needs its credentials again: enter them below."),
                )
            for name in set(self.credential_fields) - set(typed):
                cleaned[name] = ""
        return cleaned


@admin.register(KubernetesCluster)
class KubernetesClusterAdmin(admin.ModelAdmin):
    form = KubernetesClusterForm
    list_display = ("name", "server", "credential_kind", "updated_at")
    search_fields = ("name", "server")
    fieldsets = [
        (
            None,
            {
                "fields": (
                    "name",
                    "server",
                    "ca_data",
                    "insecure_skip_tls_verify",
                    "allow_plain_http",
                )
            },
        ),
        (
            _("Credentials"),
            {
                "description": _(
                    "Stored credentials are never shown. A kubeconfig, when given, "
                    "wins over a token or client certificate."
                ),
                "fields": (
                    "in_cluster",
                    "token",
                    "client_cert_data",
                    "client_key_data",
                    "kubeconfig",
                    "kubeconfig_context",
                    "forget_credentials",
                ),
            },
        ),
    ]

    @admin.display(description=_("Credentials"))
    def credential_kind(self, cluster: KubernetesCluster) -> str:
        if cluster.in_cluster:
            return gettext("in-cluster ServiceAccount")
        if cluster.kubeconfig:
            context = cluster.kubeconfig_context
            if context:
                return gettext("kubeconfig (context %(context)s)") % {"context": context}
            return "kubeconfig"
        kinds = [
            kind
            for kind, present in (
                (gettext("bearer token"), cluster.token),
                (gettext("client certificate"), cluster.client_cert_data),
            )
            if present
        ]
        return " + ".join(kinds) or gettext("none")


@admin.register(DeploymentBinding)
class DeploymentBindingAdmin(admin.ModelAdmin):
    list_display = ("application", "cluster", "namespace", "deployment_name", "created_at")
    list_filter = ("cluster", "namespace")
    list_select_related = ("application", "cluster")
    search_fields = ("application__name", "namespace", "deployment_name")
    autocomplete_fields = ("application", "cluster")


# The two granted actions' records read alike: an operation (one request, one approval) with
# the targets it wrote, each also listed on its own. Nothing here changes them.
TARGET_FIELDS = ("cluster_name", "namespace", "deployment_name")
OPERATION_FIELDS = (
    "id",
    "requested_by",
    "application_name",
    "namespace",
    "deployment_name",
    "cluster_name",
    "ticket",
    "state",
    "message",
    "request_ip",
    "celery_task_id",
    "created_at",
    "started_at",
    "finished_at",
)


class TargetInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False


class GrantedOperationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "requested_by",
        "application_name",
        "namespace",
        "deployment_name",
        "cluster_name",
        "state",
        "ticket",
    )
    list_filter = ("state",)
    list_select_related = ("requested_by", "ticket")
    search_fields = (
        "application_name",
        "deployment_name",
        "namespace",
        "requested_by__username",
        "ticket__ticket_no",
    )
    date_hierarchy = "created_at"
    fields = readonly_fields = OPERATION_FIELDS


class OperationTargetAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_filter = ("state", "success")
    list_select_related = ("ticket",)
    search_fields = (*TARGET_FIELDS, "ticket__ticket_no")


class RedeployTargetInline(TargetInline):
    model = RedeployTarget
    fields = readonly_fields = (
        *TARGET_FIELDS,
        "state",
        "success",
        "message",
        "operated_at",
        "generation",
        "resource_version",
        "updated_replicas",
        "available_replicas",
        "replicas",
        "finished_at",
    )


@admin.register(RedeployOperation)
class RedeployOperationAdmin(GrantedOperationAdmin):
    inlines = [RedeployTargetInline]


@admin.register(RedeployTarget)
class RedeployTargetAdmin(OperationTargetAdmin):
    list_display = ("operated_at", *TARGET_FIELDS, "state", "success", "ticket", "message")
    fields = readonly_fields = (
        "operation",
        "ticket",
        "binding",
        *TARGET_FIELDS,
        "state",
        "success",
        "message",
        "operated_at",
        "restarted_at",
        "generation",
        "resource_version",
        "replicas",
        "updated_replicas",
        "available_replicas",
        "deadline_at",
        "finished_at",
    )


class PodDeletionTargetInline(TargetInline):
    model = PodDeletionTarget
    fields = readonly_fields = (
        *TARGET_FIELDS,
        "pod_name",
        "pod_uid",
        "state",
        "success",
        "message",
        "operated_at",
        "deadline_at",
        "finished_at",
    )


@admin.register(PodDeletion)
class PodDeletionAdmin(GrantedOperationAdmin):
    fields = readonly_fields = (*OPERATION_FIELDS[:6], "pod_names", *OPERATION_FIELDS[6:])
    inlines = [PodDeletionTargetInline]


@admin.register(PodDeletionTarget)
class PodDeletionTargetAdmin(OperationTargetAdmin):
    list_display = (
        "operated_at",
        *TARGET_FIELDS,
        "pod_name",
        "state",
        "success",
        "ticket",
        "message",
    )
    search_fields = (*OperationTargetAdmin.search_fields, "pod_name")
    fields = readonly_fields = (
        "operation",
        "ticket",
        *TARGET_FIELDS,
        "pod_name",
        "pod_uid",
        "state",
        "success",
        "message",
        "deleted",
        "operated_at",
        "deadline_at",
        "finished_at",
    )
