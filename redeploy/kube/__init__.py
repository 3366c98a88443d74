"""Everything that talks to Kubernetes: the only package that uses the official client.

Callers use it as `from redeploy import kube` and `kube.get_deployment(...)`; the names below
are that interface, whichever module of the package holds them:

- config: kubeconfig files read into storable credentials, and stored clusters turned back
  into a kubeconfig;
- client: one kept client per cluster, timeouts, the API's errors as the product's exceptions,
  bounded retries, paged LISTs;
- deployments: reading Deployments (one, or a cluster's page by page) and
  `kubectl rollout restart`;
- rollout: the pure rules of `kubectl rollout status`;
- pods: a Deployment's own pods, listed, deleted, and kept up to date from a watch;
- watch: Deployments and pods watched (Deployments LISTed) to follow rollouts and pod
  deletions.
"""

from ..exceptions import KubeError
from .client import in_background, load_api_classes
from .config import read_kubeconfig
from .deployments import (
    PAUSED_MESSAGE,
    Restart,
    RestartCheck,
    check_restart,
    check_restarts_in,
    deployment_pages,
    get_deployment,
    now_restarted_at,
    progress_deadline_seconds,
    restart_deployment,
    restarted_at_of,
)
from .pods import (
    DeletedPod,
    PodDeleteInDoubt,
    PodInfo,
    PodNotFound,
    PodSet,
    delete_pod,
    deployment_pods,
    pick_pods,
    pod_set,
    pod_still_running,
)
from .rollout import Rollout, RolloutStatus, rollout_status
from .watch import Change, Watched, Watches, list_namespace, name_selector

__all__ = [
    "PAUSED_MESSAGE",
    "Change",
    "DeletedPod",
    "KubeError",
    "PodDeleteInDoubt",
    "PodInfo",
    "PodNotFound",
    "PodSet",
    "Restart",
    "RestartCheck",
    "Rollout",
    "RolloutStatus",
    "Watched",
    "Watches",
    "check_restart",
    "check_restarts_in",
    "delete_pod",
    "deployment_pages",
    "deployment_pods",
    "get_deployment",
    "in_background",
    "list_namespace",
    "load_api_classes",
    "name_selector",
    "now_restarted_at",
    "pick_pods",
    "pod_set",
    "pod_still_running",
    "progress_deadline_seconds",
    "read_kubeconfig",
    "restart_deployment",
    "restarted_at_of",
    "rollout_status",
]
