"""Directory groups to roles and teams (cratos.identity.mapping and services), without servers."""

import pytest

from cratos.audit.models import AuditEvent
from cratos.identity.mapping import access_for
from cratos.identity.services import apply_directory_groups
from cratos.teams.models import Team
from tests.factories import UserFactory


def names(queryset) -> set[str]:
    return set(queryset.values_list("name", flat=True))


def test_groups_give_the_mapped_roles_and_teams_whatever_their_case(directory_mapping):
    access = access_for(["CRATOS-Approvers", "team-shop", "unrelated"])

    assert access.roles == {"Approvers"}
    assert access.teams == {"shop"}
    assert access.managed_roles == {"Requesters", "Approvers", "Reviewers"}
    assert access.managed_teams == {"shop", "payments"}
    assert access.staff is True


def test_roles_and_teams_mapped_to_no_group_are_not_managed(settings):
    settings.DIRECTORY_ROLE_GROUPS = {"Requesters": [], "Approvers": [], "Reviewers": []}
    settings.DIRECTORY_TEAM_GROUPS = {}

    access = access_for(["cratos-approvers"])

    assert access.managed_roles == access.roles == frozenset()
    assert access.managed_teams == access.teams == frozenset()
    assert access.staff is None  # the admin's to set


@pytest.mark.django_db
def test_applying_groups_adds_and_removes_only_what_is_managed(directory_mapping, settings):
    settings.DIRECTORY_ROLE_GROUPS = {**settings.DIRECTORY_ROLE_GROUPS, "Reviewers": []}
    user = UserFactory(username="frank", groups=["Requesters", "Reviewers"])
    user.teams.add(Team.objects.create(name="payments"), Team.objects.create(name="ops"))

    apply_directory_groups(
        user=user, directory_groups=["cratos-approvers", "team-shop"], source="LDAP"
    )

    user.refresh_from_db()
    # Requesters and payments are mapped and no longer given; Reviewers and ops are the admin's.
    assert names(user.groups) == {"Approvers", "Reviewers"}
    assert names(user.teams) == {"shop", "ops"}
    assert user.is_staff
    event = AuditEvent.objects.get(action="identity.access_changed")
    assert event.actor == user
    assert event.message == (
        "Signed in through LDAP: role +Approvers, role -Requesters, "
        "team +shop, team -payments, staff on."
    )


@pytest.mark.django_db
def test_a_sign_in_that_changes_nothing_is_not_audited(directory_mapping):
    user = UserFactory(username="frank")
    apply_directory_groups(user=user, directory_groups=["cratos-requesters"], source="LDAP")

    apply_directory_groups(user=user, directory_groups=["cratos-requesters"], source="LDAP")

    assert AuditEvent.objects.filter(action="identity.access_changed").count() == 1


@pytest.mark.django_db
def test_a_superuser_keeps_the_admin_whatever_the_directory_says(directory_mapping):
    root = UserFactory(username="root", is_staff=True, is_superuser=True)

    apply_directory_groups(user=root, directory_groups=[], source="LDAP")

    root.refresh_from_db()
    assert root.is_staff


@pytest.mark.django_db
def test_a_deactivated_user_is_left_as_is(directory_mapping):
    user = UserFactory(username="frank", is_active=False)

    apply_directory_groups(user=user, directory_groups=["cratos-approvers"], source="LDAP")

    assert not user.groups.exists()
    assert not AuditEvent.objects.exists()
