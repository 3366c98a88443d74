"""The requester's pages. Thin: they read through selectors and write through services."""

from http import HTTPStatus

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRefresh
from django_tables2 import RequestConfig

from cratos.audit.selectors import audit_events_for_ticket
from cratos.audit.tables import AuditTrailTable
from cratos.exceptions import DomainError, ValidationFailed
from cratos.security import client_ip

from . import selectors, services
from .forms import AddEntriesForm, CancelForm, SubmitForm, TicketCreateForm
from .models import Ticket, WorkOrder
from .notifications import eligible_approvers
from .providers import provider_for
from .rules import applicant_refusal, entries_refusal, transition_refusal
from .tables import TicketTable

DEFAULT_WORK_ORDER_KEY = "APPLICATION_REDEPLOY"
TICKETS_PER_PAGE = 20
# How often a ticket page waiting for approval asks whether it was decided.
LIVE_SECONDS = 5


def format_time_left(seconds: int) -> str:
    """Time left as "1h 52m", "4m 10s" or "9s"; static/js/countdown.js formats it the same."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _visible_ticket(request, ticket_no: str) -> Ticket:
    return selectors.visible_ticket(ticket_no=ticket_no, user=request.user)


@login_required
def home(request):
    """'/' is each role's start page: the one signing in lands on (cratos.identity's landing)."""
    return redirect("landing")


@login_required
def ticket_list(request):
    table = TicketTable(selectors.ticket_list_of(applicant=request.user))
    RequestConfig(request, paginate={"per_page": TICKETS_PER_PAGE}).configure(table)
    return render(request, "tickets/ticket_list.html", {"table": table})


@login_required
def ticket_create(request):
    try:
        # ?work_order=KEY picks the kind of ticket (links from other pages name theirs).
        key = request.POST.get("work_order") or request.GET.get("work_order")
        work_order = selectors.work_order_by_key(key=key or DEFAULT_WORK_ORDER_KEY)
    except WorkOrder.DoesNotExist:
        raise Http404 from None
    form = TicketCreateForm(
        request.POST if request.method == "POST" else None,
        # Links from an application's page preselect it (?application=<name>).
        initial={"applications": request.GET.getlist("application")},
        work_order=work_order,
        applicant=request.user,
    )
    if request.method == "POST" and form.is_valid():
        submit = request.POST.get("action") == TicketCreateForm.SAVE_AND_SUBMIT
        try:
            # Create and submit stand or fall together: a refused submit leaves no stray draft.
            with transaction.atomic():
                ticket = services.create_ticket(
                    applicant=request.user,
                    work_order=work_order,
                    application_names=form.application_names(),
                    reason=form.cleaned_data["reason"],
                    request_ip=client_ip(request),
                )
                if submit:
                    services.submit_ticket(
                        ticket=ticket,
                        actor=request.user,
                        approvers=form.chosen_approvers(),
                        request_ip=client_ip(request),
                    )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            if submit:
                text = _("Ticket %(no)s was submitted for approval.")
            else:
                text = _("Ticket %(no)s was saved as a draft.")
            messages.success(request, text % {"no": ticket.ticket_no})
            twins = selectors.identical_open_tickets(ticket=ticket)
            if twins:
                warning = _(
                    "Ticket %(others)s, still open, names the same applications; cancel the "
                    "one you do not need."
                )
                messages.warning(request, warning % {"others": ", ".join(twins)})
            return redirect("tickets:detail", ticket_no=ticket.ticket_no)
    context = {
        "form": form,
        "work_order": work_order,
        "authorization_ttl": format_time_left(work_order.authorization_ttl_seconds),
        "max_drafts": services.MAX_UNSUBMITTED_TICKETS,
    }
    return render(request, "tickets/ticket_form.html", context)


def _live_signature(ticket: Ticket) -> str:
    """What changes while a ticket waits for approval: its state, its step, its decisions."""
    return f"{ticket.state}:{ticket.current_node_id}:{len(ticket.approvals.all())}"


@login_required
@vary_on_headers("HX-Request")
def ticket_detail(request, ticket_no: str):
    ticket = _visible_ticket(request, ticket_no)
    if request.htmx:
        # The page's poll while the ticket waits: nothing new, or reload to show what is.
        if request.GET.get("seen") == _live_signature(ticket):
            return HttpResponse(status=HTTPStatus.NO_CONTENT)
        return HttpResponseClientRefresh()
    headers, rows = selectors.entries_table(ticket=ticket)
    entries = list(ticket.entries.all())
    user = request.user
    is_applicant = applicant_refusal(ticket=ticket, user=user, action="edit") is None
    can_submit = (
        is_applicant
        and transition_refusal(ticket=ticket, to_state=Ticket.State.IN_APPROVAL) is None
    )
    can_cancel = (
        is_applicant and transition_refusal(ticket=ticket, to_state=Ticket.State.CLOSED) is None
    )
    can_edit_entries = entries_refusal(ticket=ticket, user=user) is None
    live = [
        item
        for item in (selectors.live_authorizations(user=user) if is_applicant else [])
        if item.entry.ticket_id == ticket.pk
    ]
    context = {
        "authorizations": _authorization_rows(request, live),
        "live_signature": _live_signature(ticket)
        if ticket.state == Ticket.State.IN_APPROVAL
        else "",
        "live_seconds": LIVE_SECONDS,
        # Approved, yet nothing left to use and nothing running: the next step is a new ticket.
        "approvals_spent": is_applicant
        and ticket.state == Ticket.State.APPROVED
        and not live
        and all(entry.state != entry.State.IN_USE for entry in entries),
        "ticket": ticket,
        "entry_headers": headers,
        "entry_rows": list(zip(entries, rows, strict=True)),
        "approvals": ticket.approvals.all(),
        "state_changes": ticket.state_changes.all(),
        "deciders": eligible_approvers(ticket=ticket),
        "records_html": provider_for(ticket.work_order).records_html(ticket=ticket),
        "revocable_entry_ids": selectors.revocable_entry_ids(ticket=ticket, user=user),
        "audit_trail": AuditTrailTable(audit_events_for_ticket(ticket=ticket), exclude=("ticket",)),
        "is_applicant": is_applicant,
        "can_edit_entries": can_edit_entries,
        "submit_form": SubmitForm(work_order=ticket.work_order, applicant=user)
        if can_submit
        else None,
        "cancel_form": CancelForm() if can_cancel else None,
        "add_form": AddEntriesForm(
            ticket=ticket, applicant=user, exclude_names=[entry.name for entry in entries]
        )
        if can_edit_entries
        else None,
    }
    return render(request, "tickets/ticket_detail.html", context)


def _valid(form):
    """The form, if valid; else ValidationFailed with its errors (the action's message)."""
    if not form.is_valid():
        raise ValidationFailed(
            " ".join(str(error) for errors in form.errors.values() for error in errors)
        )
    return form


def _ticket_action(action):
    """A POST-only, login-required action on a visible ticket; refusals become messages."""

    @login_required
    @require_POST
    def view(request, ticket_no: str):
        ticket = _visible_ticket(request, ticket_no)
        try:
            text = action(request, ticket)
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, text)
        return redirect("tickets:detail", ticket_no=ticket.ticket_no)

    view.__name__ = action.__name__
    view.__doc__ = action.__doc__
    return view


