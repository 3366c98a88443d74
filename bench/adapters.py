"""The benchmark's only door into the product's internals (Django models, services, stores).

Everything else in bench/ talks to the product through its stable surface: the HTTP API
(/api/v1/...), the APPLICATION_REDEPLOY work order, `manage.py` and the pages' URLs. When the
product's modules move, only the functions here change; each says which figures use it.

- setup_product      figures 1, 2, 4: users, API token, clusters and deployment bindings
- add_bindings       figures 8, 9:    more clusters and bindings
- more_requesters    figure 9:        more users who redeploy, each with an API token
- approve            figures 1, 2, 4: a ticket filed, submitted and approved (mints authorizations)
- wait_finished      figures 1, 4:    the redeploy operations' end states
- FinishCommits      figure 6:        the moment a redeploy's end is committed
- authorization_check  figure 2:      the product's authorization check, and its Redis key
- audit_page         figure 3:        what bench/audit_bench.py needs to know of the audit page

Django must be set up before any of them is called.
"""

import time
from dataclasses import dataclass

WORK_ORDER = "APPLICATION_REDEPLOY"


@dataclass
class Fixtures:
    requester: object  # the user who requests redeploys (API token below)
    approver: object  # a member of Approvers
    api_token: str
    work_order: object

    @property
    def username(self) -> str:
        return self.requester.get_username()


def setup_product(*, clusters: dict[str, dict], bindings: list[tuple[str, str, str, str]]):
    """Figures 1, 2, 4. `clusters`: name -> {"server", "token", "ca_data"?}; `bindings`:
    (application, cluster, namespace, deployment), one application each."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from rest_framework.authtoken.models import Token

    from tickets.models import WorkOrder

    users = get_user_model().objects
    requester = users.create_user("bench-requester")
    requester.user_permissions.add(
        Permission.objects.get(content_type__app_label="redeploy", codename="redeploy_application")
    )
    approver = users.create_user("bench-approver")
    approver.groups.add(Group.objects.get(name="Approvers"))
    add_bindings(clusters=clusters, bindings=bindings)
    return Fixtures(
        requester=requester,
        approver=approver,
        api_token=Token.objects.create(user=requester).key,
        work_order=WorkOrder.objects.get(key=WORK_ORDER),
    )


def add_bindings(*, clusters: dict[str, dict], bindings: list[tuple[str, str, str, str]]) -> None:
    """Figures 1, 2, 4, 8, 9: clusters and applications with their bindings, as setup_product
    takes them."""
    from redeploy.models import Application, DeploymentBinding, KubernetesCluster

    made = {
        name: KubernetesCluster.objects.create(
            name=name,
            server=fields["server"],
            token=fields["token"],
            ca_data=fields.get("ca_data", ""),
            # The benchmark's simulators on loopback.
            allow_plain_http=fields["server"].startswith("http://"),
        )
        for name, fields in clusters.items()
    }
    applications = Application.objects.bulk_create(
        Application(name=name, tags=[{"key": "team", "value": "bench"}])
        for name, _cluster, _namespace, _deployment in bindings
    )
    DeploymentBinding.objects.bulk_create(
        DeploymentBinding(
            application=application,
            cluster=made[cluster],
            namespace=namespace,
            deployment_name=deployment,
        )
        for application, (_name, cluster, namespace, deployment) in zip(
            applications, bindings, strict=True
        )
    )


def more_requesters(fixtures: Fixtures, count: int) -> list[Fixtures]:
    """Figure 9: `count` more users who may redeploy, each with an API token; the same approver."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    permission = Permission.objects.get(
        content_type__app_label="redeploy", codename="redeploy_application"
    )
    made = []
    for number in range(count):
        user = get_user_model().objects.create_user(f"bench-user-{number:03d}")
        user.user_permissions.add(permission)
        made.append(
            Fixtures(
                requester=user,
                approver=fixtures.approver,
                api_token=Token.objects.create(user=user).key,
                work_order=fixtures.work_order,
            )
        )
    return made


def approve(fixtures: Fixtures, application_names: list[str]) -> None:
    """Figures 1, 2, 4. A ticket filed, submitted and approved through the product's services:
    an authorization is minted for each application (in Redis)."""
    from tickets import services

    ticket = services.create_ticket(
        applicant=fixtures.requester,
        work_order=fixtures.work_order,
        application_names=application_names,
        reason="Benchmark",
    )
    services.submit_ticket(ticket=ticket, actor=fixtures.requester)
    services.approve_ticket(ticket=ticket, approver=fixtures.approver)


