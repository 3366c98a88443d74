"""The rules of `kubectl rollout status` (redeploy.kube.rollout): on hand-made Deployments, and
on a real rollout of the simulator."""

import time

import pytest

from redeploy import kube
from tests.redeploy.test_kube import cluster_for


def deployment(**status) -> dict:
    """A Deployment as the API returns it: generation 2, 3 replicas, the given status."""
    return {
        "metadata": {"name": "web", "generation": 2},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}},
            "progressDeadlineSeconds": 60,
        },
        "status": {"observedGeneration": 2, **status},
    }


@pytest.mark.parametrize(
    ("status", "state", "message"),
    [
        (
            {"observedGeneration": 1},
            kube.Rollout.PROGRESSING,
            "Waiting for deployment spec update to be observed...",
        ),
        (
            {"updatedReplicas": 1, "replicas": 4, "availableReplicas": 3},
            kube.Rollout.PROGRESSING,
            'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been '
            "updated...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 4, "availableReplicas": 3},
            kube.Rollout.PROGRESSING,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending '
            "termination...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            kube.Rollout.PROGRESSING,
            'Waiting for deployment "web" rollout to finish: 2 of 3 updated replicas are '
            "available...",
        ),
        (
            {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            kube.Rollout.COMPLETE,
            'deployment "web" successfully rolled out',
        ),
        (
            {
                "updatedReplicas": 1,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
                ],
            },
            kube.Rollout.FAILED,
            'deployment "web" exceeded its progress deadline',
        ),
    ],
)
def test_rollout_status_follows_kubectl(status, state, message):
    result = kube.rollout_status(deployment(**status))
    assert (result.state, result.message) == (state, message)
    assert result.progress_deadline_seconds == 60


def test_rollout_status_of_a_real_rollout(sim):
    sim.add_deployment("shop", "web", replicas=2)
    cluster = cluster_for(sim)
    kube.restart_deployment(cluster=cluster, namespace="shop", name="web", restarted_at="now")
    seen = []
    for _ in range(40):
        (listed,), _version = kube.list_namespace(cluster=cluster, namespace="shop", names=["web"])
        status = kube.rollout_status(listed)
        seen.append(status.message)
        if status.state != kube.Rollout.PROGRESSING:
            break
        time.sleep(0.05)
    assert status.state == kube.Rollout.COMPLETE
    # Which intermediate states a poll catches depends on timing; each is kubectl's wording.
    assert all(message.startswith("Waiting for ") for message in seen[:-1])
    assert seen[-1] == 'deployment "web" successfully rolled out'
