"""Who may redeploy. The live authorization is checked by the holder; this is the role."""

from cratos.exceptions import PermissionRefused

REDEPLOY_PERMISSION = "redeploy.redeploy_application"


def redeploy_refusal(*, user) -> PermissionRefused | None:
    if not user.has_perm(REDEPLOY_PERMISSION):
        return PermissionRefused("You may not redeploy applications.")
    return None


def pod_delete_refusal(*, user) -> PermissionRefused | None:
    # Deleting pods is as risky as restarting them: the same permission allows both.
    if not user.has_perm(REDEPLOY_PERMISSION):
        return PermissionRefused("You may not delete pods of applications.")
    return None
