"""Statements written out in SQL where Django's compiling them costs more than the database.

A queryset is compiled each time it runs: ~1 ms per statement in a worker that sat idle, against
~0.3 ms for the database to answer. Between an accepted redeploy and its PATCH stand one
transaction (services._start: lock the operations with their bindings, write the targets and
the audit events) and the claim of the restart; written out, they take a third of the time
(issue 6, figure 1).
The SQL is plain enough for PostgreSQL and SQLite; values go through each field's own
get_db_prep_save, exactly as the ORM would send them.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import AutoField, BigAutoField, Model, SmallAutoField

from .models import (
    Application,
    DeploymentBinding,
    KubernetesCluster,
    RedeployOperation,
    RedeployTarget,
)


@dataclass(frozen=True)
class Binding:
    """Where a redeploy restarts a Deployment."""

    pk: int
    namespace: str
    deployment_name: str
    cluster: KubernetesCluster


def lock_queued_operations(
    operation_ids: Sequence,
) -> list[tuple[RedeployOperation, list[Binding]]]:
    """Lock those of the operations still QUEUED, in id order (one lock order for every task),
    each with the bindings it restarts (those of its cluster, or all) in cluster-name order: one
    statement. The operations carry their requester (pk and username), nothing else related."""
    user_model = get_user_model()
    pk = RedeployOperation._meta.pk
    ids = _operation_ids(operation_ids)
    username = user_model._meta.get_field(user_model.USERNAME_FIELD).column
    rows = _fetch(
        "SELECT o.id, o.application_name, o.namespace, o.deployment_name, o.cluster_name, "
        f"o.celery_task_id, o.requested_by_id, u.{username}, "
        "b.id, b.namespace, b.deployment_name, c.id, c.updated_at "
        f"FROM {RedeployOperation._meta.db_table} o "
        f"JOIN {user_model._meta.db_table} u ON u.{user_model._meta.pk.column} = o.requested_by_id "
        f"LEFT JOIN {Application._meta.db_table} a ON a.name = o.application_name "
        f"LEFT JOIN {DeploymentBinding._meta.db_table} b ON b.application_id = a.id "
        "AND b.namespace = o.namespace AND b.deployment_name = o.deployment_name "
        f"LEFT JOIN {KubernetesCluster._meta.db_table} c ON c.id = b.cluster_id "
        "AND (o.cluster_name = '' OR c.name = o.cluster_name) "
        f"WHERE o.id IN ({_placeholders(ids)}) AND o.state = %s "
        f"ORDER BY o.id, c.name{_lock_clause()}",
        [*ids, RedeployOperation.State.QUEUED],
    )
    clusters = _clusters({row[11]: row[12] for row in rows if row[11] is not None})
    locked: dict = {}
    for row in rows:
        operation_id = pk.to_python(row[0])
        if operation_id not in locked:
            operation = RedeployOperation(
                id=operation_id,
                requested_by=user_model(pk=row[6], **{user_model.USERNAME_FIELD: row[7]}),
                application_name=row[1],
                namespace=row[2],
                deployment_name=row[3],
                cluster_name=row[4],
                celery_task_id=row[5],
                state=RedeployOperation.State.QUEUED,
            )
            operation._state.adding = False
            locked[operation_id] = (operation, [])
        if row[11] in clusters:
            locked[operation_id][1].append(
                Binding(
                    pk=row[8], namespace=row[9], deployment_name=row[10], cluster=clusters[row[11]]
                )
            )
    return list(locked.values())


# Cluster rows as the ORM loads them (credentials decrypted), kept by this process while their
# updated_at holds: every save of a cluster moves it.
_cluster_rows: dict[int, tuple[object, KubernetesCluster]] = {}


def _clusters(versions: dict[int, object]) -> dict[int, KubernetesCluster]:
    stale = [pk for pk, version in versions.items() if _cluster_rows.get(pk, (None,))[0] != version]
    if stale:
        # Loaded after `versions` were read: at worst newer than its version says, and so
        # loaded again next time.
        for cluster in KubernetesCluster.objects.filter(pk__in=stale):
            _cluster_rows[cluster.pk] = (versions[cluster.pk], cluster)
    # One deleted meanwhile is left out, and so are its bindings.
    return {pk: _cluster_rows[pk][1] for pk in versions if pk in _cluster_rows}


def unclaimed_targets(
    operation_ids: Sequence,
) -> list[tuple[RedeployTarget, KubernetesCluster]]:
    """The targets of the operations, RUNNING, still PENDING and not claimed, in id order, each
    with its cluster (one whose cluster is gone is left out): one statement. The targets carry
    the fields a restart needs."""
    pk = RedeployOperation._meta.pk
    ids = _operation_ids(operation_ids)
    target_table = RedeployTarget._meta.db_table
    rows = _fetch(
        "SELECT t.id, t.operation_id, t.namespace, t.deployment_name, c.name, c.id, c.updated_at "
        f"FROM {target_table} t "
        f"JOIN {RedeployOperation._meta.db_table} o ON o.id = t.operation_id "
        f"JOIN {KubernetesCluster._meta.db_table} c ON c.name = t.cluster_name "
        f"WHERE t.operation_id IN ({_placeholders(ids)}) AND o.state = %s AND t.state = %s "
        "AND t.restarted_at = '' ORDER BY t.id",
        [*ids, RedeployOperation.State.RUNNING, RedeployTarget.State.PENDING],
    )
    clusters = _clusters({row[5]: row[6] for row in rows})
    found = []
    for target_id, operation_id, namespace, deployment_name, cluster_name, cluster_id, _ in rows:
        if cluster_id not in clusters:
            continue
        target = RedeployTarget(
            id=target_id,
            operation_id=pk.to_python(operation_id),
            namespace=namespace,
            deployment_name=deployment_name,
            cluster_name=cluster_name,
        )
        target._state.adding = False
        found.append((target, clusters[cluster_id]))
    return found


def claim_restarts(target_ids: Sequence[int], *, restarted_at: str) -> set[int]:
    """Fix the restartedAt of those of the targets still PENDING and unclaimed (their rows locked
    in id order) and return their ids: one statement, so outside a transaction it is committed
    when it returns."""
    table = RedeployTarget._meta.db_table
    lock = " ORDER BY id FOR UPDATE" if connection.features.has_select_for_update else ""
    rows = _fetch(
        f"UPDATE {table} SET restarted_at = %s WHERE id IN (SELECT id FROM {table} "
        f"WHERE id IN ({_placeholders(target_ids)}) AND state = %s AND restarted_at = ''{lock}) "
        "RETURNING id",
        [restarted_at, *target_ids, RedeployTarget.State.PENDING],
    )
    return {pk for (pk,) in rows}


@dataclass(frozen=True)
class Statement:
    """One statement for `run`; `returned` is given the rows it returns."""

    sql: str
    params: list
    returned: Callable[[list[tuple]], None] | None = None


def update(model: type[Model], *, pks: Sequence, values: dict) -> Statement:
    """UPDATE these rows' fields (by name or attname: "ticket_id") to these values."""
    meta = model._meta
    fields = {meta.get_field(name): value for name, value in values.items()}
    assignments = ", ".join(f"{field.column} = %s" for field in fields)
    params = [field.get_db_prep_save(value, connection) for field, value in fields.items()]
    params += [meta.pk.get_db_prep_value(pk, connection) for pk in pks]
    return Statement(
        f"UPDATE {meta.db_table} SET {assignments} WHERE {meta.pk.column} IN "
        f"({_placeholders(pks)})",
        params,
    )


