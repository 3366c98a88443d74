"""Environment variables alone point the product at a directory: cratos/settings.py read in a
fresh process with them set, signing in against the real slapd over StartTLS."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection

from cratos.identity.checks import OIDC_ENDPOINTS

from .servers import Slapd

SIGN_IN = """
import json, django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("check")
from django.contrib.auth import authenticate
user = authenticate(None, username="bob", password="directory-pw")
print(json.dumps({
    "backends": settings.AUTHENTICATION_BACKENDS,
    "teams_setting": settings.DIRECTORY_TEAM_GROUPS,
    "user": user and user.get_username(),
    "roles": sorted(user.groups.values_list("name", flat=True)) if user else [],
    "teams": sorted(user.teams.values_list("name", flat=True)) if user else [],
}))
"""


def product_process(environment: dict[str, str]) -> dict:
    database = connection.settings_dict
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "cratos.settings",
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        **environment,
    }
    done = subprocess.run(
        [sys.executable, "-c", SIGN_IN],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_ldap_with_starttls_from_the_environment_alone(slapd):
    result = product_process(
        {
            "LDAP_SERVER_URI": slapd.uri,
            "LDAP_START_TLS": "true",
            "LDAP_CA_FILE": slapd.ca_file,
            "LDAP_BIND_DN": Slapd.READER_DN,
            "LDAP_BIND_PASSWORD": Slapd.READER_PASSWORD,
            "LDAP_USER_SEARCH_BASE": Slapd.PEOPLE,
            "LDAP_GROUP_SEARCH_BASE": Slapd.GROUPS,
            "DIRECTORY_APPROVERS_GROUPS": "cratos-approvers,other-approvers",
            "DIRECTORY_TEAM_GROUPS": "shop=team-shop;shop-oncall,payments=team-payments",
            "LOCAL_PASSWORDS": "superusers",
        }
    )

    assert result["backends"] == [
        "cratos.identity.backends.CompanyLDAPBackend",
        "cratos.identity.backends.LocalPasswordBackend",
    ]
    assert result["teams_setting"] == {
        "shop": ["team-shop", "shop-oncall"],
        "payments": ["team-payments"],
    }
    assert (result["user"], result["roles"], result["teams"]) == ("bob", ["Approvers"], ["shop"])


@pytest.mark.django_db(transaction=True)
def test_oidc_is_on_once_its_client_is_configured():
    result = product_process(
        {
            "OIDC_RP_CLIENT_ID": "cratos",
            **{name: f"https://sso.example.com/{name.lower()}" for name in OIDC_ENDPOINTS},
        }
    )

    assert result["backends"] == [
        "cratos.identity.backends.CompanyOIDCBackend",
        "cratos.identity.backends.LocalPasswordBackend",
    ]
