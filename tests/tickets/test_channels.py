"""Notice channels end to end: a ticket event becomes one card per chat channel, in its
reader's language, delivered to a local receiver of the platform (tests/robot_receivers.py),
retried on 5xx and rate limits, recorded when it keeps failing, and never posted twice.

Celery runs inline (no broker in tests): a retry runs at once instead of after its backoff.
"""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import connection
from django.urls import reverse

from cratos.audit.models import AuditEvent
from redeploy.operations import notify_finished
from tests.factories import NoticeChannelFactory, NoticeProfileFactory, TicketFactory, UserFactory
from tests.redeploy.conftest import broker, use_broker  # noqa: F401  (a fixture)
from tests.robot_receivers import Answer, DingTalkRobot, FeishuRobot, SlackRobot, WeComRobot
from tests.tickets.test_notifications import approved, finished_operation, submitted
from tickets import notification_tasks, notifications, services
from tickets.models import NoticeChannel, NoticeDelivery, TicketEntry
from tickets.notice_expiry import warn_expiring_authorizations

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("notices")]

Medium = NoticeChannel.Medium
SECRET = "SEC0123456789abcdef"


@pytest.fixture
def dingtalk(robot_server):
    robot = robot_server.add(DingTalkRobot(token="dtalktoken", secret=SECRET))
    NoticeChannelFactory(name="ops-dingtalk", medium=Medium.DINGTALK, robot=robot)
    return robot


@pytest.fixture
def ticket(alice, web):
    return TicketFactory(applicant=alice, applications=[web])


def delivery() -> NoticeDelivery:
    return NoticeDelivery.objects.select_related("channel").get()


# -- what a card says ------------------------------------------------------------------------------


def test_submit_posts_one_card_with_each_approvers_links_and_mention(
    alice, bob, dave, ticket, dingtalk, django_capture_on_commit_callbacks
):
    NoticeProfileFactory(user=bob, dingtalk_user_id="ding-bob")

    submitted(ticket, django_capture_on_commit_callbacks)

    (body,) = dingtalk.accepted
    text = body["markdown"]["text"]
    assert body["at"]["atUserIds"] == ["ding-bob"]
    assert f"Ticket {ticket.ticket_no} was submitted" in text
    assert "@ding-bob: [Approve](https://cratos.example/notices/decide/" in text
    assert "dave: [Approve](https://cratos.example/notices/decide/" in text  # no chat id
    assert text.count("/notices/decide/") == 4
    assert "- web (team:shop)" in text
    assert "**Reason**: Pick up the new configuration" in text
    assert f"[Open ticket {ticket.ticket_no}](https://cratos.example/tickets/" in text
    assert delivery().state == NoticeDelivery.State.SENT
    assert mail.outbox == []  # channels are configured, and none of them is email


def test_the_same_event_handled_twice_posts_once(
    alice, bob, ticket, dingtalk, django_capture_on_commit_callbacks
):
    ticket = submitted(ticket, django_capture_on_commit_callbacks)

    # A redelivered task (acks_late) or a second worker handling the same event.
    notification_tasks.send_ticket_submitted(ticket_id=ticket.pk, node_id=ticket.current_node_id)

    assert len(dingtalk.accepted) == 1
    assert NoticeDelivery.objects.count() == 1


def test_a_delivery_task_run_twice_posts_once(
    alice, bob, ticket, dingtalk, django_capture_on_commit_callbacks
):
    submitted(ticket, django_capture_on_commit_callbacks)

    notification_tasks.deliver_notice(delivery_id=delivery().pk)

    assert len(dingtalk.accepted) == 1


def test_the_card_is_in_the_recipients_language(
    alice, bob, ticket, robot_server, django_capture_on_commit_callbacks
):
    robot = robot_server.add(FeishuRobot(token="fs-token", secret=SECRET))
    NoticeChannelFactory(medium=Medium.FEISHU, robot=robot, language="en")
    NoticeProfileFactory(user=alice, language="zh-hans", feishu_open_id="ou_alice")
    ticket = submitted(ticket, django_capture_on_commit_callbacks)

    approved(ticket, bob, django_capture_on_commit_callbacks)

    submitted_card, approved_card = robot.accepted
    assert "was submitted" in submitted_card["card"]["header"]["title"]["content"]  # to bob
    title = approved_card["card"]["header"]["title"]["content"]
    assert title == f"工单 {ticket.ticket_no} 已由 bob 审批通过"
    text = approved_card["card"]["elements"][0]["content"]
    assert f"[打开工单 {ticket.ticket_no}](" in text
    assert "<at id=ou_alice></at>" in text


