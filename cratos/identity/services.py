"""The directory's word on a person, applied at each sign-in (LDAP and OIDC alike)."""

from collections.abc import Iterable

from django.db import transaction

from cratos.audit.recorder import Action, record_event
from cratos.roles import ensure_roles
from cratos.teams.models import Team

from .mapping import access_for


def _changes(label: str, added: set[str], removed: set[str]) -> list[str]:
    return [f"{label} +{name}" for name in sorted(added)] + [
        f"{label} -{name}" for name in sorted(removed)
    ]


def apply_directory_groups(*, user, directory_groups: Iterable[str], source: str) -> None:
    """Gives `user` the roles and teams their directory groups map to, and takes away the managed
    ones they no longer map to: someone removed from a group loses its role or team here, at the
    next sign-in. Audited when anything changed. A deactivated user is refused the sign-in
    after this, so nothing changes for them."""
    if not user.is_active:
        return
    access = access_for(directory_groups)
    with transaction.atomic():
        # Two sign-ins of one person at once must not interleave their adds and removes.
        type(user).objects.select_for_update().filter(pk=user.pk).exists()
        roles = ensure_roles()
        had_roles = set(
            user.groups.filter(name__in=access.managed_roles).values_list("name", flat=True)
        )
        gained_roles, lost_roles = access.roles - had_roles, had_roles - access.roles
        user.groups.add(*(roles[name] for name in gained_roles))
        user.groups.remove(*(roles[name] for name in lost_roles))

        had_teams = set(
            user.teams.filter(name__in=access.managed_teams).values_list("name", flat=True)
        )
        joined, left = access.teams - had_teams, had_teams - access.teams
        user.teams.add(*(Team.objects.get_or_create(name=name)[0] for name in sorted(joined)))
        user.teams.remove(*Team.objects.filter(name__in=left))

        changes = _changes("role", gained_roles, lost_roles) + _changes("team", joined, left)
        # A superuser keeps the admin whatever the directory says: the break-glass account.
        if access.staff is not None and not user.is_superuser and user.is_staff != access.staff:
            user.is_staff = access.staff
            user.save(update_fields=["is_staff"])
            changes.append(f"staff {'on' if access.staff else 'off'}")
        if changes:
            record_event(
                action=Action.IDENTITY_ACCESS_CHANGED,
                actor=user,
                message=f"Signed in through {source}: {', '.join(changes)}.",
            )
