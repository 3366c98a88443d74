from django.apps import AppConfig


class RedeployConfig(AppConfig):
    name = "redeploy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the entry providers of this app's work orders, and the Celery tasks that
        # services enqueue by name (cratos.queue).
        from . import providers, tasks  # noqa: F401
