"""Ticket writes and rules: create, edit, submit, decide, cancel, settle.

Every function locks the ticket row (`select_for_update`), checks the rule, writes the change,
its state history and its audit event in one transaction.
"""

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from cratos.exceptions import InvalidTransition, PermissionRefused, ValidationFailed
from redeploy.audit import Action, Outcome, record_event

from .models import Approval, ApprovalNode, Ticket, TicketEntry, TicketNodeApprover, WorkOrder
from .providers import provider_for
from .rules import applicant_refusal, decision_refusal

MAX_UNSUBMITTED_TICKETS = 3

State = Ticket.State
_TRANSITIONS = {
    State.NEW: {State.IN_APPROVAL, State.CLOSED},
    State.IN_APPROVAL: {State.APPROVED, State.REJECTED, State.CLOSED},
    State.APPROVED: {State.COMPLETED},
}


def _transition(*, ticket: Ticket, to_state: str, actor, note: str = "") -> None:
    if to_state not in _TRANSITIONS.get(ticket.state, set()):
        raise InvalidTransition(
            f"Ticket {ticket.ticket_no} is {ticket.state}; it cannot become {to_state}."
        )
    ticket.state_changes.create(from_state=ticket.state, to_state=to_state, actor=actor, note=note)
    ticket.state = to_state


def _locked(ticket: Ticket) -> Ticket:
    return (
        Ticket.objects.select_for_update()
        .select_related("work_order", "applicant")
        .get(pk=ticket.pk)
    )


def _ensure_applicant(*, ticket: Ticket, user, action: str) -> None:
    refusal = applicant_refusal(ticket=ticket, user=user, action=action)
    if refusal:
        raise PermissionRefused(refusal)


def _add_entries(*, ticket: Ticket, actor, application_names: list[str]) -> list[TicketEntry]:
    names = list(dict.fromkeys(name.strip() for name in application_names if name.strip()))
    if not names:
        raise ValidationFailed("Choose at least one application.")
    present = set(ticket.entries.values_list("name", flat=True))
    duplicates = sorted(present.intersection(names))
    if duplicates:
        raise ValidationFailed(f"Already on the ticket: {', '.join(duplicates)}")
    provider = provider_for(ticket.work_order)
    entries = []
    for target in provider.resolve(names=names):
        name, content = provider.snapshot(target=target)
        entries.append(
            ticket.entries.create(
                business_type=ticket.work_order.business_type,
                application=target,
                name=name,
                content=content,
            )
        )
        record_event(
            action=Action.TICKET_ENTRY_ADDED, actor=actor, ticket=ticket, application_name=name
        )
    return entries


@transaction.atomic
def create_ticket(
    *, applicant, work_order: WorkOrder, application_names: list[str], reason: str = ""
) -> Ticket:
    if not work_order.enabled:
        raise ValidationFailed(f"Work order {work_order.key} is disabled.")
    # Serialise one applicant's creations so the draft limit holds under concurrent requests.
    get_user_model().objects.select_for_update().filter(pk=applicant.pk).first()
    drafts = Ticket.objects.filter(
        applicant=applicant, work_order=work_order, state=State.NEW
    ).count()
    if drafts >= MAX_UNSUBMITTED_TICKETS:
        raise ValidationFailed(
            f"You already have {drafts} unsubmitted {work_order.key} tickets; "
            "submit or cancel one first."
        )
    ticket = Ticket.objects.create(
        work_order=work_order, applicant=applicant, reason=reason.strip()
    )
    # Derived from the primary key: unique without a retry loop, however many create at once.
    ticket.ticket_no = f"{timezone.now():%Y%m%d}{ticket.pk:06d}"
    ticket.save(update_fields=["ticket_no"])
    ticket.state_changes.create(from_state="", to_state=State.NEW, actor=applicant)
    record_event(action=Action.TICKET_CREATED, actor=applicant, ticket=ticket)
    _add_entries(ticket=ticket, actor=applicant, application_names=application_names)
    return ticket