def insert(objects: Sequence[Model]) -> list[Statement]:
    """INSERT new rows of one model, as bulk_create would (auto_now_add filled in); once run,
    each object has the id the database chose."""
    if not objects:
        return []
    meta = type(objects[0])._meta
    generated = isinstance(meta.pk, AutoField | BigAutoField | SmallAutoField)
    fields = [field for field in meta.concrete_fields if not (generated and field.primary_key)]
    into = f"INSERT INTO {meta.db_table} ({', '.join(field.column for field in fields)})"
    returning = f" RETURNING {meta.pk.column}" if generated else ""
    rows = [
        [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for field in fields]
        for obj in objects
    ]
    if connection.vendor == "postgresql" and len(rows) > 1:
        # As bulk_create does on PostgreSQL: one array a column, so the statement's text (which
        # psycopg scans for placeholders) stays short however many rows there are.
        arrays = ", ".join(f"(%s)::{field.db_type(connection).split('(')[0]}[]" for field in fields)
        return [
            Statement(
                f"{into} SELECT * FROM UNNEST({arrays}){returning}",
                [list(column) for column in zip(*rows, strict=True)],
                partial(_inserted, list(objects), generated),
            )
        ]
    row = f"({', '.join(['%s'] * len(fields))})"
    size = max(1, connection.ops.bulk_batch_size(fields, objects))
    statements = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        statements.append(
            Statement(
                f"{into} VALUES {', '.join([row] * len(chunk))}{returning}",
                [value for values in chunk for value in values],
                partial(_inserted, list(objects[start : start + size]), generated),
            )
        )
    return statements


def _inserted(objects: list[Model], generated: bool, rows: list[tuple]) -> None:
    if generated:
        for obj, (pk,) in zip(objects, rows, strict=True):
            obj.pk = pk
    for obj in objects:
        obj._state.adding = False
        obj._state.db = connection.alias


def run(statements: Sequence[Statement]) -> None:
    """Run the statements in order. PostgreSQL is sent them at once: one round trip."""
    if not statements:
        return
    # Several statements in one go need psycopg's client-side binding (Django's default).
    together = connection.vendor == "postgresql" and not connection.settings_dict["OPTIONS"].get(
        "server_side_binding"
    )
    with connection.cursor() as cursor:
        if not together:
            for statement in statements:
                cursor.execute(statement.sql, statement.params)
                if statement.returned:
                    statement.returned(cursor.fetchall() if cursor.description else [])
            return
        cursor.execute(
            "; ".join(statement.sql for statement in statements),
            [param for statement in statements for param in statement.params],
        )
        for number, statement in enumerate(statements):
            if number:
                cursor.nextset()
            if statement.returned:
                statement.returned(cursor.fetchall() if cursor.description else [])


def _lock_clause() -> str:
    """Lock the operations' rows (only theirs, where the database can say so)."""
    features = connection.features
    if features.has_select_for_update_of:
        return " FOR UPDATE OF o"
    return " FOR UPDATE" if features.has_select_for_update else ""


def _operation_ids(operation_ids: Sequence) -> list:
    """Operation ids as the database takes them (UUIDs on PostgreSQL, hex on SQLite)."""
    pk = RedeployOperation._meta.pk
    return [pk.get_db_prep_value(pk.to_python(value), connection) for value in operation_ids]


def _placeholders(values: Sequence) -> str:
    return ", ".join(["%s"] * len(values))


def _fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
