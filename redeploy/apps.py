from django.apps import AppConfig


class RedeployConfig(AppConfig):
    name = "redeploy"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import providers  # noqa: F401  (registers the APPLICATION_REDEPLOY entry provider)
