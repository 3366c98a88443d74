"""Teams: the people who own applications. Members come from the admin or, at sign-in, from the
company directory's groups (OIDC claims, LDAP groups) mapped through settings."""

from django.conf import settings
from django.db import models


class Team(models.Model):
    name = models.SlugField(max_length=100, unique=True, help_text="As the directory names it.")
    display_name = models.CharField(max_length=200, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name or self.name
