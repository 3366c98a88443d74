"""Ticket writes: create, edit, submit, decide, cancel (settling an entry: tickets.settlements;
revocation: tickets.revocations).

Every function locks the ticket row (`select_for_update`), asks tickets.rules, then writes the
change, its state history and its audit event in one transaction.
"""

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from cratos.audit.recorder import Action, Outcome, record_event
from cratos.exceptions import InvalidTransition, ValidationFailed

from .approver_choice import chosen_approvers
from .models import (
    Approval,
    ApprovalNode,
    Ticket,
    TicketEntry,
    TicketNodeApprover,
    WorkOrder,
)
from .notifications import (
    notify_ticket_decided,
    notify_ticket_submitted,
)
from .providers import provider_for
from .rules import (
    applicant_refusal,
    decision_refusal,
    entries_awaiting_owners,
    entries_refusal,
    owner_teams_decided_by,
    transition_refusal,
)
from .ticket_states import locked_ticket, refuse, transition

MAX_UNSUBMITTED_TICKETS = 3
State = Ticket.State


def close_unapproved(*, ticket: Ticket, to_state: str, actor, note: str) -> None:
    """End a ticket before approval (REJECTED, CLOSED): no current node, entries cancelled."""
    transition(ticket=ticket, to_state=to_state, actor=actor, note=note)
    ticket.current_node = None
    ticket.save()
    ticket.entries.update(state=TicketEntry.State.CANCELLED)


def _gating_nodes(work_order: WorkOrder) -> list[ApprovalNode]:
    return [node for node in work_order.nodes.select_related("group") if node.is_gating]


def _add_entries(
    *, ticket: Ticket, actor, application_names: list[str], request_ip: str
) -> list[TicketEntry]:
    names = list(dict.fromkeys(name.strip() for name in application_names if name.strip()))
    if not names:
        raise ValidationFailed(_("Choose at least one application."))
    duplicates = sorted(set(ticket.entries.values_list("name", flat=True)).intersection(names))
    if duplicates:
        raise ValidationFailed(
            format_lazy(
                _("Already on the ticket: {applications}"), applications=", ".join(duplicates)
            )
        )
    entries = []
    for snapshot in provider_for(ticket.work_order).snapshots(names=names):
        entries.append(
            ticket.entries.create(
                business_type=ticket.work_order.business_type,
                name=snapshot.name,
                content=snapshot.content,
            )
        )
        record_event(
            action=Action.TICKET_ENTRY_ADDED,
            actor=actor,
            ticket=ticket,
            application_name=snapshot.name,
            request_ip=request_ip,
        )
    return entries


def refuse_unrequestable(
    *,
    actor,
    work_order: WorkOrder,
    application_names: list[str],
    ticket: Ticket | None = None,
    request_ip: str = "",
) -> None:
    """Raise the work order's refusal of `actor` asking for these entries (say, applications
    owned by a team `actor` is not in), audited in a transaction of its own: call it outside
    any transaction, or the audit event is rolled back with the caller's."""
    refusal = provider_for(work_order).request_refusal(user=actor, names=application_names)
    if refusal is None:
        return
    with transaction.atomic():
        record_event(
            action=Action.TICKET_REFUSED,
            actor=actor,
            outcome=Outcome.FAILURE,
            ticket=ticket,
            application_name=", ".join(application_names)[:128],
            message=refusal.message,
            request_ip=request_ip,
        )
    raise refusal


def create_ticket(
    *,
    applicant,
    work_order: WorkOrder,
    application_names: list[str],
    reason: str = "",
    request_ip: str = "",
) -> Ticket:
    """A NEW ticket (a draft) with its entries; the reason may wait until it is submitted.
    Applications `applicant` may not request are refused (refuse_unrequestable)."""
    refuse_unrequestable(
        actor=applicant,
        work_order=work_order,
        application_names=application_names,
        request_ip=request_ip,
    )
    return _create_ticket(
        applicant=applicant,
        work_order=work_order,
        application_names=application_names,
        reason=reason,
        request_ip=request_ip,
    )


@transaction.atomic
def _create_ticket(
    *, applicant, work_order: WorkOrder, application_names: list[str], reason: str, request_ip: str
) -> Ticket:
    if not work_order.enabled:
        raise ValidationFailed(
            format_lazy(_("Work order {work_order} is disabled."), work_order=work_order.key)
        )
    # Serialise one applicant's creations so the draft limit holds under concurrent requests.
    get_user_model().objects.select_for_update().filter(pk=applicant.pk).first()
    drafts = Ticket.objects.filter(
        applicant=applicant, work_order=work_order, state=State.NEW
    ).count()
    if drafts >= MAX_UNSUBMITTED_TICKETS:
        raise ValidationFailed(
            format_lazy(
                _(
                    "You already have {drafts} unsubmitted {work_order} tickets; "
                    "submit or cancel one first."
                ),
                drafts=drafts,
                work_order=work_order.key,
            )
        )
    ticket = Ticket.objects.create(
        work_order=work_order, applicant=applicant, reason=(reason or "").strip()
    )
    # Derived from the primary key: unique without a retry loop, however many create at once.
    ticket.ticket_no = f"{timezone.now():%Y%m%d}{ticket.pk:06d}"
    ticket.save(update_fields=["ticket_no"])
    ticket.state_changes.create(from_state="", to_state=State.NEW, actor=applicant)
    record_event(
        action=Action.TICKET_CREATED, actor=applicant, ticket=ticket, request_ip=request_ip
    )
    _add_entries(
        ticket=ticket,
        actor=applicant,
        application_names=application_names,
        request_ip=request_ip,
    )
    return ticket


