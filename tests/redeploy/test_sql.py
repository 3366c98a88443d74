"""redeploy.sql: the redeploy's first statements, written out, must write what the ORM would."""

import pytest
from django.db import transaction

from redeploy import sql
from redeploy.audit import Action, build_event, record_events
from redeploy.models import AuditEvent, RedeployOperation, RedeployTarget
from tests.factories import ApplicationFactory, BindingFactory, ClusterFactory

pytestmark = pytest.mark.django_db


def operation(user, **fields) -> RedeployOperation:
    return RedeployOperation.objects.create(
        requested_by=user,
        application_name=fields.pop("application_name", "web"),
        namespace=fields.pop("namespace", "shop"),
        deployment_name=fields.pop("deployment_name", "web"),
        **fields,
    )


def test_insert_gives_ids_and_fills_auto_now_add_like_bulk_create(alice):
    events = [
        build_event(action=Action.REDEPLOY_REQUESTED, actor=alice, message=f"m{n}")
        for n in range(3)
    ]
    with transaction.atomic():
        record_events(*events)

    stored = AuditEvent.objects.filter(pk__in=[event.pk for event in events]).order_by("pk")
    assert [event.message for event in stored] == ["m0", "m1", "m2"]
    assert all(event.created_at is not None for event in stored)
    assert [event.pk for event in stored] == sorted(event.pk for event in events)
    assert not events[0]._state.adding


def test_many_rows_go_to_postgresql_as_one_array_a_column_in_order(alice):
    events = [
        build_event(action=Action.REDEPLOY_STARTED, actor=alice, message=f"m{n}") for n in range(5)
    ]

    (statement,) = sql.insert(events)
    with transaction.atomic():
        sql.run([statement])

    fields = [f for f in AuditEvent._meta.concrete_fields if not f.primary_key]
    assert len(statement.params) == len(fields)
    stored = AuditEvent.objects.in_bulk([event.pk for event in events])
    assert [stored[event.pk].message for event in events] == [f"m{n}" for n in range(5)]
    assert [event.pk for event in events] == sorted(event.pk for event in events)


def test_run_sends_statements_in_order_and_hands_each_its_rows(alice):
    first = operation(alice)
    target = RedeployTarget(
        operation=first, cluster_name="c", namespace="shop", deployment_name="web"
    )
    with transaction.atomic():
        sql.run(
            [
                sql.update(
                    RedeployOperation, pks=[first.pk], values={"message": "x", "ticket_id": None}
                ),
                *sql.insert([target]),
                sql.update(RedeployOperation, pks=[first.pk], values={"message": "y"}),
            ]
        )

    first.refresh_from_db()
    assert first.message == "y"
    assert RedeployTarget.objects.get(pk=target.pk).deployment_name == "web"


def test_only_queued_operations_are_locked_and_their_requester_comes_along(alice):
    queued = operation(alice)
    operation(alice, state=RedeployOperation.State.RUNNING)

    with transaction.atomic():
        ((locked, bindings),) = sql.lock_queued_operations([str(queued.pk)])

    assert locked.pk == queued.pk
    assert locked.requested_by.pk == alice.pk
    assert locked.requested_by.get_username() == "alice"
    assert (locked.application_name, locked.namespace, locked.deployment_name) == (
        "web",
        "shop",
        "web",
    )
    assert bindings == []


def bindings_of(*operations: RedeployOperation) -> dict:
    with transaction.atomic():
        locked = sql.lock_queued_operations([operation.pk for operation in operations])
    return {operation.pk: found for operation, found in locked}


def test_bindings_of_an_operation_follow_its_cluster_or_every_cluster(alice):
    web = ApplicationFactory(name="web")
    east, west = ClusterFactory(name="east"), ClusterFactory(name="west")
    for cluster in (west, east):
        BindingFactory(application=web, cluster=cluster, namespace="shop", deployment_name="web")
    BindingFactory(application=web, cluster=east, namespace="other", deployment_name="web")
    everywhere = operation(alice)
    only_west = operation(alice, cluster_name="west")
    unbound = operation(alice, deployment_name="gone")

    found = bindings_of(everywhere, only_west, unbound)

    assert [b.cluster.name for b in found[everywhere.pk]] == ["east", "west"]
    assert [b.cluster.name for b in found[only_west.pk]] == ["west"]
    assert found[unbound.pk] == []


def test_a_cluster_saved_again_is_read_again(alice):
    web = ApplicationFactory(name="web")
    cluster = ClusterFactory(name="east", server="https://old.example:6443")
    BindingFactory(application=web, cluster=cluster, namespace="shop", deployment_name="web")
    first = operation(alice)
    assert bindings_of(first)[first.pk][0].cluster.server == "https://old.example:6443"

    cluster.server = "https://new.example:6443"
    cluster.save()

    (binding,) = bindings_of(first)[first.pk]
    assert binding.cluster.server == "https://new.example:6443"


def test_a_claim_takes_only_pending_unclaimed_targets(alice):
    first = operation(alice)
    free, claimed, failed = (
        RedeployTarget.objects.create(
            operation=first, cluster_name=name, namespace="shop", deployment_name="web", **fields
        )
        for name, fields in (
            ("a", {}),
            ("b", {"restarted_at": "2030-01-01T00:00:00Z"}),
            ("c", {"state": RedeployTarget.State.FAILED}),
        )
    )

    won = sql.claim_restarts([free.pk, claimed.pk, failed.pk], restarted_at="2031-01-01T00:00:00Z")

    assert won == {free.pk}
    assert RedeployTarget.objects.get(pk=claimed.pk).restarted_at == "2030-01-01T00:00:00Z"
    assert RedeployTarget.objects.get(pk=free.pk).restarted_at == "2031-01-01T00:00:00Z"
