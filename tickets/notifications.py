"""Notices: who hears about a ticket event, by email, in the chat channels
(tickets.channels) and through the work order's webhook (tickets.webhooks).

The services call the `notify_*` functions inside their transaction. Each only schedules a
Celery task for after the commit, so a change that rolls back notifies nobody, and a broker,
mail server, robot or webhook that fails is logged, never raised into the change. The tasks
pick the recipients when they run, from the committed rows, with tickets.rules deciding who may
decide, and write each notice in its recipient's language.

Approval requests carry approve/reject links signed for one approver and one node of one
ticket (tickets.notice_links).
"""

import logging
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from . import channels
from .channel_cards import CardNotice, card_language
from .channel_cards import Decision as CardDecision
from .models import Approval, ApprovalNode, Ticket, TicketEntry
from .notice_links import absolute_url, decision_links
from .notice_queue import (
    SEND_AUTHORIZATION_EXPIRING,
    SEND_AUTHORIZATION_REVOKED,
    SEND_OPERATION_FINISHED,
    SEND_TICKET_DECIDED,
    SEND_TICKET_SUBMITTED,
    enqueue,
)
from .providers import markdown_table
from .rules import decision_refusal
from .selectors import entries_markdown, entries_table, ticket_queryset
from .webhooks import queue_webhook

logger = logging.getLogger(__name__)

Decision = Approval.Decision


class Event:
    """The `event` of a webhook body and its X-Cratos-Event header."""

    TICKET_SUBMITTED = "ticket.submitted"
    NODE_APPROVED = "ticket.node_approved"  # one step approved, the next one waits
    TICKET_APPROVED = "ticket.approved"  # the last step approved: authorizations are live
    TICKET_REJECTED = "ticket.rejected"
    AUTHORIZATION_REVOKED = "authorization.revoked"
    AUTHORIZATION_EXPIRING = "authorization.expiring"  # NOTICE_EXPIRY_WARNING_MINUTES before


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


def notify_authorization_expiring(*, entry: TicketEntry) -> None:
    """Tell the applicant that the authorization of `entry` runs out soon, unused so far."""
    _after_commit(
        SEND_AUTHORIZATION_EXPIRING,
        entry_id=entry.pk,
        expires_at=entry.authorization_expires_at.isoformat(),
    )


def notify_operation_finished(*, ticket_id: int, report: dict) -> None:
    """Tell the applicant and the approvers of a ticket how an operation on its grant ended.

    `report` is written by the kind of work order that ran it, in the site's language, and
    travels as JSON: `event` (the webhook's), `subject`, `summary`, the records' `title`,
    `headers` and `rows` (the seed's second table), and the webhook's own `fields`."""
    _after_commit(SEND_OPERATION_FINISHED, ticket_id=ticket_id, report=report)


def _after_commit(task_name: str, **kwargs) -> None:
    transaction.on_commit(lambda: enqueue(task_name, **kwargs))


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
#
# What a notice says is a `words` function: (subject, summary) in the active language, called
# once per language, so each mail and each chat card reads in its recipient's language.


def send_ticket_submitted(*, ticket_id: int, node_id: int) -> None:
    ticket = _load_ticket(ticket_id)
    node = ApprovalNode.objects.select_related("group").get(pk=node_id)
    approvers = _waiting_approvers(ticket=ticket, node=node)

    def summary() -> str:
        return _(
            "%(applicant)s submitted ticket %(no)s (%(applications)s); "
            "it waits for a decision on step %(node)s."
        ) % {
            "applicant": ticket.applicant.get_username(),
            "no": ticket.ticket_no,
            "applications": _applications(ticket),
            "node": node.display_name,
        }

    def words() -> tuple[str, str]:
        return _("Ticket %(no)s was submitted") % {"no": ticket.ticket_no}, summary()

    context = _ticket_context(ticket, node=node)
    decisions = _request_decisions(
        ticket=ticket, node=node, approvers=approvers, context=context, summary=summary
    )
    for user in _informed(ticket=ticket, exclude=approvers):
        _send_mail(user=user, words=words, template="notices/ticket_submitted", context=context)
    key = f"{Event.TICKET_SUBMITTED}:{ticket.pk}:{node.pk}"
    _post_cards(
        ticket=ticket,
        key=key,
        event=Event.TICKET_SUBMITTED,
        context=context,
        recipients=[],
        words=words,
        decisions=decisions,
    )
    queue_webhook(
        ticket=ticket,
        event=Event.TICKET_SUBMITTED,
        context=context,
        summary=summary(),
        node=node.name,
        approvers=[user.get_username() for user in approvers],
    )


