"""The notice tasks' names and the one way to queue them: after the commit, never raising.

tickets.notification_tasks registers the tasks under these names; the modules that decide what
to send (tickets.notifications, tickets.channels) only name them, as cratos.queue asks.
"""

import logging

from cratos import queue

logger = logging.getLogger(__name__)

# A notice is not worth holding a request for: publish with a short retry, then log and go on.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}

SEND_TICKET_SUBMITTED = "tickets.send_ticket_submitted"
SEND_TICKET_DECIDED = "tickets.send_ticket_decided"
SEND_AUTHORIZATION_REVOKED = "tickets.send_authorization_revoked"
SEND_AUTHORIZATION_EXPIRING = "tickets.send_authorization_expiring"
SEND_OPERATION_FINISHED = "tickets.send_operation_finished"
POST_WEBHOOK = "tickets.post_webhook"
DELIVER_NOTICE = "tickets.deliver_notice"
WARN_EXPIRING_AUTHORIZATIONS = "tickets.warn_expiring_authorizations"


def enqueue(task_name: str, **kwargs) -> None:
    """Queue a notice task (tickets.notification_tasks); a failure is logged, never raised."""
    try:
        queue.enqueue(task_name, kwargs=kwargs, retry=True, retry_policy=PUBLISH_RETRY_POLICY)
    except Exception:
        logger.exception("Cannot queue notice %s %s", task_name, kwargs)
