"""Words of notices that another app writes, kept here so each reader gets their language."""

from collections.abc import Callable

from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

# The finished notices' words as the kinds of work order write them (redeploy.operations,
# redeploy.pod_deletion_ends), so that each recipient reads them in their own language; a kind
# not listed here is told in its report's words.
FINISHED_WORDS = {
    ("redeploy.finished", True): (
        gettext_noop("Redeploy of %(application)s succeeded"),
        gettext_noop("The redeploy of %(application)s (%(where)s, ticket %(no)s) succeeded."),
    ),
    ("redeploy.finished", False): (
        gettext_noop("Redeploy of %(application)s failed"),
        gettext_noop(
            "The redeploy of %(application)s (%(where)s, ticket %(no)s) failed: %(message)s"
        ),
    ),
    ("pod_deletion.finished", True): (
        gettext_noop("Pod deletion of %(application)s succeeded"),
        gettext_noop("The pod deletion of %(application)s (%(where)s, ticket %(no)s) succeeded."),
    ),
    ("pod_deletion.finished", False): (
        gettext_noop("Pod deletion of %(application)s failed"),
        gettext_noop(
            "The pod deletion of %(application)s (%(where)s, ticket %(no)s) failed: %(message)s"
        ),
    ),
}


def finished_words(report: dict, *, ticket_no: str) -> Callable[[], tuple[str, str]]:
    fields = report["fields"]
    pair = FINISHED_WORDS.get((report["event"], fields.get("success")))
    if pair is None:
        return lambda: (report["subject"], report["summary"])
    names = {
        "application": fields.get("application", ""),
        "where": f"{fields.get('namespace')}/{fields.get('deploymentName')}",
        "no": ticket_no,
        "message": fields.get("message", ""),
    }
    return lambda: (_(pair[0]) % names, _(pair[1]) % names)
