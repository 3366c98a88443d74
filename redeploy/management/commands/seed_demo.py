"""Demo data: the role users, a cluster and its applications. Safe to run again."""

import json
import os
import tempfile
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cratos.exceptions import DomainError
from cratos.roles import ensure_roles
from cratos.teams.models import Team
from redeploy import application_sync, clusters
from redeploy.exceptions import KubeTransientError
from tickets.models import ApprovalNode

DEMO_USERS = [
    # username, role group, team, staff (may open the admin), superuser
    ("alice", "Requesters", "shop", False, False),
    ("erin", "Requesters", "payments", False, False),
    ("bob", "Approvers", "shop", True, False),
    ("dave", "Approvers", "payments", True, False),
    ("carol", "Reviewers", None, False, False),
    ("admin", None, None, True, True),
]
CLUSTER_NAME = "demo"
# The demo cluster's Deployments name their team in this label (their namespace: shop, payments).
OWNER_LABEL = "app.kubernetes.io/part-of"


class Command(BaseCommand):
    help = (
        "Create demo users (alice, erin, bob, dave, carol, admin) in two teams (shop, payments), "
        "a cluster and its applications owned by those teams, approved by their owners."
    )

    def add_arguments(self, parser):
        cluster = parser.add_mutually_exclusive_group(required=True)
        cluster.add_argument("--kubeconfig", help="Register the demo cluster from this kubeconfig.")
        cluster.add_argument("--cluster-url", help="API server URL of the demo cluster.")
        parser.add_argument("--context", help="kubeconfig context (with --kubeconfig).")
        parser.add_argument("--cluster-token", default="", help="Bearer token (--cluster-url).")
        parser.add_argument("--label", default="app.kubernetes.io/name")
        parser.add_argument(
            "--password",
            default=os.environ.get("DEMO_PASSWORD", "cratos-demo"),
            help="Password of every demo user (default: $DEMO_PASSWORD or cratos-demo).",
        )

    def handle(self, *args, **options):
        groups = ensure_roles()
        users = get_user_model().objects
        for username, group, team, staff, superuser in DEMO_USERS:
            user, _ = users.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            user.is_staff, user.is_superuser = staff, superuser
            user.set_password(options["password"])
            user.save()
            if group:
                user.groups.add(groups[group])
            if team:
                Team.objects.get_or_create(name=team)[0].members.add(user)
        # Each application's owners approve it: a ticket for shop and payments waits for both.
        ApprovalNode.objects.filter(work_order__business_type="APPLICATION").exclude(
            node_type=ApprovalNode.Type.CC_TO
        ).update(node_type=ApprovalNode.Type.APPLICATION_OWNER)
        try:
            self._register_cluster(options)
            summary = self._sync(options["label"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Demo users ready (password: {options['password']}). {summary}")

    def _register_cluster(self, options) -> None:
        if options["kubeconfig"]:
            clusters.import_cluster(
                name=CLUSTER_NAME, kubeconfig_path=options["kubeconfig"], context=options["context"]
            )
            return
        user = {"token": options["cluster_token"]} if options["cluster_token"] else {}
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": options["cluster_url"]}}],
            "users": [{"name": CLUSTER_NAME, "user": user}],
            "contexts": [
                {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": CLUSTER_NAME}}
            ],
            "current-context": CLUSTER_NAME,
        }
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as file:
            json.dump(kubeconfig, file)
            file.flush()
            # The demo's own simulator, on loopback.
            clusters.import_cluster(
                name=CLUSTER_NAME, kubeconfig_path=file.name, allow_plain_http=True
            )

    def _sync(self, label: str):
        # The demo cluster may still be starting: give it a few seconds before giving up.
        deadline = time.monotonic() + 15
        while True:
            try:
                return application_sync.sync_applications(
                    cluster_name=CLUSTER_NAME, label=label, owner_label=OWNER_LABEL
                )
            except KubeTransientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
