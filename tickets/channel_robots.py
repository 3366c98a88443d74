"""The chat robots' contracts, by hand: DingTalk, Feishu/Lark, WeCom and Slack.

Apprise (2.3) speaks these four, but not as this product needs: each robot's address is fixed
in its code (a channel could not name its own host, nor a test its receiver, without patching
it); its Feishu and Lark plugins cannot sign; its DingTalk plugin takes an answer of HTTP 200
with an `errcode` (a wrong signature, the rate limit) for a success and mentions by phone
number only; and every plugin answers True or False, so a rate limit cannot be told from a
revoked token. What is left is a few lines per robot over tickets.webhooks.post_json.

Each `send_*` raises WebhookError when the robot did not take the message; retry=True when
trying later may help (no answer, 5xx, HTTP 429, the platform's own rate-limit answer).
"""

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from .models import NoticeChannel
from .webhooks import WebhookError, post_json, transient

Medium = NoticeChannel.Medium

# The platforms' "too many messages" answers, given with HTTP 200.
DINGTALK_RATE_LIMITED = 130101  # send too fast, exceed 20 times per minute
FEISHU_RATE_LIMITED = 11232  # frequency limited
WECOM_RATE_LIMITED = 45009  # api freq out of limit
SLACK_SECTION_MAX = 3000  # characters of one mrkdwn section block
WECOM_MARKDOWN_MAX_BYTES = 4096  # more is refused (errcode 40058)


@dataclass(frozen=True)
class RobotMessage:
    title: str
    text: str  # markdown in the robot's own dialect (tickets.channel_cards)
    mentions: list[str]  # chat ids of the users to @-mention


def dingtalk_signature(*, secret: str, timestamp: str) -> str:
    """DingTalk's `sign`: Base64(HmacSHA256(key=secret, "{timestamp ms}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def feishu_signature(*, secret: str, timestamp: str) -> str:
    """Feishu/Lark's `sign`: Base64(HmacSHA256(key="{timestamp s}\\n{secret}", empty))."""
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def send(*, medium: str, url: str, secret: str, message: RobotMessage) -> None:
    {
        Medium.DINGTALK: _send_dingtalk,
        Medium.FEISHU: _send_feishu,
        Medium.WECOM: _send_wecom,
        Medium.SLACK: _send_slack,
    }[medium](url=url, secret=secret, message=message)


def _send_dingtalk(*, url: str, secret: str, message: RobotMessage) -> None:
    timestamp = str(round(time.time() * 1000))
    query = urlencode(
        {"timestamp": timestamp, "sign": dingtalk_signature(secret=secret, timestamp=timestamp)}
    )
    body = {
        "msgtype": "markdown",
        "markdown": {"title": message.title, "text": message.text},
        "at": {"atUserIds": message.mentions, "isAtAll": False},
    }
    answer = _post(url=f"{url}&{query}" if "?" in url else f"{url}?{query}", body=body)
    _check_code(answer, field="errcode", rate_limited=DINGTALK_RATE_LIMITED, message="errmsg")


def _send_feishu(*, url: str, secret: str, message: RobotMessage) -> None:
    timestamp = str(int(time.time()))
    body = {
        "timestamp": timestamp,
        "sign": feishu_signature(secret=secret, timestamp=timestamp),
        "msg_type": "interactive",
        "card": {
            "header": {"title": {"tag": "plain_text", "content": message.title}},
            "elements": [{"tag": "markdown", "content": message.text}],
        },
    }
    _check_code(
        _post(url=url, body=body), field="code", rate_limited=FEISHU_RATE_LIMITED, message="msg"
    )


def _send_wecom(*, url: str, secret: str, message: RobotMessage) -> None:
    # A WeCom robot does not sign: the key in its address is the secret.
    content = message.text.encode()[:WECOM_MARKDOWN_MAX_BYTES].decode(errors="ignore")
    body = {"msgtype": "markdown", "markdown": {"content": content}}
    answer = _post(url=url, body=body)
    _check_code(answer, field="errcode", rate_limited=WECOM_RATE_LIMITED, message="errmsg")


def _send_slack(*, url: str, secret: str, message: RobotMessage) -> None:
    # An incoming webhook does not sign either; the title is the notification's fallback text.
    body = {
        "text": message.title,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": message.text[:SLACK_SECTION_MAX]},
            },
        ],
    }
    _post(url=url, body=body, json_answer=False)


def _post(*, url: str, body: dict, json_answer: bool = True) -> dict:
    raw = json.dumps(body, ensure_ascii=False).encode()
    status, headers, answer = post_json(url=url, body=raw, headers={})
    host = urlsplit(url).netloc  # never the path or query: they hold the robot's token
    text = answer[:500].decode(errors="replace")
    if not 200 <= status < 300:
        raise WebhookError(
            f"{host} answered {status}: {text}",
            retry=transient(status),
            retry_after=_seconds(headers.get("Retry-After")),
        )
    if not json_answer:
        return {}
    try:
        return {"host": host, **json.loads(answer)}
    except ValueError:
        raise WebhookError(f"{host} answered {status} without JSON: {text}", retry=True) from None


def _check_code(answer: dict, *, field: str, rate_limited: int, message: str) -> None:
    code = answer.get(field, answer.get("StatusCode", 0))
    if code:
        raise WebhookError(
            f"{answer['host']} refused the message: {field} {code} {answer.get(message, '')}",
            retry=code == rate_limited,
        )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
