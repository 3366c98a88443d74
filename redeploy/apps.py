from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RedeployConfig(AppConfig):
    name = "redeploy"
    verbose_name = _("Redeploy")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the entry providers of this app's work orders, the Celery tasks that
        # services enqueue by name (cratos.queue), and the count of unsettled operations that
        # /readyz reports.
        from cratos import health

        from . import providers, reconcile, tasks  # noqa: F401

        health.register_counts("operations", reconcile.unsettled_counts)