def add_entries(
    *, ticket: Ticket, actor, application_names: list[str], request_ip: str = ""
) -> list[TicketEntry]:
    refuse_unrequestable(
        actor=actor,
        work_order=ticket.work_order,
        application_names=application_names,
        ticket=ticket,
        request_ip=request_ip,
    )
    with transaction.atomic():
        ticket = locked_ticket(ticket)
        refuse(entries_refusal(ticket=ticket, user=actor))
        return _add_entries(
            ticket=ticket,
            actor=actor,
            application_names=application_names,
            request_ip=request_ip,
        )


@transaction.atomic
def remove_entry(*, ticket: Ticket, actor, entry_name: str, request_ip: str = "") -> None:
    ticket = locked_ticket(ticket)
    refuse(entries_refusal(ticket=ticket, user=actor))
    deleted, _by_model = ticket.entries.filter(name=entry_name).delete()
    if not deleted:
        raise ValidationFailed(
            format_lazy(
                _("{application} is not on ticket {ticket_no}."),
                application=entry_name,
                ticket_no=ticket.ticket_no,
            )
        )
    record_event(
        action=Action.TICKET_ENTRY_REMOVED,
        actor=actor,
        ticket=ticket,
        application_name=entry_name,
        request_ip=request_ip,
    )


def submit_ticket(
    *,
    ticket: Ticket,
    actor,
    reason: str | None = None,
    approvers: Mapping[str, object] | None = None,
    request_ip: str = "",
) -> Ticket:
    """NEW → IN_APPROVAL: needs a reason, an entry, a gating node and a pick per USER_SPECIFIED
    node (`approvers`: node name → user or username). Entries are frozen from here on.
    The applicant must still be allowed to request each entry (refuse_unrequestable)."""
    if actor.pk == ticket.applicant_id:
        refuse_unrequestable(
            actor=actor,
            work_order=ticket.work_order,
            application_names=list(ticket.entries.values_list("name", flat=True)),
            ticket=ticket,
            request_ip=request_ip,
        )
    return _submit_ticket(
        ticket=ticket, actor=actor, reason=reason, approvers=approvers, request_ip=request_ip
    )


@transaction.atomic
def _submit_ticket(
    *,
    ticket: Ticket,
    actor,
    reason: str | None,
    approvers: Mapping[str, object] | None,
    request_ip: str,
) -> Ticket:
    ticket = locked_ticket(ticket)
    refuse(applicant_refusal(ticket=ticket, user=actor, action="submit"))
    refuse(transition_refusal(ticket=ticket, to_state=State.IN_APPROVAL))
    if reason is not None:
        ticket.reason = reason.strip()
    if not ticket.reason:
        raise ValidationFailed(_("Give a reason for the redeploy."))
    if not ticket.entries.exists():
        raise ValidationFailed(_("A ticket without entries cannot be submitted."))
    nodes = _gating_nodes(ticket.work_order)
    if not nodes:
        raise ValidationFailed(
            format_lazy(
                _(
                    "Work order {work_order} has no approval node that decides; "
                    "ask an administrator to configure its approval chain."
                ),
                work_order=ticket.work_order.key,
            )
        )
    chosen = chosen_approvers(ticket=ticket, nodes=nodes, approvers=approvers or {})
    TicketNodeApprover.objects.bulk_create(chosen)
    transition(ticket=ticket, to_state=State.IN_APPROVAL, actor=actor)
    ticket.current_node = nodes[0]
    ticket.submitted_at = timezone.now()
    ticket.save()
    picks = "".join(f"\n{c.node.name}: {c.user.get_username()}" for c in chosen)
    record_event(
        action=Action.TICKET_SUBMITTED,
        actor=actor,
        ticket=ticket,
        message=ticket.reason + picks,
        request_ip=request_ip,
    )
    notify_ticket_submitted(ticket=ticket)
    return ticket


