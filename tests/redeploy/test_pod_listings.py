"""The pod-delete page's live pod table, listed by the worker (here in-process, as without a
broker; tests/redeploy/test_pod_deletion_e2e.py has a real worker) and handed back through
Redis; a queue that does not answer, or no worker, is an error on the page, in seconds."""

import time

import pytest
from django.core.cache import cache
from django.urls import reverse

from redeploy import kube, pod_listings, selectors
from redeploy.providers import DELETE_POD_GRANTS
from redeploy.tasks import list_pods
from tests.factories import BindingFactory
from tests.redeploy.conftest import use_broker
from tests.support import page

pytestmark = pytest.mark.django_db


def test_the_worker_lists_the_pods_of_the_binding(cluster, binding, redis_client):
    expected = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")

    listing = pod_listings.listed_pods(binding=binding)

    assert listing == pod_listings.PodListing(pods=expected)
    assert [pod.phase for pod in listing.pods] == ["Running", "Running"]
    assert all(pod.ready and not pod.deleting for pod in listing.pods)
    # The answer was read once and is gone.
    assert redis_client.keys("*pod-listing*") == []


def test_a_missing_deployment_is_the_listings_error(application, cluster):
    nowhere = BindingFactory(
        application=application, cluster=cluster, namespace="shop", deployment_name="gone"
    )

    listing = pod_listings.listed_pods(binding=nowhere)

    assert listing == pod_listings.PodListing(error="Deployment does not exist")


def test_a_binding_removed_since_the_page_is_answered_too(binding, redis_client):
    binding_id = binding.pk
    binding.delete()

    list_pods(listing_id="gone", binding_id=binding_id)

    answer = cache.get(pod_listings.ANSWER_KEY.format(listing_id="gone"))
    assert answer == pod_listings.PodListing(error="Deployment does not exist")


def test_the_page_shows_phase_restarts_and_age(as_alice, cluster, binding, delete_pod_ticket, sim):
    first, second = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    sim.set_restarts("shop", first.name, 3)

    html = page(as_alice.get(f"{reverse('redeploy:pod-deletion-new')}?application=web"))

    row = html[html.index(f'value="{first.name}"') : html.index(f'value="{second.name}"')]
    assert "<td>Running</td>" in row and "<td>3</td>" in row
    assert "minute" in row  # the age, as timesince writes it ("0 minutes")


def test_without_a_worker_the_page_gives_up_in_time(
    as_alice, binding, delete_pod_ticket, broker, settings
):
    settings.POD_LISTING_WAIT_SECONDS = 0.3
    started = time.monotonic()

    html = page(as_alice.get(f"{reverse('redeploy:pod-deletion-new')}?application=web"))

    assert time.monotonic() - started < 3
    assert pod_listings.NO_ANSWER in html
    assert 'name="pods"' not in html


def test_an_unreachable_queue_is_the_pages_error(as_alice, binding, delete_pod_ticket):
    use_broker("redis://127.0.0.1:1/0")
    try:
        html = page(as_alice.get(f"{reverse('redeploy:pod-deletion-new')}?application=web"))
    finally:
        use_broker(None)

    assert pod_listings.QUEUE_DOWN in html


def test_the_page_loads_no_cluster_credentials(requester, binding, delete_pod_ticket):
    (choice,) = selectors.redeploy_choices(user=requester, kind=DELETE_POD_GRANTS)
    shown = selectors.binding_shown(application_name="web", binding_id=str(binding.pk))

    for cluster in (choice.bindings[0].cluster, shown.cluster):
        assert {"token", "client_cert_data", "client_key_data", "kubeconfig"} <= (
            cluster.get_deferred_fields()
        )
