"""Redeploy JSON API. Thin: parse the body, call the service, render the operation.

Refusals are DomainErrors from the services and selectors, rendered by
cratos.api.exception_handler as `{"error": code, "message": ...}`.
"""

from django.conf import settings
from rest_framework import status, viewsets
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from cratos.security import client_ip

from . import pod_deletions, redeploys, selectors
from .serializers import (
    OperationSerializer,
    PodDeletionRequestInput,
    PodDeletionSerializer,
    RedeployRequestInput,
    operation_api_url,
    pod_deletion_api_url,
)


def _accepted(operation, request) -> dict:
    return {
        "id": str(operation.pk),
        "state": operation.state,
        "url": operation_api_url(operation, request),
    }


class OperationPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "pageSize"
    max_page_size = 100


class RedeployViewSet(viewsets.GenericViewSet):
    """`POST /redeploys/` queues a redeploy (202), or a batch given as a JSON array (202 with an
    array, all or none queued); `GET /redeploys/` lists mine; `GET /redeploys/{id}/` shows one
    to its requester, staff and reviewers."""

    lookup_value_converter = "uuid"
    pagination_class = OperationPagination
    serializer_class = OperationSerializer

    def get_serializer_class(self):
        return RedeployRequestInput if self.action == "create" else OperationSerializer

    def get_queryset(self):
        return selectors.operations_of(user=self.request.user).select_related("requested_by")

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def create(self, request):
        batch = isinstance(request.data, list)
        serializer = self.get_serializer(
            data=request.data,
            many=batch,
            **({"max_length": settings.REDEPLOY_MAX_BATCH} if batch else {}),
        )
        serializer.is_valid(raise_exception=True)
        items = [
            redeploys.RedeployRequest(
                application_name=data["applicationName"],
                namespace=data["namespace"],
                deployment_name=data["deploymentName"],
                cluster_name=data.get("cluster") or None,
            )
            for data in (serializer.validated_data if batch else [serializer.validated_data])
        ]
        # No transaction here: the service commits, then queues the task.
        operations = redeploys.request_redeploys(
            user=request.user, items=items, request_ip=client_ip(request) or None
        )
        accepted = [_accepted(operation, request) for operation in operations]
        if batch:
            return Response(accepted, status=status.HTTP_202_ACCEPTED)
        return Response(
            accepted[0], status=status.HTTP_202_ACCEPTED, headers={"Location": accepted[0]["url"]}
        )

    def retrieve(self, request, pk):
        operation = selectors.visible_operation(operation_id=pk, user=request.user)
        return Response(self.get_serializer(operation).data)


class PodDeletionViewSet(viewsets.GenericViewSet):
    """`POST /pod-deletions/` queues the deletion of some pods of an application (202, one
    approval); `GET /pod-deletions/{id}/` shows it to its requester, staff and reviewers."""

    lookup_value_converter = "uuid"
    serializer_class = PodDeletionSerializer

    def create(self, request):
        serializer = PodDeletionRequestInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        operation = pod_deletions.request_pod_deletion(
            user=request.user,
            application_name=data["applicationName"],
            namespace=data["namespace"],
            deployment_name=data["deploymentName"],
            pod_names=data["podNames"],
            cluster_name=data.get("cluster") or "",
            request_ip=client_ip(request) or None,
        )
        url = pod_deletion_api_url(operation, request)
        body = {"id": str(operation.pk), "state": operation.state, "url": url}
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})

    def retrieve(self, request, pk):
        operation = selectors.visible_pod_deletion(operation_id=pk, user=request.user)
        return Response(self.get_serializer(operation).data)