def test_without_a_preference_the_card_is_in_the_channels_language(
    alice, bob, ticket, robot_server, django_capture_on_commit_callbacks
):
    robot = robot_server.add(SlackRobot(token="Xslack"))
    NoticeChannelFactory(medium=Medium.SLACK, robot=robot, language="zh-hans")
    NoticeProfileFactory(user=bob, slack_member_id="U0BOB")

    submitted(ticket, django_capture_on_commit_callbacks)

    (body,) = robot.accepted
    assert body["text"] == f"工单 {ticket.ticket_no} 已提交"
    text = body["blocks"][1]["text"]["text"]
    assert "<@U0BOB>: <https://cratos.example/notices/decide/" in text
    assert "|通过> · <" in text and "|驳回>" in text
    assert "*原因*: Pick up the new configuration" in text


def test_wecom_card_mentions_by_userid(
    alice, bob, ticket, robot_server, django_capture_on_commit_callbacks
):
    robot = robot_server.add(WeComRobot(token="wecomkey"))
    NoticeChannelFactory(medium=Medium.WECOM, robot=robot)
    NoticeProfileFactory(user=bob, wecom_user_id="BoB")

    submitted(ticket, django_capture_on_commit_callbacks)

    (text,) = robot.accepted_texts()
    assert text.startswith(f"### Ticket {ticket.ticket_no} was submitted")
    assert "<@BoB>: [Approve](" in text


def test_a_finished_redeploy_card_lists_what_was_done_in_the_readers_language(
    alice, bob, web, dingtalk, django_capture_on_commit_callbacks
):
    NoticeProfileFactory(user=alice, language="zh-hans")
    NoticeProfileFactory(user=bob, language="zh-hans")
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)

    with django_capture_on_commit_callbacks(execute=True):
        notify_finished(operation=finished_operation(ticket, succeeded=False))

    (body,) = dingtalk.accepted
    assert body["markdown"]["title"] == "web 重新部署失败"
    assert "- prod (shop, web," in body["markdown"]["text"]


# -- which channels --------------------------------------------------------------------------------


def test_a_work_orders_own_channels_replace_the_defaults(
    alice, bob, ticket, work_order, robot_server, dingtalk, django_capture_on_commit_callbacks
):
    robot = robot_server.add(WeComRobot(token="teamkey"))
    NoticeChannelFactory(medium=Medium.WECOM, robot=robot, work_order=work_order)

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(robot.accepted) == 1
    assert dingtalk.accepted == []


def test_an_email_channel_keeps_mail_going_in_its_language(
    alice, bob, ticket, dingtalk, django_capture_on_commit_callbacks
):
    NoticeChannelFactory(medium=Medium.EMAIL, language="zh-hans")
    NoticeProfileFactory(user=UserFactory(username="dave", groups=["Approvers"]), language="en")

    submitted(ticket, django_capture_on_commit_callbacks)

    # Each names the step in its own language too.
    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects == {
        "bob@example.com": f"工单 {ticket.ticket_no} 等待你审批\uff08审批\uff09",
        "dave@example.com": f"Ticket {ticket.ticket_no} waits for your decision (Approval)",
    }
    assert len(dingtalk.accepted) == 1


def test_a_disabled_channel_gets_nothing(
    alice, bob, ticket, robot_server, django_capture_on_commit_callbacks
):
    robot = robot_server.add(DingTalkRobot(token="off", secret=SECRET))
    NoticeChannelFactory(robot=robot, enabled=False)

    submitted(ticket, django_capture_on_commit_callbacks)

    assert robot.requests == 0
    assert len(mail.outbox) == 1  # no channel left: email, as before channels


# -- delivery --------------------------------------------------------------------------------------


def test_a_5xx_is_retried_until_delivered(
    alice, bob, ticket, dingtalk, django_capture_on_commit_callbacks
):
    dingtalk.script += [Answer(500, "oops"), Answer(502, "bad gateway")]

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(dingtalk.accepted) == 1
    assert (delivery().state, delivery().attempts) == (NoticeDelivery.State.SENT, 3)
    assert delivery().channel.consecutive_failures == 0


