from django.apps import AppConfig


class TicketsConfig(AppConfig):
    name = "tickets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks that services enqueue by name (cratos.queue).
        from . import notification_tasks, tasks  # noqa: F401
