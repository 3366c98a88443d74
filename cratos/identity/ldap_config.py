"""django-auth-ldap settings that environment variables name rather than spell out. Imported by
cratos/settings.py, so nothing here may need configured settings."""

import ldap
from django_auth_ldap.config import (
    ActiveDirectoryGroupType,
    GroupOfNamesType,
    GroupOfUniqueNamesType,
    NestedActiveDirectoryGroupType,
    PosixGroupType,
)

GROUP_TYPES = {
    "groupOfNames": GroupOfNamesType,
    "groupOfUniqueNames": GroupOfUniqueNamesType,
    "posixGroup": PosixGroupType,
    "activeDirectory": ActiveDirectoryGroupType,
    "nestedActiveDirectory": NestedActiveDirectoryGroupType,
}


def ldap_group_type(name: str):
    """How group entries name their members (LDAP_GROUP_TYPE); groups are known by their cn."""
    try:
        return GROUP_TYPES[name]()
    except KeyError:
        raise ValueError(f"LDAP_GROUP_TYPE must be one of {', '.join(GROUP_TYPES)}") from None


def ldap_connection_options(*, ca_file: str, timeout: float) -> dict:
    """A directory that does not answer fails the sign-in after `timeout` seconds rather than
    holding the web worker. TLS (ldaps:// or StartTLS) always verifies the server's certificate;
    `ca_file` names the CA that signed it when the system's CAs do not."""
    options = {
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
    }
    if ca_file:
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
    # Applies the options above to the connection's own TLS context; must come last.
    options[ldap.OPT_X_TLS_NEWCTX] = 0
    return options