@transaction.atomic
def add_entries(*, ticket: Ticket, actor, application_names: list[str]) -> list[TicketEntry]:
    ticket = _locked(ticket)
    _ensure_applicant(ticket=ticket, user=actor, action="edit")
    if ticket.state != State.NEW:
        raise InvalidTransition(f"Ticket {ticket.ticket_no} is {ticket.state}; entries are frozen.")
    return _add_entries(ticket=ticket, actor=actor, application_names=application_names)


@transaction.atomic
def remove_entry(*, ticket: Ticket, actor, entry_name: str) -> None:
    ticket = _locked(ticket)
    _ensure_applicant(ticket=ticket, user=actor, action="edit")
    if ticket.state != State.NEW:
        raise InvalidTransition(f"Ticket {ticket.ticket_no} is {ticket.state}; entries are frozen.")
    deleted, _ = ticket.entries.filter(name=entry_name).delete()
    if not deleted:
        raise ValidationFailed(f"{entry_name} is not on ticket {ticket.ticket_no}.")
    record_event(
        action=Action.TICKET_ENTRY_REMOVED, actor=actor, ticket=ticket, application_name=entry_name
    )


def _gating_nodes(work_order: WorkOrder) -> list[ApprovalNode]:
    return [node for node in work_order.nodes.select_related("group") if node.is_gating]


def _resolve_chosen_approvers(
    *, ticket: Ticket, approvers: Mapping[str, object]
) -> list[TicketNodeApprover]:
    users = get_user_model().objects
    chosen = []
    for node in _gating_nodes(ticket.work_order):
        if node.node_type != ApprovalNode.Type.USER_SPECIFIED:
            continue
        pick = approvers.get(node.name)
        if not pick:
            raise ValidationFailed(f"Choose the approver for node {node.name}.")
        user = pick if hasattr(pick, "pk") else users.filter(username=pick).first()
        if user is None or not user.groups.filter(pk=node.group_id).exists():
            raise ValidationFailed(f"{pick} is not a candidate approver of node {node.name}.")
        if user.pk == ticket.applicant_id:
            raise ValidationFailed("You cannot choose yourself as an approver.")
        chosen.append(TicketNodeApprover(ticket=ticket, node=node, user=user))
    return chosen


@transaction.atomic
def submit_ticket(
    *,
    ticket: Ticket,
    actor,
    reason: str | None = None,
    approvers: Mapping[str, object] | None = None,
) -> Ticket:
    ticket = _locked(ticket)
    _ensure_applicant(ticket=ticket, user=actor, action="submit")
    if ticket.state != State.NEW:
        raise InvalidTransition(
            f"Ticket {ticket.ticket_no} is {ticket.state}; only a NEW ticket can be submitted."
        )
    if reason is not None:
        ticket.reason = reason.strip()
    if not ticket.reason:
        raise ValidationFailed("Give a reason for the redeploy.")
    if not ticket.entries.exists():
        raise ValidationFailed("A ticket without entries cannot be submitted.")
    nodes = _gating_nodes(ticket.work_order)
    if not nodes:
        raise ValidationFailed(f"Work order {ticket.work_order.key} has no approval node.")
    TicketNodeApprover.objects.bulk_create(
        _resolve_chosen_approvers(ticket=ticket, approvers=approvers or {})
    )
    _transition(ticket=ticket, to_state=State.IN_APPROVAL, actor=actor)
    ticket.current_node = nodes[0]
    ticket.submitted_at = timezone.now()
    ticket.save()
    record_event(action=Action.TICKET_SUBMITTED, actor=actor, ticket=ticket, message=ticket.reason)
    return ticket


def _ensure_may_decide(*, ticket: Ticket, user) -> None:
    refusal = decision_refusal(ticket=ticket, user=user)
    if refusal:
        raise PermissionRefused(refusal)


def _record_decision(*, ticket: Ticket, approver, decision: str, comment: str) -> None:
    try:
        with transaction.atomic():
            Approval.objects.create(
                ticket=ticket,
                node=ticket.current_node,
                approver=approver,
                decision=decision,
                comment=comment,
            )
    except IntegrityError:
        raise InvalidTransition(
            f"Node {ticket.current_node.name} of ticket {ticket.ticket_no} was already decided."
        ) from None


