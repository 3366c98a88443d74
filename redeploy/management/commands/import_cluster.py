from django.core.management.base import BaseCommand, CommandError

from cratos.exceptions import DomainError
from redeploy.services import import_cluster


class Command(BaseCommand):
    help = (
        "Register or update a Kubernetes cluster from a kubeconfig context: server, CA and "
        "token or client certificate, or the whole context when it needs more (exec plugins)."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the cluster's name in Cratos")
        parser.add_argument("--kubeconfig", required=True, help="path of the kubeconfig file")
        parser.add_argument("--context", help="kubeconfig context (default: current-context)")

    def handle(self, *args, name, kubeconfig, context, **options):
        try:
            cluster, created = import_cluster(
                name=name, kubeconfig_path=kubeconfig, context=context
            )
        except DomainError as error:
            raise CommandError(error.message) from error
        verb = "Registered" if created else "Updated"
        self.stdout.write(self.style.SUCCESS(f"{verb} cluster {cluster.name} ({cluster.server})"))
