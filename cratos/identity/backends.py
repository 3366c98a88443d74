"""Authentication backends: LDAP and OIDC (each applying the directory's groups at sign-in) and
local passwords for whom LOCAL_PASSWORDS allows."""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django_auth_ldap.backend import LDAPBackend
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from .services import apply_directory_groups

LOCAL_PASSWORD_POLICIES = ("all", "superusers", "none")


def local_password_allowed(user) -> bool:
    """Whether `user` may sign in with a password kept here rather than in the directory."""
    if user.get_username() in settings.LOCAL_PASSWORD_USERS:
        return True
    policy = settings.LOCAL_PASSWORDS
    return policy == "all" or (policy == "superusers" and user.is_superuser)


class LocalPasswordBackend(ModelBackend):
    """Django's own password check, limited by LOCAL_PASSWORDS and LOCAL_PASSWORD_USERS. Also
    consulted for each request's session, so switching local passwords off ends such sessions."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and local_password_allowed(user)


class CompanyLDAPBackend(LDAPBackend):
    """django-auth-ldap's bind and searches (AUTH_LDAP_* settings); then the user's LDAP groups
    give their roles and teams."""

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            apply_directory_groups(user=user, directory_groups=ldap_user.group_names, source="LDAP")
        return user


class CompanyOIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's authorization code flow; people are known by OIDC_USERNAME_CLAIM
    (e-mail addresses change hands and may be missing), created at their first sign-in, and the
    OIDC_GROUPS_CLAIM gives their roles and teams each time."""

    def get_userinfo(self, access_token, id_token, payload):
        # Some providers (Azure AD) put the groups in the ID token only, not in the userinfo.
        return {**payload, **super().get_userinfo(access_token, id_token, payload)}

    def _username(self, claims) -> str:
        return str(claims.get(settings.OIDC_USERNAME_CLAIM) or "")

    def verify_claims(self, claims) -> bool:
        return bool(self._username(claims))

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(username=self._username(claims))

    def describe_user_by_claims(self, claims) -> str:
        return f"user name {self._username(claims)}"

    def create_user(self, claims):
        user = self.UserModel.objects.create_user(self._username(claims))
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        user.email = claims.get("email", user.email) or ""
        user.first_name = claims.get("given_name", user.first_name) or ""
        user.last_name = claims.get("family_name", user.last_name) or ""
        user.save(update_fields=["email", "first_name", "last_name"])
        groups = claims.get(settings.OIDC_GROUPS_CLAIM) or []
        apply_directory_groups(
            user=user,
            directory_groups=[groups] if isinstance(groups, str) else groups,
            source=settings.OIDC_PROVIDER_NAME,
        )
        return user
