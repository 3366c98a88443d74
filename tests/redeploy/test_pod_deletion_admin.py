"""The pod deletions in the admin: listed, searched and opened with their pods, and, as every
record of what happened, never added, changed or deleted, superusers included."""

import pytest
from django.urls import reverse

from redeploy import kube, pod_deletions
from redeploy.models import PodDeletion, PodDeletionTarget
from tests.factories import UserFactory
from tests.support import page

pytestmark = pytest.mark.django_db


@pytest.fixture
def deletion(requester, cluster, binding, delete_pod_ticket, django_capture_on_commit_callbacks):
    """alice's finished deletion of one pod of `web`."""
    (pod, _) = kube.deployment_pods(cluster=cluster, namespace="shop", deployment_name="web")
    with django_capture_on_commit_callbacks(execute=True):
        operation = pod_deletions.request_pod_deletion(
            user=requester,
            application_name="web",
            namespace="shop",
            deployment_name="web",
            pod_names=[pod.name],
        )
    operation.refresh_from_db()
    assert operation.state == PodDeletion.State.SUCCEEDED
    return operation


@pytest.fixture
def as_root(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


def test_the_list_shows_and_finds_the_deletion(as_root, deletion, delete_pod_ticket):
    url = reverse("admin:redeploy_poddeletion_changelist")

    html = page(as_root.get(url, {"q": delete_pod_ticket.ticket_no}))

    assert reverse("admin:redeploy_poddeletion_change", args=[deletion.pk]) in html
    assert "alice" in html and "Succeeded" in html
    assert "0 pod deletions" in page(as_root.get(url, {"q": "nothing-like-it"}))


def test_the_deletion_opens_with_its_pods(as_root, deletion):
    target = deletion.targets.get()

    html = page(as_root.get(reverse("admin:redeploy_poddeletion_change", args=[deletion.pk])))

    assert target.pod_name in html and target.pod_uid in html
    assert deletion.celery_task_id in html


def test_the_pod_records_are_listed_and_searchable(as_root, deletion):
    target = deletion.targets.get()
    url = reverse("admin:redeploy_poddeletiontarget_changelist")

    html = page(as_root.get(url, {"q": target.pod_name}))

    assert reverse("admin:redeploy_poddeletiontarget_change", args=[target.pk]) in html


@pytest.mark.parametrize("model", [PodDeletion, PodDeletionTarget])
def test_nobody_adds_changes_or_deletes_them(as_root, deletion, model):
    record = deletion if model is PodDeletion else deletion.targets.get()
    name = f"admin:redeploy_{model._meta.model_name}"

    assert as_root.get(reverse(f"{name}_add")).status_code == 403
    assert as_root.get(reverse(f"{name}_delete", args=[record.pk])).status_code == 403
    change = page(as_root.get(reverse(f"{name}_change", args=[record.pk])))
    assert 'name="_save"' not in change
    assert as_root.post(reverse(f"{name}_change", args=[record.pk]), {}).status_code == 403
    assert model.objects.filter(pk=record.pk).exists()
