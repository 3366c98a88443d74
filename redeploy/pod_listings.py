"""The live pod table of the pod-delete page, read by the worker and handed to the web.

Only the worker holds cluster credentials (docs/architecture.md: an in-cluster cluster is the
worker's own ServiceAccount), so the page does not call Kubernetes. It asks the worker through
a short task and waits a few seconds for the answer, which comes back through the cache (the
Redis the grants live in; the demo's in-process cache when tasks run in its threads) under a
key of its own. The task expires with the wait: a busy worker never lists for a page that gave
up. Listing changes nothing, so the task is not retried and a lost answer is only a reload.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError

from cratos import queue

from . import kube
from .exceptions import DEPLOYMENT_DOES_NOT_EXIST, KubeError
from .models import DeploymentBinding

logger = logging.getLogger(__name__)

# The task that answers, as redeploy.tasks registers it.
LIST_PODS = "redeploy.list_pods"
ANSWER_KEY = "redeploy:pod-listing:{listing_id}"
# Long enough for a page that is still waiting to read it; nothing reads it later.
ANSWER_TTL_SECONDS = 60
POLL_SECONDS = 0.05
QUEUE_DOWN = "The task queue is not answering; the pods cannot be listed now. Try again."
NO_ANSWER = "No worker answered in time; the pods cannot be listed now. Reload to try again."


@dataclass(frozen=True)
class PodListing:
    """A Deployment's pods as the worker saw them, or why it could not list them."""

    pods: list[kube.PodInfo] = field(default_factory=list)
    error: str = ""


def listed_pods(*, binding: DeploymentBinding) -> PodListing:
    """The binding's pods, listed by the worker (web side): waits up to
    POD_LISTING_WAIT_SECONDS; an unanswered or unqueued request is a listing with its error."""
    listing_id = uuid.uuid4().hex
    wait = settings.POD_LISTING_WAIT_SECONDS
    try:
        queue.enqueue(
            LIST_PODS,
            kwargs={"listing_id": listing_id, "binding_id": binding.pk},
            expires=wait,
            retry=False,
        )
    except OperationalError as error:
        logger.error("Cannot queue the pod listing of binding %s: %s", binding.pk, error)
        return PodListing(error=QUEUE_DOWN)
    key = ANSWER_KEY.format(listing_id=listing_id)
    deadline = time.monotonic() + wait
    while (answer := cache.get(key)) is None:
        if time.monotonic() >= deadline:
            return PodListing(error=NO_ANSWER)
        time.sleep(POLL_SECONDS)
    cache.delete(key)
    return answer


def answer_listing(*, listing_id: str, binding_id: int) -> None:
    """List the binding's pods for the page waiting on `listing_id` (worker side)."""
    binding = DeploymentBinding.objects.select_related("cluster").filter(pk=binding_id).first()
    if binding is None:
        answer = PodListing(error=DEPLOYMENT_DOES_NOT_EXIST)  # unbound since the page
    else:
        try:
            answer = PodListing(
                pods=kube.deployment_pods(
                    cluster=binding.cluster,
                    namespace=binding.namespace,
                    deployment_name=binding.deployment_name,
                )
            )
        except KubeError as error:
            answer = PodListing(error=error.message)
    cache.set(ANSWER_KEY.format(listing_id=listing_id), answer, ANSWER_TTL_SECONDS)
