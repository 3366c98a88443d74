"""Keys: outside DEBUG no serving process starts on the demo's SECRET_KEY or without a
FIELD_ENCRYPTION_KEY of its own; stored credentials survive a rotation of that key."""

import io
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from celery.signals import beat_init, worker_init
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from cratos.celery import _refuse_unsafe_keys
from cratos.fields import keyring
from cratos.startup import refuse_unsafe_keys
from redeploy.models import KubernetesCluster

DEMO_KEY = "insecure-demo-key-change-me-in-production"
OWN_KEY = "k3y-" + "x9Qz!" * 12
REPO = Path(settings.BASE_DIR)


@pytest.mark.parametrize(
    ("keys", "refusal"),
    [
        ({"SECRET_KEY": DEMO_KEY, "FIELD_ENCRYPTION_KEY": "fek"}, "Set SECRET_KEY"),
        ({"SECRET_KEY": OWN_KEY, "FIELD_ENCRYPTION_KEY": ""}, "Set FIELD_ENCRYPTION_KEY"),
        ({"SECRET_KEY": OWN_KEY, "FIELD_ENCRYPTION_KEY": OWN_KEY}, "not SECRET_KEY"),
    ],
)
def test_outside_debug_the_product_refuses_to_start_without_keys_of_its_own(keys, refusal):
    with override_settings(DEBUG=False, **keys), pytest.raises(ImproperlyConfigured, match=refusal):
        refuse_unsafe_keys()


def test_with_keys_of_its_own_or_in_debug_it_starts():
    with override_settings(DEBUG=False, SECRET_KEY=OWN_KEY, FIELD_ENCRYPTION_KEY="fek"):
        refuse_unsafe_keys()
    with override_settings(DEBUG=True, SECRET_KEY=DEMO_KEY, FIELD_ENCRYPTION_KEY=DEMO_KEY):
        refuse_unsafe_keys()


def test_the_worker_and_beat_check_before_they_start():
    assert any(receiver() is _refuse_unsafe_keys for _, receiver in worker_init.receivers)
    assert any(receiver() is _refuse_unsafe_keys for _, receiver in beat_init.receivers)


def _start_web(**environ) -> subprocess.CompletedProcess:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEY", "DJANGO_SETTINGS_MODULE"}
    }
    return subprocess.run(
        [sys.executable, "-c", "import cratos.wsgi"],
        cwd=REPO,
        env={**env, "DEBUG": "false", **environ},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_web_process_refuses_the_demo_keys_and_starts_on_its_own():
    refused = _start_web()
    assert refused.returncode != 0
    assert "Set SECRET_KEY" in refused.stderr

    started = _start_web(SECRET_KEY=OWN_KEY, FIELD_ENCRYPTION_KEY="fek")
    assert started.returncode == 0, started.stderr


def test_in_debug_credentials_are_encrypted_with_secret_key_unless_told_otherwise(monkeypatch):
    for name in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEBUG", "true")

    loaded = runpy.run_path(str(REPO / "cratos" / "settings.py"))

    assert loaded["FIELD_ENCRYPTION_KEY"] == loaded["SECRET_KEY"] == DEMO_KEY


def test_without_a_key_no_credential_is_read_or_stored():
    with override_settings(FIELD_ENCRYPTION_KEY=""), pytest.raises(ImproperlyConfigured):
        keyring()


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
