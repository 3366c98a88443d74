from django.apps import AppConfig


class RedeployConfig(AppConfig):
    name = "redeploy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the entry providers of this app's work orders, the Celery tasks that
        # services enqueue by name (cratos.queue), and the count of unsettled operations that
        # /readyz reports.
        from cratos import health

        from . import providers, reconcile, tasks  # noqa: F401

        health.register_counts("operations", reconcile.unsettled_counts)