@transaction.atomic
def approve_ticket(*, ticket: Ticket, approver, comment: str = "") -> Ticket:
    ticket = _locked(ticket)
    _ensure_may_decide(ticket=ticket, user=approver)
    node = ticket.current_node
    _record_decision(ticket=ticket, approver=approver, decision="APPROVE", comment=comment.strip())
    record_event(
        action=Action.TICKET_APPROVED,
        actor=approver,
        ticket=ticket,
        message=f"{node.name}: approved" + (f" — {comment.strip()}" if comment.strip() else ""),
    )
    later = [n for n in _gating_nodes(ticket.work_order) if n.position > node.position]
    if later:
        ticket.current_node = later[0]
        ticket.save()
        return ticket
    _transition(ticket=ticket, to_state=State.APPROVED, actor=approver)
    ticket.current_node = None
    ticket.decided_at = timezone.now()
    ticket.save()
    provider = provider_for(ticket.work_order)
    # The grants (Redis writes) come last, so only the commit itself can fail after them.
    for entry in ticket.entries.all():
        entry.state = TicketEntry.State.AUTHORIZED
        provider.on_approved(ticket=ticket, entry=entry)
        entry.save(update_fields=["state", "authorization_expires_at"])
    return ticket


@transaction.atomic
def reject_ticket(*, ticket: Ticket, approver, reason: str) -> Ticket:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("Give a reason for the rejection.")
    ticket = _locked(ticket)
    _ensure_may_decide(ticket=ticket, user=approver)
    node = ticket.current_node
    _record_decision(ticket=ticket, approver=approver, decision="REJECT", comment=reason)
    _transition(ticket=ticket, to_state=State.REJECTED, actor=approver, note=reason)
    ticket.current_node = None
    ticket.decided_at = timezone.now()
    ticket.save()
    ticket.entries.update(state=TicketEntry.State.CANCELLED)
    record_event(
        action=Action.TICKET_REJECTED,
        actor=approver,
        outcome=Outcome.FAILURE,
        ticket=ticket,
        message=f"{node.name}: rejected — {reason}",
    )
    return ticket


@transaction.atomic
def cancel_ticket(*, ticket: Ticket, actor, reason: str = "") -> Ticket:
    ticket = _locked(ticket)
    _ensure_applicant(ticket=ticket, user=actor, action="cancel")
    if ticket.state not in (State.NEW, State.IN_APPROVAL):
        raise InvalidTransition(
            f"Ticket {ticket.ticket_no} is {ticket.state}; only a ticket not yet approved "
            "can be cancelled."
        )
    _transition(ticket=ticket, to_state=State.CLOSED, actor=actor, note=reason.strip())
    ticket.current_node = None
    ticket.save()
    ticket.entries.update(state=TicketEntry.State.CANCELLED)
    record_event(action=Action.TICKET_CANCELLED, actor=actor, ticket=ticket, message=reason.strip())
    return ticket


@transaction.atomic
def settle_entry(
    *, entry: TicketEntry, state: str, actor=None, success: bool | None = None
) -> None:
    """Mark an authorized entry USED, EXPIRED or REVOKED; complete the ticket with the last one.

    Called by the redeploy, revocation and expiry services inside their own transaction.
    """
    ticket = _locked(entry.ticket)
    entry = TicketEntry.objects.select_for_update().get(pk=entry.pk)
    if entry.state != TicketEntry.State.AUTHORIZED:
        raise InvalidTransition(f"{entry.name} on ticket {ticket.ticket_no} is {entry.state}.")
    entry.state = state
    entry.success = success
    entry.save(update_fields=["state", "success"])
    entries = list(ticket.entries.all())
    if ticket.state == State.APPROVED and all(e.is_settled for e in entries):
        _transition(ticket=ticket, to_state=State.COMPLETED, actor=actor)
        ticket.success = all(e.state == TicketEntry.State.USED and e.success for e in entries)
        ticket.completed_at = timezone.now()
        ticket.save()
        record_event(
            action=Action.TICKET_COMPLETED,
            actor=actor,
            outcome=Outcome.SUCCESS if ticket.success else Outcome.FAILURE,
            ticket=ticket,
            message="Every redeploy succeeded."
            if ticket.success
            else "Not every redeploy ran or succeeded.",
        )
