"""Where a Deployment's rollout stands, by the rules of `kubectl rollout status`.

Pure: it reads a Deployment already fetched and makes no call, so the follow-up loop decides
how often to read, and these rules are tested on hand-made objects.
"""

from dataclasses import dataclass
from enum import StrEnum

from kubernetes.client import V1Deployment

from .deployments import progress_deadline_seconds

# The Progressing condition's reason once the controller gave up (kubectl's TimedOutReason).
TIMED_OUT_REASON = "ProgressDeadlineExceeded"


class Rollout(StrEnum):
    PROGRESSING = "progressing"
    COMPLETE = "complete"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutStatus:
    state: Rollout
    message: str
    replicas: int | None
    updated_replicas: int
    available_replicas: int
    progress_deadline_seconds: int


def rollout_status(deployment: V1Deployment) -> RolloutStatus:
    """Where the rollout stands, by the rules of kubectl's DeploymentStatusViewer."""
    name = deployment.metadata.name
    spec, status = deployment.spec, deployment.status
    replicas = spec.replicas if spec else None
    updated = (status and status.updated_replicas) or 0
    total = (status and status.replicas) or 0
    available = (status and status.available_replicas) or 0
    observed = (status and status.observed_generation) or 0

    def result(state: Rollout, message: str) -> RolloutStatus:
        return RolloutStatus(
            state=state,
            message=message,
            replicas=replicas,
            updated_replicas=updated,
            available_replicas=available,
            progress_deadline_seconds=progress_deadline_seconds(deployment),
        )

    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if (deployment.metadata.generation or 0) > observed:
        return result(Rollout.PROGRESSING, "Waiting for deployment spec update to be observed...")
    progressing = next(
        (c for c in (status and status.conditions) or [] if c.type == "Progressing"), None
    )
    if progressing is not None and progressing.reason == TIMED_OUT_REASON:
        return result(Rollout.FAILED, f'deployment "{name}" exceeded its progress deadline')
    if replicas is not None and updated < replicas:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{updated} out of {replicas} new replicas have been updated...",
        )
    if total > updated:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{total - updated} old replicas are pending termination...",
        )
    if available < updated:
        return result(
            Rollout.PROGRESSING,
            f"{waiting}{available} of {updated} updated replicas are available...",
        )
    return result(Rollout.COMPLETE, f'deployment "{name}" successfully rolled out')
