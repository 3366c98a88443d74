"""Teams: the people who own applications. Members come from the admin or, at sign-in, from the
company directory's groups (OIDC claims, LDAP groups) mapped through settings."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Team(models.Model):
    name = models.SlugField(
        _("Name"), max_length=100, unique=True, help_text=_("As the directory names it.")
    )
    display_name = models.CharField(_("Display name"), max_length=200, blank=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="teams", verbose_name=_("Members")
    )

    class Meta:
        verbose_name = _("team")
        verbose_name_plural = _("teams")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name
