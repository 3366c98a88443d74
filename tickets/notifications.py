"""Notices: who hears about a ticket event, by email and through the work order's webhook.

The services call the `notify_*` functions inside their transaction. Each only schedules a
Celery task for after the commit, so a change that rolls back notifies nobody, and a broker,
mail server or webhook that fails is logged, never raised into the change. The tasks pick the
recipients when they run, from the committed rows, with tickets.rules deciding who may decide.

Approval requests carry approve/reject links signed for one approver and one node of one
ticket; a link works once, only while the ticket still waits on that node, and only for a
browser signed in as that approver.
"""

import json
import logging
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _

from cratos import queue
from cratos.exceptions import InvalidTransition, NotFound, PermissionRefused

from .models import Approval, ApprovalNode, DecisionLinkUse, Ticket, TicketEntry
from .providers import markdown_table
from .rules import decision_refusal
from .selectors import entries_markdown, entries_table, ticket_queryset

logger = logging.getLogger(__name__)

DECISION_LINK_SALT = "tickets.notices.decision-link"
# A notice is not worth holding a request for: publish with a short retry, then log and go on.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}

# The notice tasks, as tickets.notification_tasks registers them.
SEND_TICKET_SUBMITTED = "tickets.send_ticket_submitted"
SEND_TICKET_DECIDED = "tickets.send_ticket_decided"
SEND_AUTHORIZATION_REVOKED = "tickets.send_authorization_revoked"
SEND_OPERATION_FINISHED = "tickets.send_operation_finished"
POST_WEBHOOK = "tickets.post_webhook"

Decision = Approval.Decision


class Event:
    """The `event` of a webhook body and its X-Cratos-Event header."""

    TICKET_SUBMITTED = "ticket.submitted"
    NODE_APPROVED = "ticket.node_approved"  # one step approved, the next one waits
    TICKET_APPROVED = "ticket.approved"  # the last step approved: authorizations are live
    TICKET_REJECTED = "ticket.rejected"
    AUTHORIZATION_REVOKED = "authorization.revoked"


# -- what the services call ------------------------------------------------------------------------


def notify_ticket_submitted(*, ticket: Ticket) -> None:
    """Ask the current node's approvers (never the applicant) to decide; inform CC_TO nodes."""
    _after_commit(SEND_TICKET_SUBMITTED, ticket_id=ticket.pk, node_id=ticket.current_node_id)


def notify_ticket_decided(*, ticket: Ticket, approval: Approval) -> None:
    """Tell the applicant who decided what; when the ticket moved on, ask the next approvers."""
    _after_commit(SEND_TICKET_DECIDED, ticket_id=ticket.pk, approval_id=approval.pk)


def notify_authorization_revoked(*, entry: TicketEntry, actor, reason: str) -> None:
    """Tell the applicant that the authorization of `entry` was revoked, by whom and why."""
    _after_commit(
        SEND_AUTHORIZATION_REVOKED,
        entry_id=entry.pk,
        actor_username=actor.get_username(),
        reason=reason,
    )


def notify_operation_finished(*, ticket_id: int, report: dict) -> None:
    """Tell the applicant and the approvers of a ticket how an operation on its grant ended.

    `report` is written by the kind of work order that ran it, in the site's language, and
    travels as JSON: `event` (the webhook's), `subject`, `summary`, the records' `title`,
    `headers` and `rows` (the seed's second table), and the webhook's own `fields`."""
    _after_commit(SEND_OPERATION_FINISHED, ticket_id=ticket_id, report=report)


def _after_commit(task_name: str, **kwargs) -> None:
    transaction.on_commit(lambda: enqueue(task_name, **kwargs))


