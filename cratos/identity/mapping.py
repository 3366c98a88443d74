"""Which roles and teams a directory's groups give, by settings.

DIRECTORY_ROLE_GROUPS maps a role (cratos.roles) to the directory groups that give it,
DIRECTORY_TEAM_GROUPS a team's name to its groups. Only what is mapped is managed: a role or team
mapped to no group is left to the admin. Group names match regardless of case.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class DirectoryAccess:
    """What the directory decides for one person: the roles and teams it manages, and of those,
    the ones the person's groups give."""

    managed_roles: frozenset[str]
    roles: frozenset[str]
    managed_teams: frozenset[str]
    teams: frozenset[str]
    staff: bool | None  # None: no role is managed, so staff status is the admin's to set


def _granted(mapping: Mapping[str, Iterable[str]], groups: frozenset[str]) -> tuple[set, set]:
    managed = {name for name, sources in mapping.items() if sources}
    granted = {
        name
        for name, sources in mapping.items()
        if any(source.casefold() in groups for source in sources)
    }
    return managed, granted


def access_for(directory_groups: Iterable[str]) -> DirectoryAccess:
    groups = frozenset(group.casefold() for group in directory_groups)
    managed_roles, roles = _granted(settings.DIRECTORY_ROLE_GROUPS, groups)
    managed_teams, teams = _granted(settings.DIRECTORY_TEAM_GROUPS, groups)
    # Approvers decide in the admin, which needs staff status: it follows the roles that do.
    staff = bool(roles & set(settings.DIRECTORY_STAFF_ROLES)) if managed_roles else None
    return DirectoryAccess(
        managed_roles=frozenset(managed_roles),
        roles=frozenset(roles),
        managed_teams=frozenset(managed_teams),
        teams=frozenset(teams),
        staff=staff,
    )