def wait_finished(operation_ids: list[str], *, until) -> list:
    """Figures 1, 4. Waits (`until(condition, what=...)`) for every operation to end; returns
    objects with `.finished_at`; raises when one of them failed."""
    from redeploy.models import RedeployOperation

    states = RedeployOperation.State
    finished = (states.SUCCEEDED, states.FAILED)

    def done():
        operations = list(RedeployOperation.objects.filter(pk__in=operation_ids))
        if len(operations) == len(operation_ids) and all(o.state in finished for o in operations):
            return operations
        return None

    operations = until(done, what="the redeploys to finish")
    failed = [o for o in operations if o.state != states.SUCCEEDED]
    if failed:
        raise RuntimeError(f"{len(failed)} redeploys failed, e.g.: {failed[0].message}")
    return operations


class FinishCommits:
    """Figure 6. When a redeploy operation's end (SUCCEEDED or FAILED) is committed, as
    PostgreSQL tells it: a trigger on the operations' table (in the benchmark's own database)
    NOTIFYs, and a NOTIFY reaches its listeners when its transaction commits, never before.
    Polling would add up to its interval, and load the cores the worker runs on."""

    CHANNEL = "bench_operation_finished"

    def __init__(self):
        import psycopg
        from django.db import connection

        from redeploy.models import RedeployOperation

        table = connection.ops.quote_name(RedeployOperation._meta.db_table)
        finished = ", ".join(
            f"'{state}'"
            for state in (RedeployOperation.State.SUCCEEDED, RedeployOperation.State.FAILED)
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION bench_operation_finished() RETURNS trigger AS $$ "
                f"BEGIN PERFORM pg_notify('{self.CHANNEL}', NEW.id::text); RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE OR REPLACE TRIGGER bench_operation_finished AFTER UPDATE ON {table} "
                f"FOR EACH ROW WHEN (NEW.state IN ({finished}) AND OLD.state <> NEW.state) "
                "EXECUTE FUNCTION bench_operation_finished()"
            )
        self.listener = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        self.listener.execute(f"LISTEN {self.CHANNEL}")

    def committed(self, operation_id: str, *, seconds: float) -> float:
        """Waits for the operation's end to be committed; when it was heard (time.monotonic())."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            for notice in self.listener.notifies(timeout=left, stop_after=1):
                if notice.payload == str(operation_id):
                    return time.monotonic()
        raise RuntimeError(f"Operation {operation_id} was not finished in {seconds} s")

    def close(self) -> None:
        self.listener.close()


def authorization_check(*, username: str, application_name: str):
    """Figure 2. (check, key, name): `check()` is the product's check of the caller's live
    authorization for that application (as a redeploy request makes it), `key` the Redis key
    it reads, `name` what to call the check in the results."""
    from redeploy.providers import REDEPLOY_GRANTS
    from tickets import grants

    key = REDEPLOY_GRANTS.key(username=username, application_name=application_name)

    def check():
        return grants.live_grant(
            kind=REDEPLOY_GRANTS, username=username, application_name=application_name
        )

    return check, key, "tickets.grants.live_grant (kind REDEPLOY_GRANTS)"


@dataclass
class AuditPage:
    """Figure 3: the audit list page as bench/audit_bench.py drives it."""

    url_name: str  # reverse() it
    table: str  # the events' table, copied per size into its own schema
    fallback_urlconf: str | None = None  # routes url_name when the project's URLs do not

    @staticmethod
    def reviewer_group():
        """The group whose members may read the audit page."""
        from cratos.roles import ensure_roles

        return ensure_roles()["Reviewers"]

    @staticmethod
    def newest(n: int):
        """The n-th newest event, in the page's default order."""
        from cratos.audit.models import AuditEvent
        from cratos.audit.tables import AuditEventTable

        _sort, ordering = AuditEventTable.resolve_sort(None)
        return AuditEvent.objects.order_by(*ordering)[n]

    @staticmethod
    def cursor_after(n: int) -> str:
        """The page's `after` cursor that starts after the n-th newest event."""
        from cratos.audit.models import AuditEvent
        from cratos.audit.selectors import encode_cursor
        from cratos.audit.tables import AuditEventTable

        sort, ordering = AuditEventTable.resolve_sort(None)
        event = AuditEvent.objects.order_by(*ordering)[n]
        return encode_cursor(sort=sort, event=event, ordering=ordering)

    @staticmethod
    def rows(response) -> int:
        """How many events a rendered page shows."""
        return len(response.context_data["table"].keyset_page.events)


def audit_page() -> AuditPage:
    """Figure 3."""
    return AuditPage(url_name="audit:events", table="redeploy_auditevent")
