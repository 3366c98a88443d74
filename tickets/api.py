"""Ticket JSON API. Thin: parse the body, call the service, render the ticket.

Refusals are DomainErrors from the services, rendered by cratos.api.exception_handler.
"""

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from cratos.exceptions import ValidationFailed
from cratos.security import client_ip

from . import revocations, selectors, services
from .models import Ticket, WorkOrder
from .serializers import (
    AuthorizationSerializer,
    EntryRevokeInput,
    TicketApproveInput,
    TicketCancelInput,
    TicketCreateInput,
    TicketRejectInput,
    TicketSerializer,
    TicketSubmitInput,
    TicketSummarySerializer,
)


class TicketPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "pageSize"
    max_page_size = 100


class TicketViewSet(viewsets.GenericViewSet):
    lookup_field = "ticket_no"
    pagination_class = TicketPagination
    serializer_class = TicketSerializer
    input_serializers = {
        "create": TicketCreateInput,
        "submit": TicketSubmitInput,
        "approve": TicketApproveInput,
        "reject": TicketRejectInput,
        "cancel": TicketCancelInput,
        "revoke": EntryRevokeInput,
    }

    def get_serializer_class(self):
        return self.input_serializers.get(self.action, TicketSerializer)

    def get_queryset(self):
        return selectors.tickets_of(applicant=self.request.user).prefetch_related("entries")

    def _input(self, request) -> dict:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def _visible_ticket(self) -> Ticket:
        return selectors.visible_ticket(
            ticket_no=self.kwargs[self.lookup_field], user=self.request.user
        )

    def _ticket_response(self, ticket: Ticket, status_code: int = status.HTTP_200_OK) -> Response:
        ticket = selectors.ticket_by_no(ticket_no=ticket.ticket_no)
        return Response(TicketSerializer(ticket).data, status=status_code)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(TicketSummarySerializer(page, many=True).data)

    def create(self, request):
        data = self._input(request)
        try:
            work_order = selectors.work_order_by_key(key=data["workOrderKey"])
        except WorkOrder.DoesNotExist:
            raise ValidationFailed(
                format_lazy(_("Unknown work order: {key}"), key=data["workOrderKey"])
            ) from None
        ticket = services.create_ticket(
            applicant=request.user,
            work_order=work_order,
            application_names=data["applications"],
            reason=data["reason"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(ticket, status.HTTP_201_CREATED)

    def retrieve(self, request, ticket_no: str):
        return Response(TicketSerializer(self._visible_ticket()).data)

    @action(detail=True, methods=["post"])
    def submit(self, request, ticket_no: str):
        ticket = self._visible_ticket()
        data = self._input(request)
        ticket = services.submit_ticket(
            ticket=ticket,
            actor=request.user,
            reason=data.get("reason"),
            approvers=data["approvers"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(ticket)

    @action(detail=True, methods=["post"])
    def approve(self, request, ticket_no: str):
        ticket = selectors.ticket_for_vote(ticket_no=ticket_no, user=request.user)
        data = self._input(request)
        ticket = services.approve_ticket(
            ticket=ticket,
            approver=request.user,
            comment=data["comment"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(ticket)

    @action(detail=True, methods=["post"])
    def reject(self, request, ticket_no: str):
        ticket = selectors.ticket_for_vote(ticket_no=ticket_no, user=request.user)
        data = self._input(request)
        ticket = services.reject_ticket(
            ticket=ticket,
            approver=request.user,
            reason=data["reason"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(ticket)

    @action(detail=True, methods=["post"])
    def cancel(self, request, ticket_no: str):
        ticket = self._visible_ticket()
        data = self._input(request)
        ticket = services.cancel_ticket(
            ticket=ticket,
            actor=request.user,
            reason=data["reason"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(ticket)

    @action(
        detail=True,
        methods=["post"],
        url_path=r"entries/(?P<entry_id>[0-9]+)/revoke",
        url_name="revoke",
    )
    def revoke(self, request, ticket_no: str, entry_id: str):
        """Withdraw the live authorization of one entry (approvers and administrators)."""
        entry = selectors.entry_for_revocation(
            ticket_no=ticket_no, entry_id=int(entry_id), user=request.user
        )
        data = self._input(request)
        revocations.revoke_authorization(
            entry=entry,
            actor=request.user,
            reason=data["reason"],
            request_ip=client_ip(request),
        )
        return self._ticket_response(entry.ticket)


class AuthorizationListView(APIView):
    """The caller's live redeploy authorizations and the seconds each has left."""

    def get(self, request):
        tokens = [token for _, token in selectors.live_authorizations(user=request.user)]
        return Response(AuthorizationSerializer(tokens, many=True).data)
