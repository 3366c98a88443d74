"""The approvers' pages: the queue of tickets awaiting my vote, and revocation.

Thin: reads through selectors, writes through services, one service call per ticket (each
approval may mint authorizations in Redis, which a larger transaction could not roll back).
"""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from cratos.exceptions import DomainError, ValidationFailed
from cratos.security import client_ip

from . import revocations, selectors
from .context_processors import waiting_badge
from .forms import RevokeForm, VoteForm
from .rules import revoke_refusal
from .views import format_time_left


def _card_words() -> dict[str, str]:
    """The labels of tickets/approval_ticket.html, worded once for all the cards of a page: a
    translation per card and label was a fifth of the queue's rendering."""
    return {
        "applicant": _("Applicant"),
        "work_order": _("Work order"),
        "your_step": _("Your step"),
        "submitted": _("Submitted"),
        "reason": _("Reason"),
        "applications": _("Applications"),
    }


def _errors(form: forms.Form, *fields: str) -> str:
    return " ".join(str(error) for field in fields for error in form.errors.get(field, []))


@login_required
def approvals(request):
    queue = selectors.approval_queue(user=request.user)
    # The menu's badge is this count: counted once, not again by the context processor.
    return render(
        request,
        "tickets/approvals.html",
        {
            "queue": queue,
            "form": VoteForm(),
            "approvals_waiting": waiting_badge(queue.waiting),
            "words": _card_words(),
        },
    )


@login_required
@require_POST
def approval_confirm(request):
    """Spell out what the votes will authorize; once confirmed, hand each to its service."""
    form = VoteForm(request.POST)
    form.is_valid()
    if "decision" in form.errors or "vote" in form.errors:
        messages.error(request, _errors(form, "decision", "vote"))
        return redirect("tickets:approvals")
    items, refusals = selectors.tickets_for_decision(
        user=request.user, votes=form.cleaned_data["vote"]
    )
    for refusal in refusals:
        messages.error(request, refusal.message)
    if not items:
        return redirect("tickets:approvals")
    if request.POST.get("confirmed") == "yes" and form.is_valid():
        for item in items:
            try:
                text = form.decide(item=item, approver=request.user, request_ip=client_ip(request))
            except DomainError as refusal:
                messages.error(request, f"{item.ticket.ticket_no}: {refusal.message}")
            else:
                messages.success(request, text)
        return redirect("tickets:approvals")
    context = {
        "form": form,
        "items": [
            (item, format_time_left(item.ticket.work_order.authorization_ttl_seconds))
            for item in items
        ],
        "rejecting": form.rejecting,
        "words": _card_words(),
    }
    return render(request, "tickets/approval_confirm.html", context)


@login_required
def revoke(request, ticket_no: str, entry_id: int):
    """Ask for the reason, then revoke the entry's live authorization."""
    entry = selectors.entry_for_revocation(
        ticket_no=ticket_no, entry_id=entry_id, user=request.user
    )
    refusal = revoke_refusal(entry=entry, user=request.user)
    if refusal:
        raise refusal
    form = RevokeForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound and form.is_valid():
        try:
            revocations.revoke_authorization(
                entry=entry,
                actor=request.user,
                reason=form.cleaned_data["reason"],
                request_ip=client_ip(request),
            )
        except DomainError as exc:
            form.add_error("reason" if isinstance(exc, ValidationFailed) else None, exc.message)
            status = exc.status_code
        else:
            messages.success(
                request,
                _("The authorization of %(user)s for %(application)s was revoked.")
                % {"user": entry.ticket.applicant.get_username(), "application": entry.name},
            )
            return redirect("tickets:detail", ticket_no=entry.ticket.ticket_no)
    context = {
        "form": form,
        "entry": entry,
        "ticket": entry.ticket,
        "targets_html": selectors.targets_html(entries_of=[(entry.ticket, [entry])])[
            entry.ticket_id
        ],
        "time_left": format_time_left(
            int((entry.authorization_expires_at - timezone.now()).total_seconds())
        )
        if entry.authorization_expires_at
        else None,
    }
    return render(request, "tickets/revoke_confirm.html", context, status=status)
