"""The expiry sweeps: stale tickets close, unused authorizations expire, races stay clean."""

import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from cratos.audit.models import AuditEvent
from cratos.audit.recorder import Action
from redeploy.models import RedeployOperation
from tests.factories import (
    RedeployOperationFactory,
    TicketFactory,
    UserFactory,
)
from tickets import settlements, sweeps, tasks
from tickets.models import Ticket, TicketEntry

pytestmark = pytest.mark.django_db

LOCK_WAIT_SECONDS = 10


@pytest.fixture(autouse=True)
def max_age_setting(settings):
    settings.TICKET_APPROVAL_MAX_AGE_DAYS = 7
    return settings


def submitted_ago(ticket: Ticket, age: timedelta) -> Ticket:
    Ticket.objects.filter(pk=ticket.pk).update(submitted_at=timezone.now() - age)
    ticket.refresh_from_db()
    return ticket


def expires_ago(ticket: Ticket, age: timedelta, *, name: str | None = None) -> None:
    entries = TicketEntry.objects.filter(ticket=ticket)
    if name:
        entries = entries.filter(name=name)
    entries.update(authorization_expires_at=timezone.now() - age)


def states(ticket: Ticket) -> dict[str, str]:
    return dict(TicketEntry.objects.filter(ticket=ticket).values_list("name", "state"))


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


class HeldTicketLock:
    """Another connection holding a ticket's row lock (a vote, a redeploy settling...) until
    released; what it does under the lock runs first and commits on release."""

    def __init__(self, ticket: Ticket, under_lock=None):
        self.ticket, self.under_lock = ticket, under_lock
        self.locked, self.release = threading.Event(), threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        try:
            with transaction.atomic():
                Ticket.objects.select_for_update().get(pk=self.ticket.pk)
                if self.under_lock:
                    self.under_lock()
                self.locked.set()
                self.release.wait(LOCK_WAIT_SECONDS)
        except Exception as exc:  # surfaced by __exit__
            self.error = exc
            self.locked.set()
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        assert self.locked.wait(LOCK_WAIT_SECONDS)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(LOCK_WAIT_SECONDS)
        if self.error:
            raise self.error


# --- stale tickets -----------------------------------------------------------------------------


def test_tickets_in_approval_past_the_max_age_close_as_expired(alice, bob, web, api_app):
    stale = submitted_ago(
        TicketFactory(applicant=alice, applications=[web, api_app], submitted=True),
        timedelta(days=7, minutes=1),
    )
    fresh = submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=6)
    )
    draft = TicketFactory(applicant=alice, applications=[web])
    Ticket.objects.filter(pk=draft.pk).update(created_at=timezone.now() - timedelta(days=30))
    approved = submitted_ago(
        TicketFactory(applicant=alice, applications=[api_app], approved_by=bob),
        timedelta(days=30),
    )

    assert sweeps.expire_stale_tickets() == 1

    stale.refresh_from_db()
    assert stale.state == Ticket.State.CLOSED
    assert stale.current_node is None
    change = stale.state_changes.last()
    assert (change.from_state, change.to_state, change.note, change.actor) == (
        Ticket.State.IN_APPROVAL,
        Ticket.State.CLOSED,
        "expired",
        None,
    )
    assert set(states(stale).values()) == {TicketEntry.State.CANCELLED}
    (event,) = events(Action.TICKET_EXPIRED)
    assert event.ticket_no == stale.ticket_no
    assert "closed as expired" in event.message
    for untouched, state in (
        (fresh, Ticket.State.IN_APPROVAL),
        (draft, Ticket.State.NEW),
        (approved, Ticket.State.APPROVED),
    ):
        untouched.refresh_from_db()
        assert untouched.state == state


def test_the_stale_sweep_is_idempotent(alice, web):
    submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=8)
    )
    assert sweeps.expire_stale_tickets() == 1
    assert sweeps.expire_stale_tickets() == 0
    assert len(events(Action.TICKET_EXPIRED)) == 1


