"""The company-login fixtures: a real slapd and a real OpenID provider for this test worker
(started once, shared read-mostly: a test that changes the directory undoes it), and the
settings that point the product at them, as the environment would in production."""

import ldap
import pytest
from django_auth_ldap.config import LDAPSearch

from cratos.identity.ldap_config import ldap_connection_options, ldap_group_type

from .servers import ROLE_GROUPS, TEAM_GROUPS, OpenIDProvider, Slapd

BACKENDS = "cratos.identity.backends"


@pytest.fixture(scope="session")
def slapd():
    with Slapd() as server:
        yield server


@pytest.fixture(scope="session")
def openid_provider():
    with OpenIDProvider() as provider:
        yield provider


@pytest.fixture
def directory_mapping(settings):
    settings.DIRECTORY_ROLE_GROUPS = ROLE_GROUPS
    settings.DIRECTORY_TEAM_GROUPS = TEAM_GROUPS
    settings.DIRECTORY_STAFF_ROLES = ["Approvers"]


@pytest.fixture
def ldap_login(settings, slapd, directory_mapping):
    """The product pointed at slapd (what LDAP_* variables give), StartTLS off."""
    settings.AUTHENTICATION_BACKENDS = [
        f"{BACKENDS}.CompanyLDAPBackend",
        f"{BACKENDS}.LocalPasswordBackend",
    ]
    settings.AUTH_LDAP_SERVER_URI = slapd.uri
    settings.AUTH_LDAP_BIND_DN = slapd.READER_DN
    settings.AUTH_LDAP_BIND_PASSWORD = slapd.READER_PASSWORD
    settings.AUTH_LDAP_START_TLS = False
    settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(slapd.PEOPLE, ldap.SCOPE_SUBTREE, "(uid=%(user)s)")
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(
        slapd.GROUPS, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"
    )
    settings.AUTH_LDAP_GROUP_TYPE = ldap_group_type("groupOfNames")
    settings.AUTH_LDAP_CONNECTION_OPTIONS = ldap_connection_options(
        ca_file=slapd.ca_file, timeout=5
    )
    return slapd


@pytest.fixture
def oidc_login(settings, openid_provider, directory_mapping):
    """The product (served as http://testserver) pointed at the OpenID provider, registered there
    as a client of its own."""
    for name, value in openid_provider.register_client("http://testserver").items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [
        f"{BACKENDS}.CompanyOIDCBackend",
        f"{BACKENDS}.LocalPasswordBackend",
    ]
    return openid_provider
