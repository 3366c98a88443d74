"""Redeploy API shapes: the request body's parser and the operation as pages and API show it.

No rule lives here: who may redeploy, and which names are acceptable, is for redeploy.services.
"""

from django.urls import reverse
from rest_framework import serializers

from cratos.api import InputSerializer, StrictCharField
from tickets.serializers import MAX_APPLICATION_NAME_LENGTH, UtcDateTimeField

# Bounds against oversized input only; the service gives the DNS-1123 verdict in its own words.
MAX_KUBERNETES_NAME_LENGTH = 253
MAX_CLUSTER_NAME_LENGTH = 64


class RedeployRequestInput(InputSerializer):
    applicationName = StrictCharField(max_length=MAX_APPLICATION_NAME_LENGTH)
    namespace = StrictCharField(max_length=MAX_KUBERNETES_NAME_LENGTH)
    deploymentName = StrictCharField(max_length=MAX_KUBERNETES_NAME_LENGTH)
    # Absent, null or empty: every cluster where the binding exists.
    cluster = StrictCharField(
        max_length=MAX_CLUSTER_NAME_LENGTH, required=False, allow_blank=True, allow_null=True
    )


def operation_api_url(operation, request=None) -> str:
    url = reverse("api-redeploy-detail", kwargs={"pk": operation.pk})
    return request.build_absolute_uri(url) if request is not None else url


class ProgressSerializer(serializers.Serializer):
    replicas = serializers.IntegerField()
    updatedReplicas = serializers.IntegerField(source="updated_replicas")
    availableReplicas = serializers.IntegerField(source="available_replicas")


class TargetSerializer(serializers.Serializer):
    """One Deployment in one cluster: its restart and how its rollout goes."""

    id = serializers.IntegerField(source="pk")
    cluster = serializers.CharField(source="cluster_name")
    namespace = serializers.CharField()
    deploymentName = serializers.CharField(source="deployment_name")
    state = serializers.CharField()
    success = serializers.BooleanField(allow_null=True)
    message = serializers.CharField()
    operatedAt = UtcDateTimeField(source="operated_at")
    restartedAt = serializers.CharField(source="restarted_at", allow_null=True)
    generation = serializers.IntegerField(allow_null=True)
    resourceVersion = serializers.CharField(source="resource_version", allow_null=True)
    progress = ProgressSerializer(source="*")
    finishedAt = UtcDateTimeField(source="finished_at")

    def to_representation(self, target):
        data = super().to_representation(target)
        # Not restarted (yet): null, not an empty string.
        data["restartedAt"] = data["restartedAt"] or None
        data["resourceVersion"] = data["resourceVersion"] or None
        return data


class OperationSerializer(serializers.Serializer):
    """A redeploy operation with its targets. Pass the request in the context for an absolute
    `url`."""

    id = serializers.UUIDField()
    url = serializers.SerializerMethodField()
    state = serializers.CharField()
    message = serializers.CharField()
    applicationName = serializers.CharField(source="application_name")
    namespace = serializers.CharField()
    deploymentName = serializers.CharField(source="deployment_name")
    cluster = serializers.SerializerMethodField()
    ticketNo = serializers.CharField(source="ticket.ticket_no", default=None)
    requestedBy = serializers.CharField(source="requested_by.username")
    createdAt = UtcDateTimeField(source="created_at")
    startedAt = UtcDateTimeField(source="started_at")
    finishedAt = UtcDateTimeField(source="finished_at")
    targets = TargetSerializer(many=True)

    def get_url(self, operation) -> str:
        return operation_api_url(operation, self.context.get("request"))

    def get_cluster(self, operation) -> str | None:
        # None: every cluster where the binding exists.
        return operation.cluster_name or None


class PodDeletionRequestInput(RedeployRequestInput):
    podNames = serializers.ListField(
        child=StrictCharField(max_length=MAX_KUBERNETES_NAME_LENGTH), allow_empty=True
    )


def pod_deletion_api_url(operation, request=None) -> str:
    url = reverse("api-pod-deletion-detail", kwargs={"pk": operation.pk})
    return request.build_absolute_uri(url) if request is not None else url


class PodTargetSerializer(serializers.Serializer):
    """One pod: its deletion and how its replacement went."""

    id = serializers.IntegerField(source="pk")
    cluster = serializers.CharField(source="cluster_name")
    namespace = serializers.CharField()
    deploymentName = serializers.CharField(source="deployment_name")
    podName = serializers.CharField(source="pod_name")
    state = serializers.CharField()
    success = serializers.BooleanField(allow_null=True)
    message = serializers.CharField()
    deleted = serializers.BooleanField()
    operatedAt = UtcDateTimeField(source="operated_at")
    finishedAt = UtcDateTimeField(source="finished_at")


class PodDeletionSerializer(serializers.Serializer):
    """A pod deletion with its targets. Pass the request in the context for an absolute `url`."""

    id = serializers.UUIDField()
    url = serializers.SerializerMethodField()
    state = serializers.CharField()
    message = serializers.CharField()
    applicationName = serializers.CharField(source="application_name")
    namespace = serializers.CharField()
    deploymentName = serializers.CharField(source="deployment_name")
    podNames = serializers.ListField(source="pod_names")
    cluster = serializers.CharField(source="cluster_name")
    ticketNo = serializers.CharField(source="ticket.ticket_no", default=None)
    requestedBy = serializers.CharField(source="requested_by.username")
    createdAt = UtcDateTimeField(source="created_at")
    startedAt = UtcDateTimeField(source="started_at")
    finishedAt = UtcDateTimeField(source="finished_at")
    targets = PodTargetSerializer(many=True)

    def get_url(self, operation) -> str:
        return pod_deletion_api_url(operation, self.context.get("request"))
