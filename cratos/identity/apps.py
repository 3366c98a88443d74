from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "cratos.identity"
    label = "identity"
    verbose_name = "Company login"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system check)
