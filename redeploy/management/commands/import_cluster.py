from django.core.management.base import BaseCommand, CommandError

from cratos.exceptions import DomainError
from redeploy.clusters import import_cluster, import_in_cluster


class Command(BaseCommand):
    help = (
        "Register or update a Kubernetes cluster from a kubeconfig context: server, CA and "
        "token or client certificate, or the whole context when it needs more (exec plugins). "
        "With --in-cluster, the cluster the product runs in, reached with the pod's "
        "ServiceAccount."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the cluster's name in Cratos")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--kubeconfig", help="path of the kubeconfig file")
        source.add_argument(
            "--in-cluster",
            action="store_true",
            help="the cluster the product runs in (the worker's ServiceAccount; no kubeconfig)",
        )
        parser.add_argument("--context", help="kubeconfig context (default: current-context)")
        parser.add_argument(
            "--allow-plain-http",
            action="store_true",
            help="accept an http:// API server (its credentials travel unencrypted)",
        )

    def handle(self, *args, name, kubeconfig, in_cluster, context, allow_plain_http, **options):
        if in_cluster and context:
            raise CommandError("--context names a kubeconfig context; give --kubeconfig with it.")
        try:
            if in_cluster:
                cluster, created = import_in_cluster(name=name)
                where = "in-cluster"
            else:
                cluster, created = import_cluster(
                    name=name,
                    kubeconfig_path=kubeconfig,
                    context=context,
                    allow_plain_http=allow_plain_http,
                )
                where = cluster.server
        except DomainError as error:
            raise CommandError(error.message) from error
        verb = "Registered" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} cluster {cluster.name} ({where})"))