def enqueue(task_name: str, **kwargs) -> None:
    """Queue a notice task (tickets.notification_tasks); a failure is logged, never raised."""
    try:
        queue.enqueue(task_name, kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception:
        logger.exception("Cannot queue notice %s %s", task_name, kwargs)


# -- recipients ------------------------------------------------------------------------------------


def eligible_approvers(*, ticket: Ticket) -> list:
    """Who may decide the ticket's current node now, as tickets.rules.decision_refusal says:
    its group's members or the chosen approver, never the applicant. `ticket` comes from
    selectors.ticket_queryset (decision_refusal reads its approvals and chosen approvers)."""
    node = ticket.current_node
    if node is None:
        return []
    candidates = {user.pk: user for user in node.group.user_set.filter(is_active=True)}
    for chosen in ticket.chosen_approvers.all():
        if chosen.node_id == node.pk and chosen.user.is_active:
            candidates.setdefault(chosen.user_id, chosen.user)
    eligible = [
        user for user in candidates.values() if decision_refusal(ticket=ticket, user=user) is None
    ]
    return sorted(eligible, key=lambda user: user.get_username())


def _informed(*, ticket: Ticket, exclude: list) -> list:
    """Members of the work order's CC_TO nodes, but the applicant and `exclude`."""
    skip = {ticket.applicant_id, *(user.pk for user in exclude)}
    users = {}
    for node in ticket.work_order.nodes.filter(node_type=ApprovalNode.Type.CC_TO):
        for user in node.group.user_set.filter(is_active=True):
            if user.pk not in skip:
                users[user.pk] = user
    return sorted(users.values(), key=lambda user: user.get_username())


def _approvers_of(ticket: Ticket) -> list:
    """The users who approved a node of the ticket, in decision order."""
    users = {}
    for approval in ticket.approvals.all():
        if approval.decision == Decision.APPROVE:
            users.setdefault(approval.approver_id, approval.approver)
    return list(users.values())


# -- sending (the tasks call these) ----------------------------------------------------------------


def send_ticket_submitted(*, ticket_id: int, node_id: int) -> None:
    ticket = _load_ticket(ticket_id)
    node = ApprovalNode.objects.select_related("group").get(pk=node_id)
    approvers = _waiting_approvers(ticket=ticket, node=node)
    summary = _(
        "%(applicant)s submitted ticket %(no)s (%(applications)s); "
        "it waits for a decision on step %(node)s."
    ) % {
        "applicant": ticket.applicant.get_username(),
        "no": ticket.ticket_no,
        "applications": _applications(ticket),
        "node": node.name,
    }
    context = _ticket_context(ticket, summary=summary, node=node)
    _request_decisions(ticket=ticket, node=node, approvers=approvers, context=context)
    subject = _("Ticket %(no)s was submitted") % {"no": ticket.ticket_no}
    for user in _informed(ticket=ticket, exclude=approvers):
        _send_mail(user=user, subject=subject, template="notices/ticket_submitted", context=context)
    _post(
        ticket=ticket,
        event=Event.TICKET_SUBMITTED,
        context=context,
        node=node.name,
        approvers=[user.get_username() for user in approvers],
    )


def send_ticket_decided(*, ticket_id: int, approval_id: int) -> None:
    ticket = _load_ticket(ticket_id)
    approval = next(a for a in ticket.approvals.all() if a.pk == approval_id)
    approver = approval.approver.get_username()
    names = {"approver": approver, "no": ticket.ticket_no, "node": approval.node.name}
    next_node = None
    if approval.decision == Decision.REJECT:
        event = Event.TICKET_REJECTED
        subject = _("Ticket %(no)s was rejected by %(approver)s") % names
        summary = _("%(approver)s rejected ticket %(no)s at step %(node)s: %(reason)s") % {
            **names,
            "reason": approval.comment,
        }
    elif ticket.state == Ticket.State.IN_APPROVAL and ticket.current_node_id == approval.node_id:
        # An owner team's approval at an APPLICATION_OWNER node that other teams still await:
        # their requests went out on submission.
        event = Event.NODE_APPROVED
        subject = _("Step %(node)s of ticket %(no)s was approved by %(approver)s") % names
        summary = (
            _(
                "%(approver)s approved step %(node)s of ticket %(no)s for their team; it still "
                "waits for the other owner teams."
            )
            % names
        )
    else:
        next_node = (
            ticket.work_order.nodes.select_related("group")
            .filter(position__gt=approval.node.position)
            .exclude(node_type=ApprovalNode.Type.CC_TO)
            .first()
        )
        if next_node is None:
            event = Event.TICKET_APPROVED
            subject = _("Ticket %(no)s was approved by %(approver)s") % names
            summary = (
                _(
                    "%(approver)s approved ticket %(no)s (step %(node)s). You may redeploy each "
                    "application on it once before its authorization expires."
                )
                % names
            )
        else:
            event = Event.NODE_APPROVED
            subject = _("Step %(node)s of ticket %(no)s was approved by %(approver)s") % names
            summary = _(
                "%(approver)s approved step %(node)s of ticket %(no)s; it now waits for a "
                "decision on step %(next)s."
            ) % {**names, "next": next_node.name}
    context = _ticket_context(ticket, summary=summary, node=approval.node, approval=approval)
    _send_mail(
        user=ticket.applicant, subject=subject, template="notices/ticket_decided", context=context
    )
    approvers = []
    if next_node is not None:
        approvers = _waiting_approvers(ticket=ticket, node=next_node)
        next_context = _ticket_context(ticket, summary=summary, node=next_node)
        _request_decisions(ticket=ticket, node=next_node, approvers=approvers, context=next_context)
    _post(
        ticket=ticket,
        event=event,
        context=context,
        node=approval.node.name,
        approver=approver,
        decision=approval.decision,
        comment=approval.comment,
        nextNode=next_node.name if next_node else None,
        approvers=[user.get_username() for user in approvers],
    )


def send_authorization_revoked(*, entry_id: int, actor_username: str, reason: str) -> None:
    entry = TicketEntry.objects.get(pk=entry_id)
    ticket = _load_ticket(entry.ticket_id)
    names = {"actor": actor_username, "application": entry.name, "no": ticket.ticket_no}
    summary = _(
        "%(actor)s revoked your authorization to redeploy %(application)s (ticket %(no)s): "
        "%(reason)s"
    ) % {**names, "reason": reason}
    context = _ticket_context(ticket, summary=summary, entry=entry, reason=reason)
    _send_mail(
        user=ticket.applicant,
        subject=_("Your authorization to redeploy %(application)s was revoked") % names,
        template="notices/authorization_revoked",
        context=context,
    )
    _post(
        ticket=ticket,
        event=Event.AUTHORIZATION_REVOKED,
        context=context,
        application=entry.name,
        actor=actor_username,
        revokeReason=reason,
    )


def send_operation_finished(*, ticket_id: int, report: dict) -> None:
    ticket = _load_ticket(ticket_id)
    context = _ticket_context(
        ticket,
        summary=report["summary"],
        records_title=report["title"],
        record_headers=report["headers"],
        record_rows=report["rows"],
        records_markdown=markdown_table(report["headers"], report["rows"]),
    )
    recipients = {ticket.applicant_id: ticket.applicant}
    for user in _approvers_of(ticket):
        recipients.setdefault(user.pk, user)
    for user in recipients.values():
        _send_mail(
            user=user,
            subject=report["subject"],
            template="notices/operation_finished",
            context=context,
        )
    _post(ticket=ticket, event=report["event"], context=context, **report["fields"])


def _load_ticket(ticket_id: int) -> Ticket:
    return (
        ticket_queryset().select_related("work_order").prefetch_related("entries").get(pk=ticket_id)
    )


def _waiting_approvers(*, ticket: Ticket, node: ApprovalNode) -> list:
    """The approvers of `node` if the ticket still waits on it; nobody when it moved on."""
    if ticket.state != Ticket.State.IN_APPROVAL or ticket.current_node_id != node.pk:
        logger.info("Ticket %s no longer waits on node %s; no request sent", ticket, node.name)
        return []
    return eligible_approvers(ticket=ticket)


def _applications(ticket: Ticket) -> str:
    return ", ".join(entry.name for entry in ticket.entries.all())


def absolute_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def _ticket_context(ticket: Ticket, *, summary: str, **extra) -> dict:
    headers, rows = entries_table(ticket=ticket)
    return {
        "ticket": ticket,
        "summary": summary,
        "ticket_url": absolute_url(reverse("tickets:detail", args=[ticket.ticket_no])),
        "entry_headers": headers,
        "entry_rows": rows,
        "entries_markdown": entries_markdown(ticket=ticket),
        **extra,
    }


def _request_decisions(*, ticket: Ticket, node: ApprovalNode, approvers: list, context: dict):
    """One approval request per approver, with approve/reject links signed for that approver."""
    subject = _("Ticket %(no)s waits for your decision (%(node)s)") % {
        "no": ticket.ticket_no,
        "node": node.name,
    }
    for user in approvers:
        # One nonce for the pair: using either link spends both.
        nonce = secrets.token_urlsafe(16)
        links = {
            f"{decision.lower()}_url": decision_link_url(
                ticket=ticket, node=node, user=user, decision=decision, nonce=nonce
            )
            for decision in Decision.values
        }
        _send_mail(
            user=user,
            subject=subject,
            template="notices/approval_request",
            context={**context, **links},
        )


def _send_mail(*, user, subject: str, template: str, context: dict) -> None:
    """One email to one user, as text and HTML; a failure is logged and the others still go."""
    if not user.email:
        logger.info("No email address for %s; notice %r not sent", user.get_username(), subject)
        return
    context = {**context, "recipient": user}
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),
        body=render_to_string(f"{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[user.email],
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    try:
        message.send()
    except Exception:
        logger.exception("Cannot send notice %r to %s", subject, user.get_username())


# -- webhook ---------------------------------------------------------------------------------------


def _post(*, ticket: Ticket, event: str, context: dict, **fields) -> None:
    """Queue the event's webhook body for the ticket's work order, if it has a webhook."""
    work_order = ticket.work_order
    if not work_order.webhook_url:
        return
    if not work_order.has_webhook:
        logger.warning("Webhook of work order %s has no secret; %s not sent", work_order, event)
        return
    body = {
        "event": event,
        "ticketNo": ticket.ticket_no,
        "workOrder": work_order.key,
        "state": ticket.state,
        "url": context["ticket_url"],
        "applicant": ticket.applicant.get_username(),
        "reason": ticket.reason,
        "applications": [entry.name for entry in ticket.entries.all()],
        "entriesMarkdown": context["entries_markdown"],
        # One plain line and the link: what a relay puts in a chat message.
        "text": f"{context['summary']}\n{context['ticket_url']}",
        **fields,
    }
    enqueue(
        POST_WEBHOOK,
        work_order_id=work_order.pk,
        event=event,
        body=json.dumps(body, ensure_ascii=False),
        delivery=uuid.uuid4().hex,
    )


# -- approve/reject links --------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionLink:
    """A verified approve/reject link: `ticket` still waits on `node`, for `user_id`."""

    ticket: Ticket
    node: ApprovalNode
    user_id: int
    decision: str
    nonce: str

    @property
    def rejects(self) -> bool:
        return self.decision == Decision.REJECT


def decision_link_url(*, ticket: Ticket, node: ApprovalNode, user, decision: str, nonce: str):
    token = signing.dumps(
        {"t": ticket.pk, "n": node.pk, "u": user.pk, "d": decision, "k": nonce},
        salt=DECISION_LINK_SALT,
    )
    return absolute_url(reverse("notices:decide", args=[token]))


def read_decision_link(*, token: str, user) -> DecisionLink:
    """The link behind `token` if `user` may still use it; refused otherwise: tampered or
    another user's (403), unknown ticket (404), used or expired with its node (409)."""
    try:
        data = signing.loads(token, salt=DECISION_LINK_SALT)
    except signing.BadSignature:
        raise PermissionRefused(_("This decision link is not valid.")) from None
    if data["u"] != user.pk:
        raise PermissionRefused(
            _("This decision link was sent to another approver; sign in as that approver.")
        )
    ticket = ticket_queryset().prefetch_related("entries").filter(pk=data["t"]).first()
    node = ApprovalNode.objects.select_related("group").filter(pk=data["n"]).first()
    if ticket is None or node is None:
        raise NotFound(_("The ticket of this decision link does not exist."))
    if DecisionLinkUse.objects.filter(nonce=data["k"]).exists():
        raise InvalidTransition(_("This decision link was already used."))
    if ticket.state != Ticket.State.IN_APPROVAL or ticket.current_node_id != node.pk:
        raise InvalidTransition(
            _("This decision link has expired: ticket %(no)s no longer waits on step %(node)s.")
            % {"no": ticket.ticket_no, "node": node.name}
        )
    return DecisionLink(
        ticket=ticket, node=node, user_id=user.pk, decision=data["d"], nonce=data["k"]
    )
