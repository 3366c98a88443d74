"""Keys: outside DEBUG no process starts on the demo's SECRET_KEY or without a
FIELD_ENCRYPTION_KEY of its own; stored credentials survive a rotation of that key."""

import io
import runpy
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from cratos.fields import keyring
from redeploy.models import KubernetesCluster

SETTINGS_FILE = Path(settings.BASE_DIR) / "cratos" / "settings.py"
DEMO_KEY = "insecure-demo-key-change-me-in-production"
OWN_KEY = "k3y-" + "x9Qz!" * 12


def load_settings(monkeypatch, **environ) -> dict:
    for name in ("DEBUG", "SECRET_KEY", "FIELD_ENCRYPTION_KEY", "FIELD_ENCRYPTION_OLD_KEYS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


@pytest.mark.parametrize(
    ("environ", "refusal"),
    [
        ({}, "Set SECRET_KEY"),
        ({"SECRET_KEY": DEMO_KEY, "FIELD_ENCRYPTION_KEY": "fek"}, "Set SECRET_KEY"),
        ({"SECRET_KEY": OWN_KEY}, "Set FIELD_ENCRYPTION_KEY"),
        ({"SECRET_KEY": OWN_KEY, "FIELD_ENCRYPTION_KEY": OWN_KEY}, "not SECRET_KEY"),
    ],
)
def test_outside_debug_the_product_refuses_to_start_without_keys_of_its_own(
    monkeypatch, environ, refusal
):
    with pytest.raises(ImproperlyConfigured, match=refusal):
        load_settings(monkeypatch, DEBUG="false", **environ)


def test_with_keys_of_its_own_it_starts(monkeypatch):
    loaded = load_settings(
        monkeypatch,
        SECRET_KEY=OWN_KEY,
        FIELD_ENCRYPTION_KEY="fek-new",
        FIELD_ENCRYPTION_OLD_KEYS="fek-old,fek-older",
    )

    assert loaded["FIELD_ENCRYPTION_KEY"] == "fek-new"
    assert loaded["FIELD_ENCRYPTION_OLD_KEYS"] == ["fek-old", "fek-older"]


def test_in_debug_the_demo_keys_still_do(monkeypatch):
    loaded = load_settings(monkeypatch, DEBUG="true")

    assert loaded["SECRET_KEY"] == DEMO_KEY
    assert loaded["FIELD_ENCRYPTION_KEY"] == DEMO_KEY


# -- rotation -----------------------------------------------------------------------------------


def stored(cluster) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT token FROM redeploy_kubernetescluster WHERE id = %s", [cluster.pk])
        return cursor.fetchone()[0]


def read_token(cluster) -> str:
    return KubernetesCluster.objects.get(pk=cluster.pk).token


@pytest.mark.django_db
def test_a_rotated_key_decrypts_the_old_ciphertext_until_it_is_reencrypted(settings):
    settings.FIELD_ENCRYPTION_KEY, settings.FIELD_ENCRYPTION_OLD_KEYS = "key-1", []
    cluster = KubernetesCluster.objects.create(name="prod", server="https://k8s", token="tok-1")
    before = stored(cluster)

    # The new key encrypts, the old one still decrypts.
    settings.FIELD_ENCRYPTION_KEY, settings.FIELD_ENCRYPTION_OLD_KEYS = "key-2", ["key-1"]
    assert read_token(cluster) == "tok-1"
    assert keyring().decrypt(before.encode()) == b"tok-1"

    call_command("reencrypt_credentials", stdout=io.StringIO())

    after = stored(cluster)
    assert after != before
    assert "tok-1" not in after
    # The old key can go now; without the rotation it could not.
    settings.FIELD_ENCRYPTION_OLD_KEYS = []
    assert read_token(cluster) == "tok-1"
    settings.FIELD_ENCRYPTION_KEY = "key-1"
    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_OLD_KEYS"):
        read_token(cluster)


@pytest.mark.django_db
def test_reencrypting_reports_each_model_with_secrets_and_changes_nothing_else(settings):
    cluster = KubernetesCluster.objects.create(
        name="prod", server="https://k8s", token="t", client_key_data="k"
    )
    updated_at = cluster.updated_at
    settings.FIELD_ENCRYPTION_OLD_KEYS = [settings.FIELD_ENCRYPTION_KEY]
    settings.FIELD_ENCRYPTION_KEY = "the-next-key"
    out = io.StringIO()

    call_command("reencrypt_credentials", stdout=out)

    assert "redeploy.KubernetesCluster: 1 rows encrypted with the current key" in out.getvalue()
    assert "tickets." in out.getvalue()  # the webhook secrets' model too
    cluster.refresh_from_db()
    assert (cluster.token, cluster.client_key_data, cluster.updated_at) == ("t", "k", updated_at)