def send_ticket_decided(*, ticket_id: int, approval_id: int) -> None:
    ticket = _load_ticket(ticket_id)
    approval = next(a for a in ticket.approvals.all() if a.pk == approval_id)
    approver = approval.approver.get_username()
    next_node = None
    if approval.decision == Decision.REJECT:
        event = Event.TICKET_REJECTED
    elif ticket.state == Ticket.State.IN_APPROVAL and ticket.current_node_id == approval.node_id:
        # An owner team's approval at an APPLICATION_OWNER node that other teams still await:
        # their requests went out on submission.
        event = Event.NODE_APPROVED
    else:
        next_node = (
            ticket.work_order.nodes.select_related("group")
            .filter(position__gt=approval.node.position)
            .exclude(node_type=ApprovalNode.Type.CC_TO)
            .first()
        )
        event = Event.NODE_APPROVED if next_node else Event.TICKET_APPROVED

    def words() -> tuple[str, str]:
        names = {"approver": approver, "no": ticket.ticket_no, "node": approval.node.display_name}
        if event == Event.TICKET_REJECTED:
            return _("Ticket %(no)s was rejected by %(approver)s") % names, _(
                "%(approver)s rejected ticket %(no)s at step %(node)s: %(reason)s"
            ) % {**names, "reason": approval.comment}
        if event == Event.TICKET_APPROVED:
            return _("Ticket %(no)s was approved by %(approver)s") % names, _(
                "%(approver)s approved ticket %(no)s (step %(node)s). You may redeploy each "
                "application on it once before its authorization expires."
            ) % names
        subject = _("Step %(node)s of ticket %(no)s was approved by %(approver)s") % names
        if next_node is None:
            return subject, _(
                "%(approver)s approved step %(node)s of ticket %(no)s for their team; it still "
                "waits for the other owner teams."
            ) % names
        return subject, _(
            "%(approver)s approved step %(node)s of ticket %(no)s; it now waits for a "
            "decision on step %(next)s."
        ) % {**names, "next": next_node.display_name}

    context = _ticket_context(ticket, node=approval.node, approval=approval)
    _send_mail(
        user=ticket.applicant, words=words, template="notices/ticket_decided", context=context
    )
    approvers, decisions = [], []
    if next_node is not None:
        approvers = _waiting_approvers(ticket=ticket, node=next_node)
        next_context = _ticket_context(ticket, node=next_node)
        decisions = _request_decisions(
            ticket=ticket,
            node=next_node,
            approvers=approvers,
            context=next_context,
            summary=lambda: words()[1],
        )
    key = f"ticket.decided:{approval.pk}"
    _post_cards(
        ticket=ticket,
        key=key,
        event=event,
        context=context,
        recipients=[ticket.applicant],
        words=words,
        decisions=decisions,
    )
    queue_webhook(
        ticket=ticket,
        event=event,
        context=context,
        summary=words()[1],
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

    def words() -> tuple[str, str]:
        names = {"actor": actor_username, "application": entry.name, "no": ticket.ticket_no}
        return _("Your authorization to redeploy %(application)s was revoked") % names, _(
            "%(actor)s revoked your authorization to redeploy %(application)s (ticket %(no)s): "
            "%(reason)s"
        ) % {**names, "reason": reason}

    _tell_applicant(
        ticket=ticket,
        event=Event.AUTHORIZATION_REVOKED,
        key=f"{Event.AUTHORIZATION_REVOKED}:{entry.pk}",
        words=words,
        template="notices/authorization_revoked",
        context=_ticket_context(ticket, entry=entry, reason=reason),
        application=entry.name,
        actor=actor_username,
        revokeReason=reason,
    )


def send_authorization_expiring(*, entry_id: int, expires_at: str) -> None:
    entry = TicketEntry.objects.get(pk=entry_id)
    if entry.state != TicketEntry.State.AUTHORIZED:
        logger.info("Authorization of %s was used or settled; no expiry notice", entry)
        return
    ticket = _load_ticket(entry.ticket_id)
    expires = datetime.fromisoformat(expires_at)

    def words() -> tuple[str, str]:
        names = {
            "application": entry.name,
            "no": ticket.ticket_no,
            "time": date_format(timezone.localtime(expires), "DATETIME_FORMAT"),
        }
        return _("Your authorization for %(application)s expires soon") % names, _(
            "Your authorization for %(application)s (ticket %(no)s) expires at %(time)s. "
            "Use it before then, or file a new ticket."
        ) % names

    _tell_applicant(
        ticket=ticket,
        event=Event.AUTHORIZATION_EXPIRING,
        key=f"{Event.AUTHORIZATION_EXPIRING}:{entry.pk}:{int(expires.timestamp())}",
        words=words,
        template="notices/authorization_expiring",
        context=_ticket_context(ticket, entry=entry, expires=expires),
        application=entry.name,
        expires=expires_at,
    )


def _tell_applicant(
    *, ticket: Ticket, event: str, key: str, words: Callable, template: str, context: dict, **fields
) -> None:
    """A notice for the applicant alone: by mail, in the chat channels and to the webhook."""
    _send_mail(user=ticket.applicant, words=words, template=template, context=context)
    _post_cards(
        ticket=ticket,
        key=key,
        event=event,
        context=context,
        recipients=[ticket.applicant],
        words=words,
    )
    queue_webhook(ticket=ticket, event=event, context=context, summary=words()[1], **fields)


def send_operation_finished(*, ticket_id: int, report: dict) -> None:
    ticket = _load_ticket(ticket_id)
    context = _ticket_context(
        ticket,
        records_title=report["title"],
        record_headers=report["headers"],
        record_rows=report["rows"],
        records_markdown=markdown_table(report["headers"], report["rows"]),
    )
    words = _report_words(report["words"])
    recipients = {ticket.applicant_id: ticket.applicant}
    for user in _approvers_of(ticket):
        recipients.setdefault(user.pk, user)
    for user in recipients.values():
        _send_mail(user=user, words=words, template="notices/operation_finished", context=context)
    key = f"{report['event']}:{report['fields'].get('operationId', '')}"
    records = (report["title"], report["rows"])
    _post_cards(
        ticket=ticket,
        key=key,
        event=report["event"],
        context=context,
        recipients=list(recipients.values()),
        words=words,
        records=records,
    )
    queue_webhook(
        ticket=ticket,
        event=report["event"],
        context=context,
        summary=words()[1],
        **report["fields"],
    )


def _report_words(report_words: dict) -> Callable[[], tuple[str, str]]:
    """A kind's report words (untranslated msgids and their names), in the reader's language."""
    names = report_words["names"]
    return lambda: (_(report_words["subject"]) % names, _(report_words["summary"]) % names)


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


def _ticket_context(ticket: Ticket, **extra) -> dict:
    headers, rows = entries_table(ticket=ticket)
    return {
        "ticket": ticket,
        "ticket_url": absolute_url(reverse("tickets:detail", args=[ticket.ticket_no])),
        "entry_headers": headers,
        "entry_rows": rows,
        "entries_markdown": entries_markdown(ticket=ticket),
        **extra,
    }


def _request_decisions(
    *, ticket: Ticket, node: ApprovalNode, approvers: list, context: dict, summary: Callable
) -> list[CardDecision]:
    """One approval request per approver, with approve/reject links signed for that approver;
    the approvers' links for the chat cards (a pair of their own)."""

    def words() -> tuple[str, str]:
        subject = _("Ticket %(no)s waits for your decision (%(node)s)") % {
            "no": ticket.ticket_no,
            "node": node.display_name,
        }
        return subject, summary()

    for user in approvers:
        links = decision_links(ticket=ticket, node=node, user=user)
        _send_mail(
            user=user,
            words=words,
            template="notices/approval_request",
            context={**context, **links},
        )
    return [
        CardDecision(user=user, **decision_links(ticket=ticket, node=node, user=user))
        for user in approvers
    ]


def _send_mail(*, user, words, template: str, context: dict) -> None:
    """One email to one user, as text and HTML, in their language (else the email channel's);
    a failure is logged and the others still go."""
    work_order = context["ticket"].work_order
    if not channels.sends_email(work_order=work_order):
        return
    language = card_language(users=[user], fallback=channels.email_language(work_order=work_order))
    with translation.override(language):
        subject, summary = words()
        if not user.email:
            logger.info("No email address for %s; notice %r not sent", user, subject)
            return
        context = {**context, "recipient": user, "summary": summary}
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


def _post_cards(
    *,
    ticket: Ticket,
    key: str,
    event: str,
    context: dict,
    recipients: list,
    words: Callable,
    decisions: list[CardDecision] = (),
    records: tuple[str, list] | None = None,
) -> None:
    channels.post_cards(
        notice=CardNotice(
            key=key,
            event=event,
            ticket=ticket,
            ticket_url=context["ticket_url"],
            recipients=recipients,
            words=words,
            decisions=list(decisions),
            records=records,
        )
    )