@pytest.mark.parametrize(
    "robot_class", [DingTalkRobot, FeishuRobot, WeComRobot, SlackRobot], ids=lambda c: c.__name__
)
def test_a_rate_limit_answer_is_retried_until_delivered(
    alice, bob, ticket, robot_server, robot_class, django_capture_on_commit_callbacks
):
    robot = robot_server.add(robot_class(token="ratelimited", secret=SECRET))
    medium = {
        DingTalkRobot: Medium.DINGTALK,
        FeishuRobot: Medium.FEISHU,
        WeComRobot: Medium.WECOM,
        SlackRobot: Medium.SLACK,
    }[robot_class]
    NoticeChannelFactory(medium=medium, robot=robot)
    robot.script += [robot.RATE_LIMITED, robot.RATE_LIMITED]

    submitted(ticket, django_capture_on_commit_callbacks)

    assert len(robot.accepted) == 1
    assert robot.requests == 3
    assert delivery().state == NoticeDelivery.State.SENT


def test_a_channel_that_keeps_failing_is_recorded_and_audited_and_the_change_stands(
    alice, bob, ticket, dingtalk, settings, django_capture_on_commit_callbacks
):
    settings.NOTICE_DELIVERY_MAX_RETRIES = 2
    dingtalk.script += [Answer(503, "down for maintenance")] * 5

    ticket = submitted(ticket, django_capture_on_commit_callbacks)

    assert ticket.state == ticket.State.IN_APPROVAL
    assert dingtalk.requests == 3
    failed = delivery()
    assert (failed.state, failed.attempts) == (NoticeDelivery.State.FAILED, 3)
    assert "503: down for maintenance" in failed.last_error
    channel = failed.channel
    assert channel.consecutive_failures == 1
    assert "503" in channel.last_error and channel.last_failed_at is not None
    event = AuditEvent.objects.get(action=AuditEvent.Action.NOTICE_CHANNEL_FAILED)
    assert event.ticket_no == ticket.ticket_no
    assert "ops-dingtalk" in event.message and "dtalktoken" not in event.message


def test_a_refused_card_is_not_retried(
    alice, bob, ticket, robot_server, django_capture_on_commit_callbacks
):
    robot = robot_server.add(DingTalkRobot(token="dtalktoken", secret=SECRET))
    NoticeChannelFactory(robot=robot, secret="SECnotthesecret")

    submitted(ticket, django_capture_on_commit_callbacks)

    assert robot.requests == 1
    assert "errcode 310000 sign not match" in delivery().last_error
    assert delivery().state == NoticeDelivery.State.FAILED


