from django.core.management.base import BaseCommand, CommandError

from cratos.exceptions import DomainError
from redeploy.application_sync import (
    DEFAULT_APPLICATION_LABEL,
    DEFAULT_OWNER_LABEL,
    sync_applications,
)


class Command(BaseCommand):
    help = (
        "Create or update one application per distinct label value among a cluster's "
        "Deployments (tags from their labels) and a binding per (namespace, Deployment); "
        "the bindings of Deployments that disappeared are deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cluster", required=True, help="name of a registered cluster")
        parser.add_argument(
            "--label",
            default=DEFAULT_APPLICATION_LABEL,
            help=f"label whose value names the application (default: {DEFAULT_APPLICATION_LABEL})",
        )
        parser.add_argument(
            "--owner-label",
            default=DEFAULT_OWNER_LABEL,
            help="label whose value names the team that owns the application (created if "
            f"missing; owners set in the admin are kept) (default: {DEFAULT_OWNER_LABEL})",
        )
        parser.add_argument(
            "--namespace",
            action="append",
            dest="namespaces",
            default=[],
            metavar="NS",
            help="list Deployments in this namespace only (repeatable); needed when the "
            "cluster's credentials may list namespace by namespace only, as deploy/'s Roles "
            "allow (default: every namespace)",
        )

    def handle(self, *args, cluster, label, owner_label, namespaces, **options):
        try:
            summary = sync_applications(
                cluster_name=cluster, label=label, owner_label=owner_label, namespaces=namespaces
            )
        except DomainError as error:
            raise CommandError(error.message) from error
        self.stdout.write(self.style.SUCCESS(str(summary)))
