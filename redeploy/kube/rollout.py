"""Where a Deployment's rollout stands, by the rules of `kubectl rollout status`.

Pure: it reads a Deployment already fetched, as the API's JSON (a watch event's object: turning
it into the client's models would cost more than the rules, between the rollout's end and its
verdict), and makes no call, so the follow-up decides how to read, and these rules are tested
on hand-made objects.
"""

from dataclasses import dataclass
from enum import StrEnum

from .deployments import RestartCheck

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


def rollout_status(deployment: dict) -> RolloutStatus:
    """Where the rollout stands, by the rules of kubectl's DeploymentStatusViewer."""
    meta = deployment.get("metadata") or {}
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    name = meta.get("name")
    replicas = spec.get("replicas")
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    observed = status.get("observedGeneration") or 0

    def result(state: Rollout, message: str) -> RolloutStatus:
        return RolloutStatus(
            state=state,
            message=message,
            replicas=replicas,
            updated_replicas=updated,
            available_replicas=available,
            progress_deadline_seconds=RestartCheck.of(deployment).progress_deadline_seconds,
        )

    waiting = f'Waiting for deployment "{name}" rollout to finish: '
    if (meta.get("generation") or 0) > observed:
        return result(Rollout.PROGRESSING, "Waiting for deployment spec update to be observed...")
    progressing = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None
    )
    if progressing is not None and progressing.get("reason") == TIMED_OUT_REASON:
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