def test_the_max_age_comes_from_the_argument_or_the_setting(alice, web, max_age_setting):
    ticket = submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=3)
    )
    assert sweeps.expire_stale_tickets() == 0
    assert sweeps.expire_stale_tickets(now=timezone.now() + timedelta(days=5)) == 1
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.CLOSED

    other = submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(hours=3)
    )
    assert sweeps.expire_stale_tickets(max_age=timedelta(hours=4)) == 0
    assert sweeps.expire_stale_tickets(max_age=timedelta(hours=2)) == 1
    max_age_setting.TICKET_APPROVAL_MAX_AGE_DAYS = 1
    third = submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=2)
    )
    assert sweeps.expire_stale_tickets() == 1
    for closed in (other, third):
        closed.refresh_from_db()
        assert closed.state == Ticket.State.CLOSED


def test_the_task_runs_the_stale_sweep(alice, web):
    submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=8)
    )
    assert tasks.expire_stale_tickets() == 1
    assert tasks.expire_stale_tickets.apply().get() == 0


@pytest.mark.django_db(transaction=True)
def test_a_ticket_locked_by_someone_else_is_left_for_the_next_sweep(alice, web):
    ticket = submitted_ago(
        TicketFactory(applicant=alice, applications=[web], submitted=True), timedelta(days=8)
    )
    with HeldTicketLock(ticket):
        assert sweeps.expire_stale_tickets() == 0  # skipped, not blocked, not crashed
    assert sweeps.expire_stale_tickets() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_stale_sweeps_close_each_ticket_once(alice, web):
    tickets = [
        submitted_ago(
            TicketFactory(applicant=UserFactory(), applications=[web], submitted=True),
            timedelta(days=8),
        )
        for _ in range(12)
    ]
    counts, errors, start = [], [], threading.Barrier(4)

    def sweep():
        try:
            start.wait(LOCK_WAIT_SECONDS)
            counts.append(sweeps.expire_stale_tickets())
        except Exception as exc:
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sum(counts) == len(tickets)
    assert sorted(e.ticket_no for e in events(Action.TICKET_EXPIRED)) == sorted(
        t.ticket_no for t in tickets
    )
    for ticket in tickets:
        assert ticket.state_changes.filter(to_state=Ticket.State.CLOSED).count() == 1


# --- unused authorizations ---------------------------------------------------------------------


def test_unused_authorizations_expire_and_the_ticket_completes(alice, bob, web, api_app):
    ticket = TicketFactory(applicant=alice, applications=[web, api_app], approved_by=bob)
    expires_ago(ticket, timedelta(minutes=5))

    assert sweeps.expire_unused_authorizations() == 2

    assert states(ticket) == {"web": TicketEntry.State.EXPIRED, "api": TicketEntry.State.EXPIRED}
    assert sorted(e.application_name for e in events(Action.AUTHORIZATION_EXPIRED)) == [
        "api",
        "web",
    ]
    assert all(e.ticket_no == ticket.ticket_no for e in events(Action.AUTHORIZATION_EXPIRED))
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.COMPLETED
    assert ticket.success is False
    assert ticket.completed_at is not None
    assert len(events(Action.TICKET_COMPLETED)) == 1


def test_the_authorization_sweep_is_idempotent_and_leaves_live_ones(alice, bob, web, api_app):
    ticket = TicketFactory(applicant=alice, applications=[web, api_app], approved_by=bob)
    fresh = TicketFactory(
        applicant=UserFactory(username="erin"), applications=[web], approved_by=bob
    )
    expires_ago(ticket, timedelta(minutes=5), name="web")

    assert sweeps.expire_unused_authorizations() == 1
    assert sweeps.expire_unused_authorizations() == 0

    assert states(ticket) == {"web": TicketEntry.State.EXPIRED, "api": TicketEntry.State.AUTHORIZED}
    assert states(fresh) == {"web": TicketEntry.State.AUTHORIZED}
    ticket.refresh_from_db()
    assert ticket.state == Ticket.State.APPROVED  # api may still be redeployed
    assert len(events(Action.AUTHORIZATION_EXPIRED)) == 1


