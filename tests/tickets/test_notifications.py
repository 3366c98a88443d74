"""Notices: recipients of each event, the mails' content, and the signed, retried webhook.

The services' transaction is played by the test: a notify_* call only schedules work for the
commit, which django_capture_on_commit_callbacks(execute=True) stands for. Celery runs the
tasks inline (no broker in tests); a webhook receiver listens on 127.0.0.1.
"""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import connection, transaction

from cratos.celery import app as celery_app
from redeploy.models import RedeployOperation
from redeploy.operations import notify_finished
from tests.factories import (
    ApprovalNodeFactory,
    GroupFactory,
    NoticeProfileFactory,
    RedeployOperationFactory,
    RedeployTargetFactory,
    TicketFactory,
    UserFactory,
    approval_chain,
)
from tests.redeploy.conftest import use_broker
from tests.tickets.conftest import SITE_URL
from tickets import notification_tasks, services
from tickets.models import ApprovalNode, WorkOrder
from tickets.notifications import (
    Event,
    notify_authorization_revoked,
    notify_ticket_decided,
    notify_ticket_submitted,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("notices")]

SECRET = "webhook-secret-for-tests"


class FailingEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages):
        raise ConnectionRefusedError("the mail server is down")


@dataclass
class Receiver:
    """A webhook endpoint: answers with `statuses` in turn (then 200), after `delay` seconds."""

    url: str
    requests: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    delay: float = 0.0

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((self.headers, body))
            time.sleep(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def alice(work_order):
    """The applicant; also an approver, to prove she is never asked to decide her own ticket."""
    return UserFactory(username="alice", groups=["Approvers"])


@pytest.fixture
def webhook(work_order, receiver):
    work_order.webhook_url = receiver.url
    work_order.webhook_secret = SECRET
    work_order.save()
    return receiver


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def html_of(message) -> str:
    return next(content for content, mimetype in message.alternatives if mimetype == "text/html")


def submitted(ticket, commit):
    """Submit `ticket` as its applicant and send what the submit notifies."""
    ticket = services.submit_ticket(ticket=ticket, actor=ticket.applicant)
    with commit(execute=True):
        notify_ticket_submitted(ticket=ticket)
    return ticket


def approved(ticket, approver, commit, **kwargs):
    """`approver` approves the ticket's current node; send what the decision notifies."""
    ticket = services.approve_ticket(ticket=ticket, approver=approver, **kwargs)
    with commit(execute=True):
        notify_ticket_decided(ticket=ticket, approval=ticket.approvals.latest("decided_at"))
    return ticket


# -- submit ----------------------------------------------------------------------------------------


def test_submit_asks_the_eligible_approvers_never_the_applicant(
    alice, bob, dave, web, django_capture_on_commit_callbacks
):
    UserFactory(username="gone", groups=["Approvers"], is_active=False)
    UserFactory(username="outsider")
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert recipients() == ["bob@example.com", "dave@example.com"]
    message = mail.outbox[0]
    assert message.subject == f"Ticket {ticket.ticket_no} waits for your decision (Approval)"
    assert message.from_email == "cratos@example.com"
    assert f"{SITE_URL}/tickets/{ticket.ticket_no}/" in message.body
    assert "| Application Name | Tags |\n| --- | --- |\n| web | team:shop |" in message.body
    assert f"{SITE_URL}/notices/decide/" in message.body
    html = html_of(message)
    assert "<th" in html and ">Application Name</th>" in html
    assert ">team:shop</td>" in html
    assert "alice submitted ticket" in message.body


def test_each_approver_gets_links_signed_for_them_alone(
    alice, bob, dave, web, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    links = {}
    for message in mail.outbox:
        lines = [line for line in message.body.splitlines() if "/notices/decide/" in line]
        assert [line.split(": ")[0] for line in lines] == ["Approve", "Reject"]
        links[message.to[0]] = {line.split(": ")[1] for line in lines}
    assert links["bob@example.com"].isdisjoint(links["dave@example.com"])


def test_user_specified_node_asks_only_the_chosen_approver(
    alice, bob, dave, web, work_order, django_capture_on_commit_callbacks
):
    approval_chain(work_order, (ApprovalNode.Type.USER_SPECIFIED, "Owner", "Approvers"))
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = services.submit_ticket(ticket=ticket, actor=alice, approvers={"Owner": "dave"})

    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_submitted(ticket=ticket)

    assert recipients() == ["dave@example.com"]


def test_cc_members_are_informed_without_decision_links(
    alice, bob, work_order, web, django_capture_on_commit_callbacks
):
    ApprovalNodeFactory(
        work_order=work_order,
        position=9,
        name="Ops",
        node_type=ApprovalNode.Type.CC_TO,
        group=GroupFactory(name="Ops"),
    )
    UserFactory(username="olga", groups=["Ops"])
    alice.groups.add(GroupFactory(name="Ops"))  # the applicant is not told of her own ticket
    bob.groups.add(GroupFactory(name="Ops"))  # asked to decide already: one mail is enough
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert recipients() == ["bob@example.com", "olga@example.com"]
    informed = next(m for m in mail.outbox if m.to == ["olga@example.com"])
    assert informed.subject == f"Ticket {ticket.ticket_no} was submitted"
    assert "/notices/decide/" not in informed.body
    assert "/notices/decide/" not in html_of(informed)
    assert "| web | team:shop |" in informed.body


def test_approvers_without_an_email_address_are_skipped(
    alice, bob, web, django_capture_on_commit_callbacks
):
    UserFactory(username="nomail", email="", groups=["Approvers"])
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert recipients() == ["bob@example.com"]


def test_nothing_is_sent_for_a_change_that_rolls_back(
    alice, bob, web, webhook, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.submit_ticket(ticket=ticket, actor=alice)
        notify_ticket_submitted(ticket=ticket)
        raise RuntimeError("something after the submit failed")

    assert mail.outbox == []
    assert webhook.requests == []


def test_a_notice_waits_for_the_commit(alice, bob, web, django_capture_on_commit_callbacks):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_submitted(ticket=ticket)
        assert mail.outbox == []

    assert recipients() == ["bob@example.com"]


def test_notices_name_the_work_order_and_step_in_the_recipients_language(
    alice, bob, web, django_capture_on_commit_callbacks
):
    NoticeProfileFactory(user=bob, language="zh-hans")
    NoticeProfileFactory(user=alice, language="zh-hans")
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    (request,) = mail.outbox
    assert request.subject == f"工单 {ticket.ticket_no} 等待你审批\uff08审批\uff09"
    assert "你可以审批步骤 审批\uff1a" in request.body and "Approval" not in request.body
    assert "你可以审批步骤 审批\uff1a" in html_of(request)
    mail.outbox.clear()

    approved(ticket, bob, django_capture_on_commit_callbacks)

    (decided,) = mail.outbox
    assert f"bob 已通过工单 {ticket.ticket_no}\uff08步骤 审批\uff09" in decided.body


# -- decisions -------------------------------------------------------------------------------------


def test_final_approval_tells_the_applicant_naming_the_approver(
    alice, bob, dave, web, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    approved(ticket, bob, django_capture_on_commit_callbacks, comment="go ahead")

    assert recipients() == ["alice@example.com"]
    message = mail.outbox[0]
    assert message.subject == f"Ticket {ticket.ticket_no} was approved by bob"
    assert f"bob approved ticket {ticket.ticket_no} (step Approval)" in message.body
    assert "Comment: go ahead" in message.body
    assert "| web | team:shop |" in message.body
    assert f"{SITE_URL}/tickets/{ticket.ticket_no}/" in message.body
    assert "go ahead" in html_of(message)


def test_rejection_tells_the_applicant_who_and_why(
    alice, bob, web, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    ticket = services.reject_ticket(ticket=ticket, approver=bob, reason="not during the sale")

    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_decided(ticket=ticket, approval=ticket.approvals.get())

    assert recipients() == ["alice@example.com"]
    message = mail.outbox[0]
    assert message.subject == f"Ticket {ticket.ticket_no} was rejected by bob"
    assert (
        f"bob rejected ticket {ticket.ticket_no} at step Approval: not during the sale"
        in message.body
    )


@pytest.fixture
def two_step_work_order(work_order, bob):
    """Step "Lead" (group Leads: bob, lena), then step "Approval" (group Approvers)."""
    approval_chain(
        work_order,
        (ApprovalNode.Type.OR_BATCH, "Lead", "Leads"),
        (ApprovalNode.Type.OR_BATCH, "Approval", "Approvers"),
    )
    bob.groups.add(GroupFactory(name="Leads"))
    UserFactory(username="lena", groups=["Leads"])
    return work_order


def test_approving_a_step_asks_the_next_steps_approvers(
    alice, bob, dave, web, two_step_work_order, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(
        applicant=alice, work_order=two_step_work_order, applications=[web], submitted=True
    )

    approved(ticket, bob, django_capture_on_commit_callbacks)

    # bob decided step Lead, so the rule leaves step Approval to dave; alice never decides.
    assert recipients() == ["alice@example.com", "dave@example.com"]
    to_alice = next(m for m in mail.outbox if m.to == ["alice@example.com"])
    assert to_alice.subject == f"Step Lead of ticket {ticket.ticket_no} was approved by bob"
    assert "it now waits for a decision on step Approval" in to_alice.body
    assert "/notices/decide/" not in to_alice.body
    to_dave = next(m for m in mail.outbox if m.to == ["dave@example.com"])
    assert to_dave.subject == f"Ticket {ticket.ticket_no} waits for your decision (Approval)"
    assert "/notices/decide/" in to_dave.body


def test_no_request_for_a_step_decided_before_the_notice_went_out(
    alice, bob, dave, web, two_step_work_order, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(
        applicant=alice, work_order=two_step_work_order, applications=[web], submitted=True
    )
    ticket = services.approve_ticket(ticket=ticket, approver=bob)
    lead_approval = ticket.approvals.get()
    services.approve_ticket(ticket=ticket, approver=dave)

    with django_capture_on_commit_callbacks(execute=True):
        notify_ticket_decided(ticket=ticket, approval=lead_approval)

    assert recipients() == ["alice@example.com"]


# -- revocation and redeploy results ---------------------------------------------------------------


def test_revocation_tells_the_applicant(alice, bob, web, django_capture_on_commit_callbacks):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    entry = ticket.entries.get()

    with django_capture_on_commit_callbacks(execute=True):
        notify_authorization_revoked(entry=entry, actor=bob, reason="wrong cluster")

    assert recipients() == ["alice@example.com"]
    message = mail.outbox[0]
    assert message.subject == "Your authorization to redeploy web was revoked"
    assert (
        f"bob revoked your authorization to redeploy web (ticket {ticket.ticket_no}): "
        "wrong cluster" in message.body
    )


def finished_operation(ticket, *, succeeded: bool) -> RedeployOperation:
    state = RedeployOperation.State.SUCCEEDED if succeeded else RedeployOperation.State.FAILED
    operation = RedeployOperationFactory(
        requested_by=ticket.applicant,
        application_name="web",
        namespace="shop",
        deployment_name="web",
        ticket=ticket,
        state=state,
        message="Rollout complete" if succeeded else "Deployment does not exist",
    )
    RedeployTargetFactory(
        operation=operation,
        ticket=ticket,
        cluster_name="prod",
        failed=not succeeded,
        message=operation.message,
    )
    return operation


def test_redeploy_result_goes_to_the_applicant_and_the_approvers(
    alice, bob, dave, web, two_step_work_order, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(
        applicant=alice, work_order=two_step_work_order, applications=[web], submitted=True
    )
    services.approve_ticket(ticket=ticket, approver=bob)
    services.approve_ticket(ticket=ticket, approver=dave)
    operation = finished_operation(ticket, succeeded=True)

    with django_capture_on_commit_callbacks(execute=True):
        notify_finished(operation=operation)

    assert recipients() == ["alice@example.com", "bob@example.com", "dave@example.com"]
    message = mail.outbox[0]
    assert message.subject == "Redeploy of web succeeded"
    assert (
        "| Instance Name | Namespace | Deployment Name | Redeploy Operation Time | Result |"
        in message.body
    )
    assert "| prod | shop | web |" in message.body
    assert "Succeeded: Rollout complete |" in message.body
    assert "| web | team:shop |" in message.body
    assert ">Redeploy Operation Time</th>" in html_of(message)


def test_failed_redeploy_names_the_error(alice, bob, web, django_capture_on_commit_callbacks):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    operation = finished_operation(ticket, succeeded=False)

    with django_capture_on_commit_callbacks(execute=True):
        notify_finished(operation=operation)

    assert recipients() == ["alice@example.com", "bob@example.com"]
    assert mail.outbox[0].subject == "Redeploy of web failed"
    assert "failed: Deployment does not exist" in mail.outbox[0].body


def test_a_redeploy_without_a_ticket_notifies_nobody(alice, django_capture_on_commit_callbacks):
    operation = RedeployOperationFactory(
        requested_by=alice, state=RedeployOperation.State.FAILED, message="Unauthorized access"
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify_finished(operation=operation)

    assert callbacks == []
    assert mail.outbox == []


# -- webhook ---------------------------------------------------------------------------------------


def test_webhook_body_is_signed_with_the_work_orders_secret(
    alice, bob, web, webhook, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    [(headers, raw)] = webhook.requests
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Cratos-Signature"] == f"sha256={expected}"
    assert headers["X-Cratos-Event"] == Event.TICKET_SUBMITTED
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Cratos-Delivery"]
    body = json.loads(raw)
    assert body["event"] == "ticket.submitted"
    assert body["ticketNo"] == ticket.ticket_no
    assert body["state"] == "IN_APPROVAL"
    assert body["url"] == f"{SITE_URL}/tickets/{ticket.ticket_no}/"
    assert body["applicant"] == "alice"
    assert body["applications"] == ["web"]
    assert (
        body["entriesMarkdown"] == "| Application Name | Tags |\n| --- | --- |\n| web | team:shop |"
    )
    assert body["node"] == "Approval"
    assert body["approvers"] == ["bob"]
    assert body["text"].startswith(f"alice submitted ticket {ticket.ticket_no} (web)")
    assert body["text"].endswith(body["url"])
    # The secret signs; it never travels.
    assert SECRET not in raw.decode()


def test_webhook_signature_does_not_verify_with_another_secret(
    alice, bob, web, webhook, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    [(headers, raw)] = webhook.requests
    forged = hmac.new(b"another-secret", raw, hashlib.sha256).hexdigest()
    assert headers["X-Cratos-Signature"] != f"sha256={forged}"
    tampered = raw.replace(b'"alice"', b'"mallory"')
    resigned = hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    assert headers["X-Cratos-Signature"] != f"sha256={resigned}"


def test_every_event_reaches_the_webhook(
    alice, bob, web, webhook, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])
    ticket = submitted(ticket, django_capture_on_commit_callbacks)
    ticket = approved(ticket, bob, django_capture_on_commit_callbacks, comment="ok")
    with django_capture_on_commit_callbacks(execute=True):
        notify_authorization_revoked(entry=ticket.entries.get(), actor=bob, reason="wrong")
        notify_finished(operation=finished_operation(ticket, succeeded=True))

    events = [body["event"] for body in webhook.bodies()]
    assert events == [
        "ticket.submitted",
        "ticket.approved",
        "authorization.revoked",
        "redeploy.finished",
    ]
    decided, revoked, finished = webhook.bodies()[1:]
    assert (decided["approver"], decided["decision"], decided["comment"]) == (
        "bob",
        "APPROVE",
        "ok",
    )
    assert decided["nextNode"] is None
    assert decided["state"] == "APPROVED"
    assert (revoked["application"], revoked["actor"], revoked["revokeReason"]) == (
        "web",
        "bob",
        "wrong",
    )
    assert finished["success"] is True
    assert finished["targets"][0]["cluster"] == "prod"


def test_webhook_is_retried_after_a_500_then_delivered(
    alice, bob, web, webhook, django_capture_on_commit_callbacks
):
    webhook.statuses = [500]
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(webhook.requests) == 2
    first, second = (headers for headers, _ in webhook.requests)
    assert first["X-Cratos-Delivery"] == second["X-Cratos-Delivery"]
    assert webhook.requests[0][1] == webhook.requests[1][1]


def test_webhook_gives_up_after_three_retries(
    alice, bob, web, webhook, django_capture_on_commit_callbacks, caplog
):
    webhook.statuses = [503] * 10
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(webhook.requests) == 4
    assert "not delivered (attempt 4)" in caplog.text
    assert recipients() == ["bob@example.com"]


def test_webhook_is_not_retried_after_a_400(
    alice, bob, web, webhook, django_capture_on_commit_callbacks, caplog
):
    webhook.statuses = [400]
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(webhook.requests) == 1
    assert "answered 400" in caplog.text


def test_webhook_that_hangs_past_the_timeout_is_retried(
    alice, bob, web, webhook, django_capture_on_commit_callbacks, settings
):
    settings.NOTICE_WEBHOOK_TIMEOUT = 0.2
    webhook.delay = 0.5
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(webhook.requests) == 4


def test_work_order_without_a_webhook_posts_nothing(
    alice, bob, web, receiver, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web])

    submitted(ticket, django_capture_on_commit_callbacks)

    assert receiver.requests == []
    assert recipients() == ["bob@example.com"]


def test_webhook_secret_is_encrypted_at_rest(work_order, webhook):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT webhook_secret FROM tickets_workorder WHERE id = %s", [work_order.pk]
        )
        [stored] = cursor.fetchone()
    assert stored and SECRET not in stored
    assert WorkOrder.objects.get(pk=work_order.pk).webhook_secret == SECRET


# -- failures never break the flow -----------------------------------------------------------------


def test_failing_mail_and_webhook_are_logged_not_raised(
    alice, bob, dave, web, work_order, django_capture_on_commit_callbacks, settings, caplog
):
    settings.EMAIL_BACKEND = f"{__name__}.FailingEmailBackend"
    work_order.webhook_url = "http://127.0.0.1:1/hook"  # nothing listens on port 1
    work_order.webhook_secret = SECRET
    work_order.save()
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)

    # What the commit of submit_ticket runs; it must return normally.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        notify_ticket_submitted(ticket=ticket)

    assert len(callbacks) == 1
    assert caplog.text.count("Cannot send notice") == 2  # bob and dave: one failure each
    assert "not delivered (attempt 4)" in caplog.text


def test_unreachable_broker_is_logged_not_raised(
    alice, bob, web, django_capture_on_commit_callbacks, caplog
):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    use_broker("redis://127.0.0.1:1/0")
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            notify_ticket_decided(ticket=ticket, approval=ticket.approvals.get())
    finally:
        use_broker(None)

    assert len(callbacks) == 1
    assert "Cannot queue notice tickets.send_ticket_decided" in caplog.text
    assert mail.outbox == []


def test_notices_have_a_queue_of_their_own_that_a_worker_consumes_by_default():
    """A burst of notices (a batch of redeploys sends one each) never queues ahead of a
    redeploy, and a worker started without -Q still delivers them."""
    route = celery_app.amqp.router.route
    for task in (
        notification_tasks.send_ticket_submitted,
        notification_tasks.send_operation_finished,
        notification_tasks.post_webhook,
    ):
        assert route({}, task.name)["queue"].name == "notices"
    # Chat robots' deliveries wait apart too: a robot's rate limit holds back no mail.
    assert route({}, notification_tasks.deliver_notice.name)["queue"].name == "notice_channels"
    assert route({}, "redeploy.run_redeploys")["queue"].name == "celery"
    queues = {queue.name for queue in celery_app.amqp.queues.values()}
    assert queues == {"celery", "notices", "notice_channels", "rollouts"}
