"""The pod-delete pages: the live pod table of an approved application, the POST that queues
the deletion, the operation page, and the ticket's records table."""

import re
from urllib.parse import unquote

import pytest
from django.urls import reverse

from redeploy import kube
from redeploy.models import PodDeletion
from tests.factories import UserFactory
from tests.support import page
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def new_url(application="web") -> str:
    return f"{reverse('redeploy:pod-deletion-new')}?application={application}"


def test_the_form_lists_the_live_pods_of_the_approved_application(
    as_alice, cluster, binding, delete_pod_ticket
):
    pods = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")

    html = page(as_alice.get(new_url()))

    assert delete_pod_ticket.ticket_no in html
    for pod in pods:
        assert f'name="pods" value="{pod.name}"' in html
    assert "Running" in html


def test_without_an_approval_nothing_is_offered(as_alice, binding, approved_ticket):
    html = page(as_alice.get(new_url()))
    assert 'name="pods"' not in html
    assert "You have no live approval to delete pods." in html


def test_without_the_permission_the_form_is_refused(client, delete_pod_ticket):
    client.force_login(UserFactory(username="mallory"))
    assert client.get(new_url()).status_code == 403


def test_posting_picked_pods_queues_one_operation_and_shows_it(
    as_alice, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    names = [
        p.name
        for p in kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = as_alice.post(
            reverse("redeploy:pod-deletion-new"),
            {"application": "web", "binding": binding.pk, "pods": names},
        )

    operation = PodDeletion.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("redeploy:pod-deletion", args=[operation.pk])
    html = page(as_alice.get(response["Location"]))
    assert all(name in html for name in names)
    assert "Succeeded" in html
    ticket_page = page(as_alice.get(reverse("tickets:detail", args=[delete_pod_ticket.ticket_no])))
    assert "Delete Operation Time" in ticket_page and names[0] in ticket_page


def test_a_running_deletion_page_asks_for_news_and_reloads_only_on_a_change(
    as_alice, cluster, binding, delete_pod_ticket
):
    names = [
        p.name
        for p in kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    ]
    # Queued, not run: the commit hook that enqueues it is left out.
    as_alice.post(
        reverse("redeploy:pod-deletion-new"),
        {"application": "web", "binding": binding.pk, "pods": names[:1]},
    )
    operation = PodDeletion.objects.get()
    url = reverse("redeploy:pod-deletion", args=[operation.pk])
    html = page(as_alice.get(url))
    seen = re.search(r'hx-get="[^"?]*\?seen=([^"]+)"', html).group(1)
    assert 'http-equiv="refresh"' not in html.replace("<noscript><meta http-equiv", "")

    unchanged = as_alice.get(url, {"seen": unquote(seen)}, HTTP_HX_REQUEST="true")
    assert unchanged.status_code == 204
    PodDeletion.objects.filter(pk=operation.pk).update(state=PodDeletion.State.RUNNING)
    changed = as_alice.get(url, {"seen": unquote(seen)}, HTTP_HX_REQUEST="true")
    assert changed.headers["HX-Refresh"] == "true"


def test_a_second_post_is_refused_on_the_form(
    as_alice, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    body = {"application": "web", "binding": binding.pk, "pods": ["web-nope"]}
    with django_capture_on_commit_callbacks(execute=True):
        as_alice.post(reverse("redeploy:pod-deletion-new"), body)
    # The first found no such pod, so its approval came back: it may be used again once.
    first = PodDeletion.objects.get()
    assert first.targets.get().message == "The pod=web-nope resource does not exist"
    names = [
        p.name
        for p in kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    ]
    with django_capture_on_commit_callbacks(execute=True):
        as_alice.post(reverse("redeploy:pod-deletion-new"), body | {"pods": names[:1]})

    response = as_alice.post(reverse("redeploy:pod-deletion-new"), body | {"pods": names[1:]})

    assert response.status_code == 403
    assert "Unauthorized access" in page(response)


def test_a_form_sent_without_a_pod_or_a_place_is_refused_in_the_readers_language(
    as_alice, binding, delete_pod_ticket
):
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
    url = reverse("redeploy:pod-deletion-new")

    no_pod = as_alice.post(url, {"application": "web", "binding": binding.pk}, **zh)
    nowhere = as_alice.post(url, {"application": "web", "binding": "0", "pods": ["a"]}, **zh)

    assert "请至少选择一个 Pod。" in page(no_pod)
    assert "请选择 Pod 所在的位置。" in page(nowhere)


def test_others_cannot_see_the_operation_page(
    client, as_alice, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        as_alice.post(
            reverse("redeploy:pod-deletion-new"),
            {"application": "web", "binding": binding.pk, "pods": ["web-nope"]},
        )
    url = reverse("redeploy:pod-deletion", args=[PodDeletion.objects.get().pk])
    client.force_login(UserFactory(username="mallory"))
    assert client.get(url).status_code == 404


def test_the_approval_links_to_the_pod_table_and_the_ticket_shows_its_records(
    as_alice, binding, delete_pod_ticket
):
    html = page(as_alice.get(reverse("tickets:authorizations")))
    assert f"{reverse('redeploy:pod-deletion-new')}?application=web" in html
    assert "Delete pods" in html

    html = page(as_alice.get(reverse("tickets:detail", args=[delete_pod_ticket.ticket_no])))
    assert "No pod has been deleted on this ticket yet." in html


def test_the_form_links_to_a_pod_delete_ticket_which_files_as_one(as_alice, application):
    html = page(as_alice.get(new_url()))
    link = re.search(r'href="([^"]+)">File a ticket to delete pods', html).group(1)
    form = page(as_alice.get(link.replace("&amp;", "&")))
    key = re.search(r'name="work_order" value="([^"]+)"', form).group(1)

    as_alice.post(
        reverse("tickets:create"),
        {"work_order": key, "applications": ["web"], "reason": "stale", "action": "draft"},
    )

    assert Ticket.objects.get().work_order.key == "APPLICATION_DELETE_POD"