def _decide(
    *,
    ticket: Ticket,
    approver,
    decision: str,
    comment: str,
    node: ApprovalNode | None,
    request_ip: str,
) -> tuple[Ticket, ApprovalNode]:
    """Lock, check and record one decision on the current node; return the locked ticket.

    `node`, when given, is the node the approver saw: if it was decided meanwhile, the vote is
    refused instead of landing on the next node.
    """
    ticket = locked_ticket(ticket)
    reject = decision == Approval.Decision.REJECT
    if node is not None and ticket.current_node_id != node.pk:
        raise InvalidTransition(_already_decided(node=node, ticket=ticket))
    refuse(decision_refusal(ticket=ticket, user=approver, reject=reject))
    current = ticket.current_node
    # At an APPLICATION_OWNER node the approver decides for each owner team of theirs still
    # awaited: one decision per team, so a two-team ticket waits for both.
    teams = [None]
    if current.node_type == ApprovalNode.Type.APPLICATION_OWNER:
        teams = owner_teams_decided_by(ticket=ticket, node=current, user=approver) or [None]
    try:
        with transaction.atomic():
            approvals = Approval.objects.bulk_create(
                Approval(
                    ticket=ticket,
                    node=current,
                    team_id=team_id,
                    approver=approver,
                    decision=decision,
                    comment=comment,
                )
                for team_id in teams
            )
    except IntegrityError:
        # Unreachable while the row lock holds; the constraint is the last line of defence.
        raise InvalidTransition(_already_decided(node=current, ticket=ticket)) from None
    record_event(
        action=Action.TICKET_REJECTED if reject else Action.TICKET_APPROVED,
        actor=approver,
        outcome=Outcome.FAILURE if reject else Outcome.SUCCESS,
        ticket=ticket,
        message=f"{current.name}{_for_teams(approvals)}: {'rejected' if reject else 'approved'}"
        + (f" — {comment}" if comment else ""),
        request_ip=request_ip,
    )
    # Sent after commit; a mint that fails rolls the decision back and nothing is sent.
    notify_ticket_decided(ticket=ticket, approval=approvals[0])
    return ticket, current


def _already_decided(*, node: ApprovalNode, ticket: Ticket):
    return format_lazy(
        _("Node {node} of ticket {ticket_no} was already decided."),
        node=node.display_name,
        ticket_no=ticket.ticket_no,
    )


def _for_teams(approvals: list[Approval]) -> str:
    names = [approval.team.name for approval in approvals if approval.team_id]
    return f" (for {', '.join(names)})" if names else ""


def _node_done(*, ticket: Ticket, node: ApprovalNode) -> bool:
    """Whether an approved node lets the ticket move on: an APPLICATION_OWNER node only once
    every entry has its owners' approval."""
    if node.node_type != ApprovalNode.Type.APPLICATION_OWNER:
        return True
    return not entries_awaiting_owners(ticket=ticket, node=node)


@transaction.atomic
def approve_ticket(
    *,
    ticket: Ticket,
    approver,
    comment: str = "",
    node: ApprovalNode | None = None,
    request_ip: str = "",
) -> Ticket:
    """Approve the current node; the last gating node makes the ticket APPROVED and mints.

    Call it in its own transaction: Redis cannot roll back with a larger one that fails later.
    """
    ticket, decided = _decide(
        ticket=ticket,
        approver=approver,
        decision=Approval.Decision.APPROVE,
        comment=(comment or "").strip(),
        node=node,
        request_ip=request_ip,
    )
    if not _node_done(ticket=ticket, node=decided):
        ticket.save()
        return ticket
    later = [n for n in _gating_nodes(ticket.work_order) if n.position > decided.position]
    if later:
        ticket.current_node = later[0]
        ticket.save()
        return ticket
    transition(ticket=ticket, to_state=State.APPROVED, actor=approver)
    ticket.current_node = None
    ticket.decided_at = timezone.now()
    ticket.save()
    entries = list(ticket.entries.all())
    # The grants (Redis writes) come last but for saving the entries, so a Redis refusal rolls
    # the whole approval back and little can fail after them.
    provider_for(ticket.work_order).on_approved(ticket=ticket, entries=entries, actor=approver)
    for entry in entries:
        entry.state = TicketEntry.State.AUTHORIZED
        entry.save(update_fields=["state", "authorization_expires_at"])
    return ticket


@transaction.atomic
def reject_ticket(
    *,
    ticket: Ticket,
    approver,
    reason: str,
    node: ApprovalNode | None = None,
    request_ip: str = "",
) -> Ticket:
    """Reject the current node (a reason is required): the ticket is REJECTED, entries cancelled."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(_("Give a reason for the rejection."))
    ticket, _approvals = _decide(
        ticket=ticket,
        approver=approver,
        decision=Approval.Decision.REJECT,
        comment=reason,
        node=node,
        request_ip=request_ip,
    )
    ticket.decided_at = timezone.now()
    close_unapproved(ticket=ticket, to_state=State.REJECTED, actor=approver, note=reason)
    return ticket


@transaction.atomic
def cancel_ticket(*, ticket: Ticket, actor, reason: str = "", request_ip: str = "") -> Ticket:
    """The applicant withdraws a ticket not yet approved: CLOSED, entries cancelled."""
    reason = (reason or "").strip()
    ticket = locked_ticket(ticket)
    refuse(applicant_refusal(ticket=ticket, user=actor, action="cancel"))
    close_unapproved(ticket=ticket, to_state=State.CLOSED, actor=actor, note=reason)
    record_event(
        action=Action.TICKET_CANCELLED,
        actor=actor,
        ticket=ticket,
        message=reason,
        request_ip=request_ip,
    )
    return ticket
