"""The product's roles as Django groups with their permissions (idempotent)."""

from django.contrib.auth.models import Group, Permission

ROLE_PERMISSIONS = {
    # Requesters file tickets and redeploy what was approved for them.
    "Requesters": ["redeploy.redeploy_application"],
    # Approvers decide in the admin: they see tickets and run the approve/reject actions.
    "Approvers": [
        "tickets.view_ticket",
        "tickets.change_ticket",
        "tickets.view_ticketentry",
        "tickets.view_approval",
        "redeploy.view_application",
        "redeploy.view_deploymentbinding",
    ],
    # Reviewers read the audit log and every ticket.
    "Reviewers": [
        "audit.view_auditevent",
        "tickets.view_ticket",
        "redeploy.view_redeployoperation",
    ],
}


def ensure_roles() -> dict[str, Group]:
    groups = {}
    for name, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for dotted in codenames:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        groups[name] = group
    return groups
