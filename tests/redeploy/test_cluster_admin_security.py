"""A cluster's stored credentials never follow it to a new server URL, and plain http:// needs
an explicit opt-in."""

import pytest
from django.urls import reverse

from redeploy.models import KubernetesCluster
from tests.factories import ClusterFactory, UserFactory

pytestmark = pytest.mark.django_db

NEW_URL_NEEDS_CREDENTIALS = "A new server URL needs its credentials again"
PLAIN_HTTP = "This server speaks plain HTTP"


@pytest.fixture
def root(client):
    user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def cluster():
    return ClusterFactory(
        name="prod",
        server="https://10.0.0.1:6443",
        token="stored-token",
        client_cert_data="stored-cert",
        client_key_data="stored-key",
    )


def change(client, cluster, **fields):
    data = {"name": cluster.name, "server": cluster.server, "ca_data": "", **fields}
    return client.post(reverse("admin:redeploy_kubernetescluster_change", args=[cluster.pk]), data)


def test_a_new_server_url_without_credentials_is_refused(client, root, cluster):
    response = change(client, cluster, server="https://attacker.example:6443")

    assert response.status_code == 200
    assert NEW_URL_NEEDS_CREDENTIALS in response.content.decode()
    cluster.refresh_from_db()
    assert (cluster.server, cluster.token) == ("https://10.0.0.1:6443", "stored-token")


def test_a_new_server_url_takes_the_credentials_typed_and_drops_the_others(client, root, cluster):
    response = change(client, cluster, server="https://10.0.0.2:6443", token="new-token")

    assert response.status_code == 302
    cluster.refresh_from_db()
    assert cluster.server == "https://10.0.0.2:6443"
    assert (cluster.token, cluster.client_cert_data, cluster.client_key_data) == (
        "new-token",
        "",
        "",
    )


def test_the_same_url_keeps_the_stored_credentials(client, root, cluster):
    assert change(client, cluster, ca_data="PEM").status_code == 302

    cluster.refresh_from_db()
    assert (cluster.ca_data, cluster.token) == ("PEM", "stored-token")


def test_plain_http_is_refused_without_the_opt_in(client, root):
    add = reverse("admin:redeploy_kubernetescluster_add")

    refused = client.post(add, {"name": "lab", "server": "http://10.0.0.3:8080", "token": "t"})

    assert refused.status_code == 200
    assert PLAIN_HTTP in refused.content.decode()
    assert not KubernetesCluster.objects.exists()

    accepted = client.post(
        add,
        {"name": "lab", "server": "http://10.0.0.3:8080", "token": "t", "allow_plain_http": "on"},
    )

    assert accepted.status_code == 302
    assert KubernetesCluster.objects.get(name="lab").allow_plain_http


def test_moving_a_cluster_to_plain_http_needs_the_opt_in_too(client, root, cluster):
    response = change(client, cluster, server="http://10.0.0.1:6443", token="t")

    assert response.status_code == 200
    assert PLAIN_HTTP in response.content.decode()
