"""Each robot's contract, spoken to a local receiver that keeps it (tests/robot_receivers.py):
signed where the platform signs, refused as the platform refuses, and every failure told
apart: worth another try (no answer, 5xx, rate limit) or not (a wrong secret or token)."""

import json
import time
import urllib.parse
import urllib.request

import pytest

from tests.robot_receivers import (
    Answer,
    DingTalkRobot,
    FeishuRobot,
    SlackRobot,
    WeComRobot,
)
from tickets.channel_robots import RobotMessage, dingtalk_signature, feishu_signature, send
from tickets.models import NoticeChannel
from tickets.webhooks import WebhookError

Medium = NoticeChannel.Medium
MESSAGE = RobotMessage(title="Ticket 1 was submitted", text="**hello** @u1", mentions=["u1"])
SECRET = "SECa1b2c3d4e5f6"

ROBOTS = {
    Medium.DINGTALK: lambda: DingTalkRobot(token="dtoken", secret=SECRET),
    Medium.FEISHU: lambda: FeishuRobot(token="f-token", secret=SECRET),
    Medium.WECOM: lambda: WeComRobot(token="wkey"),
    Medium.SLACK: lambda: SlackRobot(token="XsecretX"),
}


@pytest.fixture(autouse=True)
def _short_timeout(settings):
    settings.NOTICE_WEBHOOK_TIMEOUT = 0.5


@pytest.mark.parametrize("medium", list(ROBOTS))
def test_each_robot_takes_a_signed_markdown_card(robot_server, medium):
    robot = robot_server.add(ROBOTS[medium]())

    send(medium=medium, url=robot.url, secret=robot.secret, message=MESSAGE)

    assert robot.accepted_texts() == ["**hello** @u1"]


def test_dingtalk_mentions_by_user_id(robot_server):
    robot = robot_server.add(DingTalkRobot(token="dtoken", secret=SECRET))

    send(medium=Medium.DINGTALK, url=robot.url, secret=SECRET, message=MESSAGE)

    (body,) = robot.accepted
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "Ticket 1 was submitted"
    assert body["at"] == {"atUserIds": ["u1"], "isAtAll": False}


def test_feishu_sends_an_interactive_card_with_its_title(robot_server):
    robot = robot_server.add(FeishuRobot(token="f-token", secret=SECRET))

    send(medium=Medium.FEISHU, url=robot.url, secret=SECRET, message=MESSAGE)

    (body,) = robot.accepted
    assert body["card"]["header"]["title"]["content"] == "Ticket 1 was submitted"


@pytest.mark.parametrize(
    ("medium", "code"), [(Medium.DINGTALK, "errcode 310000"), (Medium.FEISHU, "code 19021")]
)
def test_a_wrong_secret_is_refused_and_not_retried(robot_server, medium, code):
    robot = robot_server.add(ROBOTS[medium]())

    with pytest.raises(WebhookError) as refused:
        send(medium=medium, url=robot.url, secret="SECwrong", message=MESSAGE)

    assert code in str(refused.value)
    assert not refused.value.retry
    assert robot.accepted == []


@pytest.mark.parametrize(
    ("medium", "code"), [(Medium.DINGTALK, "errcode 300001"), (Medium.WECOM, "errcode 93000")]
)
def test_an_unknown_token_is_refused_and_not_retried(robot_server, medium, code):
    robot = robot_server.add(ROBOTS[medium]())

    with pytest.raises(WebhookError) as refused:
        send(
            medium=medium,
            url=robot.url.replace("token", "other").replace("wkey", "x"),
            secret=SECRET,
            message=MESSAGE,
        )

    assert code in str(refused.value)
    assert not refused.value.retry


def test_an_unknown_slack_webhook_is_not_retried(robot_server):
    robot = robot_server.add(SlackRobot(token="XsecretX"))

    with pytest.raises(WebhookError) as refused:
        send(medium=Medium.SLACK, url=robot.url + "gone", secret="", message=MESSAGE)

    assert "404" in str(refused.value) and not refused.value.retry
    assert "XsecretX" not in str(refused.value)  # errors never carry the robot's token


