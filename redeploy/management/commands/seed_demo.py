"""Demo data: the role users, a cluster and its applications. Safe to run again."""

import json
import os
import tempfile
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cratos.exceptions import DomainError
from cratos.roles import ensure_roles
from redeploy import clusters
from redeploy.exceptions import KubeTransientError

DEMO_USERS = [
    # username, role group, staff (may open the admin), superuser
    ("alice", "Requesters", False, False),
    ("bob", "Approvers", True, False),
    ("dave", "Approvers", True, False),
    ("carol", "Reviewers", False, False),
    ("admin", None, True, True),
]
CLUSTER_NAME = "demo"


class Command(BaseCommand):
    help = "Create demo users (alice, bob, dave, carol, admin), a cluster and its applications."

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
        for username, group, staff, superuser in DEMO_USERS:
            user, _ = users.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            user.is_staff, user.is_superuser = staff, superuser
            user.set_password(options["password"])
            user.save()
            if group:
                user.groups.add(groups[group])
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
            clusters.import_cluster(name=CLUSTER_NAME, kubeconfig_path=file.name)

    def _sync(self, label: str):
        # The demo cluster may still be starting: give it a few seconds before giving up.
        deadline = time.monotonic() + 15
        while True:
            try:
                return clusters.sync_applications(cluster_name=CLUSTER_NAME, label=label)
            except KubeTransientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