@_ticket_action
def ticket_submit(request, ticket: Ticket) -> str:
    form = _valid(SubmitForm(request.POST, work_order=ticket.work_order, applicant=request.user))
    services.submit_ticket(
        ticket=ticket,
        actor=request.user,
        approvers=form.chosen_approvers(),
        request_ip=client_ip(request),
    )
    return _("Ticket %(no)s was submitted for approval.") % {"no": ticket.ticket_no}


@_ticket_action
def ticket_cancel(request, ticket: Ticket) -> str:
    form = _valid(CancelForm(request.POST))
    services.cancel_ticket(
        ticket=ticket,
        actor=request.user,
        reason=form.cleaned_data["reason"],
        request_ip=client_ip(request),
    )
    return _("Ticket %(no)s was cancelled.") % {"no": ticket.ticket_no}


@_ticket_action
def entries_add(request, ticket: Ticket) -> str:
    form = AddEntriesForm(request.POST, ticket=ticket, applicant=request.user)
    names = _valid(form).application_names()
    services.add_entries(
        ticket=ticket, actor=request.user, application_names=names, request_ip=client_ip(request)
    )
    return _("Added to the ticket: %(names)s.") % {"names": ", ".join(names)}


@_ticket_action
def entry_remove(request, ticket: Ticket) -> str:
    name = request.POST.get("entry", "")
    services.remove_entry(
        ticket=ticket, actor=request.user, entry_name=name, request_ip=client_ip(request)
    )
    return _("Removed from the ticket: %(name)s.") % {"name": name}


def _authorization_rows(request, live) -> list[dict]:
    """Live authorizations as the pages offer them: each with its time left and its action,
    or, for a user whose role may not use it, the refusal instead of a button that can only
    fail."""
    rows = []
    for entry, grant in live:
        provider = provider_for(entry.ticket.work_order)
        label, url = provider.action(application_name=entry.name)
        seconds_left = grant.seconds_left()
        rows.append(
            {
                "entry": entry,
                "grant": grant,
                "action_label": label,
                "action_url": url,
                "action_refusal": provider.action_refusal(user=request.user),
                "seconds_left": seconds_left,
                "time_left": format_time_left(seconds_left),
            }
        )
    return rows


@login_required
def authorizations(request):
    rows = _authorization_rows(request, selectors.live_authorizations(user=request.user))
    return render(request, "tickets/authorizations.html", {"authorizations": rows})