@pytest.mark.parametrize("medium", list(ROBOTS))
def test_rate_limit_answers_are_worth_another_try(robot_server, medium):
    robot = robot_server.add(ROBOTS[medium]())
    robot.script.append(robot.RATE_LIMITED)

    with pytest.raises(WebhookError) as limited:
        send(medium=medium, url=robot.url, secret=robot.secret, message=MESSAGE)

    assert limited.value.retry


def test_slack_rate_limit_says_when_to_come_back(robot_server):
    robot = robot_server.add(SlackRobot(token="XsecretX"))
    robot.script.append(Answer(429, "rate_limited", {"Retry-After": "7"}))

    with pytest.raises(WebhookError) as limited:
        send(medium=Medium.SLACK, url=robot.url, secret="", message=MESSAGE)

    assert limited.value.retry_after == 7.0


@pytest.mark.parametrize("medium", list(ROBOTS))
def test_a_5xx_is_worth_another_try(robot_server, medium):
    robot = robot_server.add(ROBOTS[medium]())
    robot.script.append(Answer(503, "unavailable"))

    with pytest.raises(WebhookError) as failed:
        send(medium=medium, url=robot.url, secret=robot.secret, message=MESSAGE)

    assert failed.value.retry


def test_no_answer_is_worth_another_try(robot_server):
    robot = robot_server.add(WeComRobot(token="wkey"))
    url = robot.url
    robot_server.close()

    with pytest.raises(WebhookError) as failed:
        send(medium=Medium.WECOM, url=url, secret="", message=MESSAGE)

    assert failed.value.retry


# -- the receivers keep the platforms' signature windows (proof that the tests above can fail)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=2) as response:
        return json.loads(response.read())


def test_dingtalk_receiver_refuses_a_signature_over_an_hour_old(robot_server):
    robot = robot_server.add(DingTalkRobot(token="dtoken", secret=SECRET))
    stale = str(round((time.time() - 3700) * 1000))
    sign = urllib.parse.quote(dingtalk_signature(secret=SECRET, timestamp=stale))
    body = {"msgtype": "markdown", "markdown": {"title": "t", "text": "x"}}

    answer = _post(f"{robot.url}&timestamp={stale}&sign={sign}", body)

    assert answer["errcode"] == 310000
    fresh = str(round(time.time() * 1000))
    sign = urllib.parse.quote(dingtalk_signature(secret=SECRET, timestamp=fresh))
    assert _post(f"{robot.url}&timestamp={fresh}&sign={sign}", body)["errcode"] == 0


def test_feishu_receiver_refuses_a_signature_over_an_hour_old(robot_server):
    robot = robot_server.add(FeishuRobot(token="f-token", secret=SECRET))
    card = {"msg_type": "interactive", "card": {"elements": [{"tag": "markdown", "content": "x"}]}}
    stale = str(int(time.time()) - 3700)

    answer = _post(
        robot.url,
        {**card, "timestamp": stale, "sign": feishu_signature(secret=SECRET, timestamp=stale)},
    )

    assert answer["code"] == 19021
    fresh = str(int(time.time()))
    signed = {**card, "timestamp": fresh, "sign": feishu_signature(secret=SECRET, timestamp=fresh)}
    assert _post(robot.url, signed)["code"] == 0


def test_wecom_receiver_refuses_markdown_over_4096_bytes(robot_server):
    robot = robot_server.add(WeComRobot(token="wkey"))
    content = "工" * 1400  # 4200 bytes

    answer = _post(robot.url, {"msgtype": "markdown", "markdown": {"content": content}})

    assert answer["errcode"] == 40058


def test_a_long_wecom_card_is_cut_to_what_wecom_takes(robot_server):
    robot = robot_server.add(WeComRobot(token="wkey"))

    send(
        medium=Medium.WECOM,
        url=robot.url,
        secret="",
        message=RobotMessage(title="t", text="工" * 1400, mentions=[]),
    )

    assert robot.accepted_texts() == ["工" * 1365]
