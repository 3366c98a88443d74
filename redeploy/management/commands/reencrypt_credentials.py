from django.core.management.base import BaseCommand

from cratos.fields import reencrypt_stored


class Command(BaseCommand):
    help = (
        "Encrypt every stored credential (clusters' tokens, certificates, keys and kubeconfigs; "
        "webhook secrets) again with FIELD_ENCRYPTION_KEY. Run it after rotating the key, with "
        "the old key still in FIELD_ENCRYPTION_OLD_KEYS; then drop the old key."
    )

    def handle(self, *args, **options):
        for label, count in reencrypt_stored().items():
            self.stdout.write(f"{label}: {count} rows encrypted with the current key")
        self.stdout.write(self.style.SUCCESS("Done: FIELD_ENCRYPTION_OLD_KEYS may be dropped."))