def test_robot_addresses_and_secrets_are_encrypted_at_rest(dingtalk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url, secret FROM tickets_noticechannel")
        ((url, secret),) = cursor.fetchall()
    assert "dtalktoken" not in url and SECRET not in secret
    assert NoticeChannel.objects.get().webhook_url == dingtalk.url


def test_the_admin_shows_a_failing_channels_last_error(admin_client, dingtalk):
    NoticeChannel.objects.update(consecutive_failures=4, last_error="oapi answered 503: busy")

    page = admin_client.get(reverse("admin:tickets_noticechannel_changelist")).content.decode()

    assert "oapi answered 503: busy" in page
    change = admin_client.get(
        reverse("admin:tickets_noticechannel_change", args=[NoticeChannel.objects.get().pk])
    ).content.decode()
    assert "dtalktoken" not in change and SECRET not in change  # write-only


def test_a_robot_is_set_up_in_the_admin_and_needs_its_secret(admin_client):
    add = reverse("admin:tickets_noticechannel_add")
    form = {
        "name": "ops",
        "medium": Medium.DINGTALK,
        "enabled": "on",
        "webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=abc123",
        "secret": "",
        "language": "zh-hans",
        "work_order": "",
    }

    refused = admin_client.post(add, form)

    assert "This robot signs with a secret." in refused.content.decode()
    assert admin_client.post(add, {**form, "secret": SECRET}).status_code == 302
    channel = NoticeChannel.objects.get()
    assert (channel.secret, channel.work_order, channel.language) == (SECRET, None, "zh-hans")


# -- authorization expiring soon ------------------------------------------------------------------


def test_the_requester_is_warned_once_fifteen_minutes_before_expiry(
    alice, bob, web, dingtalk, django_capture_on_commit_callbacks
):
    NoticeProfileFactory(user=alice, dingtalk_user_id="ding-alice")
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    expires = ticket.entries.get().authorization_expires_at

    assert warn_expiring_authorizations(now=expires - timedelta(minutes=16)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert warn_expiring_authorizations(now=expires - timedelta(minutes=14)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert warn_expiring_authorizations(now=expires - timedelta(minutes=5)) == 0

    (body,) = dingtalk.accepted
    assert body["markdown"]["title"] == "Your authorization for web expires soon"
    assert body["at"]["atUserIds"] == ["ding-alice"]
    assert (
        AuditEvent.objects.filter(action=AuditEvent.Action.AUTHORIZATION_EXPIRY_WARNED).count() == 1
    )


def test_no_warning_for_an_authorization_already_used(
    alice, bob, web, dingtalk, django_capture_on_commit_callbacks
):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    entry = ticket.entries.get()
    TicketEntry.objects.filter(pk=entry.pk).update(state=TicketEntry.State.USED)

    with django_capture_on_commit_callbacks(execute=True):
        warned = warn_expiring_authorizations(
            now=entry.authorization_expires_at - timedelta(minutes=10)
        )

    assert warned == 0 and dingtalk.accepted == []


def test_the_expiry_warning_is_mailed_without_channels(
    alice, bob, web, django_capture_on_commit_callbacks
):
    NoticeProfileFactory(user=alice, language="zh-hans")
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    expires = ticket.entries.get().authorization_expires_at

    with django_capture_on_commit_callbacks(execute=True):
        warn_expiring_authorizations(now=expires - timedelta(minutes=10))

    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "你对 web 的授权即将过期"


# -- what users typed stays text ---------------------------------------------------------------


def test_a_reason_cannot_smuggle_links_or_mentions_into_a_card(
    alice, bob, web, robot_server, django_capture_on_commit_callbacks
):
    ding = robot_server.add(DingTalkRobot(token="dtalktoken", secret=SECRET))
    NoticeChannelFactory(medium=Medium.DINGTALK, robot=ding)
    slack = robot_server.add(SlackRobot(token="Xslack"))
    NoticeChannelFactory(medium=Medium.SLACK, robot=slack)
    reason = "urgent [Approve](https://evil.example) <at id=all></at> <!channel>"
    ticket = TicketFactory(applicant=alice, applications=[web], reason=reason)

    submitted(ticket, django_capture_on_commit_callbacks)

    (ding_text,) = ding.accepted_texts()
    assert "](https://evil.example)" not in ding_text and "<at id=all>" not in ding_text
    assert "urgent \uff3bApprove\uff3d(https://evil.example)" in ding_text
    (slack_text,) = slack.accepted_texts()
    assert "&lt;!channel&gt;" in slack_text and "<!channel>" not in slack_text


# -- delivery when the channel or a broker changes things --------------------------------------


def test_a_channel_disabled_before_delivery_gets_nothing(alice, bob, ticket, dingtalk):
    use_broker("redis://127.0.0.1:1/0")  # nothing is delivered meanwhile
    try:
        ticket = services.submit_ticket(ticket=ticket, actor=alice)
        notifications.send_ticket_submitted(ticket_id=ticket.pk, node_id=ticket.current_node_id)
    finally:
        use_broker(None)
    NoticeChannel.objects.update(enabled=False)

    notification_tasks.deliver_notice(delivery_id=delivery().pk)

    assert dingtalk.requests == 0
    assert delivery().state == NoticeDelivery.State.FAILED


@pytest.mark.usefixtures("broker")
def test_with_a_broker_a_rate_limited_card_comes_back_after_retry_after(
    alice, bob, ticket, robot_server
):
    robot = robot_server.add(SlackRobot(token="Xslack"))
    NoticeChannelFactory(medium=Medium.SLACK, robot=robot)
    robot.script.append(Answer(429, "rate_limited", {"Retry-After": "40"}))
    ticket = services.submit_ticket(ticket=ticket, actor=alice)
    notifications.send_ticket_submitted(ticket_id=ticket.pk, node_id=ticket.current_node_id)
    task, kwargs = notification_tasks.deliver_notice, {"delivery_id": delivery().pk}

    task.push_request(retries=0, is_eager=False, called_directly=False, kwargs=kwargs)
    try:
        with pytest.raises(Retry) as retry:
            task.run(**kwargs)
    finally:
        task.pop_request()

    assert retry.value.when == 40  # Slack's Retry-After, longer than the first backoff (15 s)
    assert delivery().state == NoticeDelivery.State.PENDING
    assert "429: rate_limited" in delivery().last_error
