"""Withdrawing an entry's live authorization before it is used or expires."""

from django.db import transaction
from django.utils.translation import gettext_lazy as _

from cratos.audit.recorder import Action, record_event
from cratos.exceptions import ValidationFailed

from . import grants
from .models import TicketEntry
from .notifications import notify_authorization_revoked
from .providers import provider_for
from .rules import revoke_refusal
from .settlements import settle_entry
from .ticket_states import locked_ticket


@transaction.atomic
def revoke_authorization(
    *, entry: TicketEntry, actor, reason: str, request_ip: str = ""
) -> TicketEntry:
    """Withdraw an entry's live authorization (tickets.rules.revoke_refusal says who may): the
    entry settles REVOKED, which may complete the ticket, and its Redis key is deleted at once."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Give a reason for the revocation."))
    ticket = locked_ticket(entry.ticket)
    entry = TicketEntry.objects.select_for_update().get(pk=entry.pk)
    entry.ticket = ticket
    refusal = revoke_refusal(entry=entry, user=actor)
    if refusal is not None:
        raise refusal
    username = ticket.applicant.get_username()
    record_event(
        action=Action.AUTHORIZATION_REVOKED,
        actor=actor,
        ticket=ticket,
        application_name=entry.name,
        message=reason,
        request_ip=request_ip,
    )
    entry = settle_entry(entry=entry, state=TicketEntry.State.REVOKED, actor=actor)
    notify_authorization_revoked(entry=entry, actor=actor, reason=reason)
    # Redis last: a refusal above leaves the key alone, a Redis failure rolls all of it back.
    # A newer ticket's authorization for the same user and application is not this entry's.
    kind = provider_for(ticket.work_order).grant_kind
    grant = grants.live_grant(kind=kind, username=username, application_name=entry.name)
    if grant is not None and grant.ticket_id == ticket.pk:
        grants.revoke(kind=kind, username=username, application_name=entry.name)
    return entry