def test_an_authorization_just_run_out_gets_a_short_grace(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    expires_ago(ticket, timedelta(seconds=10))
    assert sweeps.expire_unused_authorizations() == 0
    later = timezone.now() + sweeps.AUTHORIZATION_EXPIRY_GRACE
    assert sweeps.expire_unused_authorizations(now=later) == 1


def test_used_and_expired_entries_complete_the_ticket_unsuccessfully(alice, bob, web, api_app):
    ticket = TicketFactory(applicant=alice, applications=[web, api_app], approved_by=bob)
    ticket.entries.filter(name="web").update(state=TicketEntry.State.IN_USE)
    settlements.settle_entry(
        entry=TicketEntry.objects.get(ticket=ticket, name="web"),
        state=TicketEntry.State.USED,
        actor=alice,
        success=True,
    )
    expires_ago(ticket, timedelta(minutes=5))
    assert sweeps.expire_unused_authorizations() == 1
    ticket.refresh_from_db()
    assert states(ticket) == {"web": TicketEntry.State.USED, "api": TicketEntry.State.EXPIRED}
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, False)


def test_an_authorization_in_use_by_an_operation_is_left_to_it(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    # An operation took the grant (tickets.grant_services.taken_grants).
    ticket.entries.update(state=TicketEntry.State.IN_USE)
    expires_ago(ticket, timedelta(minutes=30))

    assert sweeps.expire_unused_authorizations() == 0
    assert states(ticket) == {"web": TicketEntry.State.IN_USE}

    # The operation ends and settles the entry USED, as redeploy.operations does.
    settlements.settle_entry(
        entry=TicketEntry.objects.get(ticket=ticket),
        state=TicketEntry.State.USED,
        actor=alice,
        success=True,
    )
    assert sweeps.expire_unused_authorizations() == 0
    ticket.refresh_from_db()
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, True)
    assert events(Action.AUTHORIZATION_EXPIRED) == []


def test_finished_redeploys_of_other_tickets_do_not_hold_it_back(alice, bob, web):
    older = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    RedeployOperationFactory(
        requested_by=alice,
        application_name="web",
        ticket=older,
        state=RedeployOperation.State.FAILED,
    )
    expires_ago(older, timedelta(minutes=5))
    assert sweeps.expire_unused_authorizations() == 1


def test_the_task_runs_the_authorization_sweep(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    expires_ago(ticket, timedelta(minutes=5))
    assert tasks.expire_unused_authorizations.apply().get() == 1
    assert tasks.expire_unused_authorizations() == 0


@pytest.mark.django_db(transaction=True)
def test_a_redeploy_settling_the_entry_meanwhile_wins_cleanly(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    expires_ago(ticket, timedelta(minutes=5))
    ticket.entries.update(state=TicketEntry.State.IN_USE)

    def settle_used():
        settlements.settle_entry(
            entry=TicketEntry.objects.get(ticket=ticket),
            state=TicketEntry.State.USED,
            actor=alice,
            success=True,
        )

    # The redeploy holds the ticket while it settles: the sweep skips it, without an error.
    with HeldTicketLock(ticket, under_lock=settle_used):
        assert sweeps.expire_unused_authorizations() == 0
    # Committed USED: nothing left to expire.
    assert sweeps.expire_unused_authorizations() == 0
    ticket.refresh_from_db()
    assert states(ticket) == {"web": TicketEntry.State.USED}
    assert (ticket.state, ticket.success) == (Ticket.State.COMPLETED, True)
    assert events(Action.AUTHORIZATION_EXPIRED) == []
