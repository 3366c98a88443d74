from django.core.management.base import BaseCommand

from cratos.roles import ensure_roles


class Command(BaseCommand):
    help = "Create the Requesters, Approvers and Reviewers groups with their permissions."

    def handle(self, *args, **options):
        for name in ensure_roles():
            self.stdout.write(f"Group {name} ready")
