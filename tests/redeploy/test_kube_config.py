"""Kubeconfig files read into the credentials a cluster stores (redeploy.kube.config)."""

import pytest
import yaml

from cratos.exceptions import ValidationFailed
from redeploy import kube
from tests.redeploy.conftest import SIM_TOKEN


def test_read_kubeconfig_with_token(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config")
    credentials = kube.read_kubeconfig(path)
    assert (credentials.server, credentials.token, credentials.kind) == (
        sim.url,
        SIM_TOKEN,
        "token",
    )
    assert not credentials.kubeconfig


def test_read_kubeconfig_with_files_next_to_it(tmp_path):
    (tmp_path / "ca.crt").write_text("CA PEM")
    (tmp_path / "me.crt").write_text("CERT PEM")
    (tmp_path / "me.key").write_text("KEY PEM")
    config = {
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://k8s:6443", "certificate-authority": "ca.crt"},
            }
        ],
        "users": [{"name": "u", "user": {"client-certificate": "me.crt", "client-key": "me.key"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "prod",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))

    credentials = kube.read_kubeconfig(tmp_path / "config")

    assert (credentials.ca_data, credentials.client_cert_data, credentials.client_key_data) == (
        "CA PEM",
        "CERT PEM",
        "KEY PEM",
    )
    assert credentials.kind == "client certificate"


def test_read_kubeconfig_keeps_an_exec_context_whole(tmp_path):
    config = {
        "clusters": [{"name": "c", "cluster": {"server": "https://eks.example"}}],
        "users": [
            {"name": "u", "user": {"exec": {"command": "aws", "args": ["eks", "get-token"]}}}
        ],
        "contexts": [
            {"name": "a", "context": {"cluster": "c", "user": "u"}},
            {"name": "b", "context": {"cluster": "c", "user": "u", "namespace": "x"}},
        ],
        "current-context": "a",
    }
    (tmp_path / "config").write_text(yaml.safe_dump(config))

    credentials = kube.read_kubeconfig(tmp_path / "config", context="b")

    stored = yaml.safe_load(credentials.kubeconfig)
    assert credentials.kind == "kubeconfig"
    assert credentials.kubeconfig_context == "b"
    assert [c["name"] for c in stored["contexts"]] == ["b"]
    assert stored["users"][0]["user"]["exec"]["command"] == "aws"


def test_read_kubeconfig_refuses_an_unknown_context(sim, tmp_path):
    path = sim.kubeconfig(tmp_path / "config")
    with pytest.raises(ValidationFailed, match="has no context named nope"):
        kube.read_kubeconfig(path, context="nope")
