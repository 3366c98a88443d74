"""Who may request, redeploy or delete pods of which application. The live authorization is
checked by the holder; this is the role and the ownership, read when they are used."""

from collections.abc import Iterable

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from cratos.exceptions import PermissionRefused

from .models import Application

REDEPLOY_PERMISSION = "redeploy.redeploy_application"
_VERB = {
    "request": pgettext_lazy("you may not", "request"),
    "redeploy": pgettext_lazy("you may not", "redeploy"),
    "delete pods of": pgettext_lazy("you may not", "delete pods of"),
}


def requestable_applications(*, user) -> QuerySet[Application]:
    """The applications `user` may ask for (and, once approved, act on): those a team of theirs
    owns, those opened to every requester, and those no team owns yet (as before ownership);
    none for a deactivated account."""
    if not user.is_active:
        return Application.objects.none()
    if settings.APPLICATIONS_OPEN_TO_ALL_REQUESTERS:
        return Application.objects.all()
    owners = Application.owner_teams.through.objects.filter(application_id=OuterRef("pk"))
    return Application.objects.filter(
        Q(open_to_requesters=True) | ~Exists(owners) | Exists(owners.filter(team__members=user.pk))
    )


def ownership_refusal(
    *, user, application_names: Iterable[str], verb: str = "request"
) -> PermissionRefused | None:
    """Why `user` may not `verb` some of these applications (unknown names are not this rule's):
    they are owned by teams `user` is not a member of."""
    if not user.is_active:
        return PermissionRefused(_("Your account is deactivated."))
    names = set(application_names)
    allowed = set(
        requestable_applications(user=user).filter(name__in=names).values_list("name", flat=True)
    )
    refused = (
        Application.objects.filter(name__in=names - allowed)
        .prefetch_related("owner_teams")
        .order_by("name")
    )
    if not refused:
        return None
    parts = [
        format_lazy(
            _("{application} (owned by {teams})"),
            application=application.name,
            teams=", ".join(t.name for t in application.owner_teams.all()),
        )
        for application in refused
    ]
    # Joined lazily too, so each part reads in the language the whole is rendered in.
    owned_by = format_lazy("; ".join(["{}"] * len(parts)), *parts)
    return PermissionRefused(
        format_lazy(
            _(
                "You may not {verb} {owned_by}: only members of an owner team may. "
                "Ask one of them, or an administrator to add you to the team."
            ),
            verb=_VERB[verb],
            owned_by=owned_by,
        )
    )


def redeploy_refusal(*, user, application_names: Iterable[str] = ()) -> PermissionRefused | None:
    if not user.has_perm(REDEPLOY_PERMISSION):
        return PermissionRefused(_("You may not redeploy applications."))
    return ownership_refusal(user=user, application_names=application_names, verb="redeploy")


def pod_delete_refusal(*, user, application_names: Iterable[str] = ()) -> PermissionRefused | None:
    # Deleting pods is as risky as restarting them: the same permission allows both.
    if not user.has_perm(REDEPLOY_PERMISSION):
        return PermissionRefused(_("You may not delete pods of applications."))
    return ownership_refusal(user=user, application_names=application_names, verb="delete pods of")
