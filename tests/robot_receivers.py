"""Local stand-ins for the chat platforms' robot endpoints, one per platform, each a small
threaded HTTP server that keeps that platform's documented contract:

- DingTalk custom robot: POST /robot/send?access_token=T[&timestamp=ms&sign=S]; the sign is
  Base64(HmacSHA256(secret, "{timestamp}\\n{secret}")) and the timestamp within an hour;
  answers HTTP 200 with {"errcode": 0, "errmsg": "ok"} or an errcode (310000 sign not match,
  300001 token is not exist, 40035 missing parameter, 130101 send too fast).
- Feishu/Lark custom bot: POST /open-apis/bot/v2/hook/{token} with "timestamp" (seconds) and
  "sign" = Base64(HmacSHA256(key="{timestamp}\\n{secret}", msg="")) in the body; answers
  {"code": 0, "msg": "success"} or a code (19021 sign match fail or stale timestamp, 19001
  invalid token, 9499 Bad Request, 11232 frequency limited).
- WeCom group robot: POST /cgi-bin/webhook/send?key=K, no signature; {"errcode": 0} or 93000
  invalid webhook url, 40058 invalid content (markdown over 4096 bytes), 45009 freq limit.
- Slack incoming webhook: POST /services/T/B/X; 200 "ok", or 400 "no_text"/"invalid_payload"/
  "invalid_blocks", 404 "no_service", 429 "rate_limited" with Retry-After.

`script` holds answers to give before the contract's own, to stand for an outage (5xx) or a
rate limit; `accepted` holds the messages the platform would have shown.
"""

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SIGNATURE_WINDOW_SECONDS = 3600


@dataclass
class Answer:
    status: int
    body: object  # a dict goes as JSON, a str as text
    headers: dict = field(default_factory=dict)


@dataclass
class Robot:
    """One robot of one platform: its address, secret, and what it received."""

    token: str
    secret: str = ""
    script: list[Answer] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)
    requests: int = 0
    url: str = ""

    def accepted_texts(self) -> list[str]:
        raise NotImplementedError


def _sign(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def _fresh(timestamp: str, *, unit: int) -> bool:
    try:
        return abs(time.time() - int(timestamp) / unit) <= SIGNATURE_WINDOW_SECONDS
    except ValueError:
        return False


class DingTalkRobot(Robot):
    RATE_LIMITED = Answer(200, {"errcode": 130101, "errmsg": "send too fast, exceed 20 times"})

    def path(self) -> str:
        return f"/robot/send?access_token={self.token}"

    def answer(self, path: str, query: dict, body: dict) -> Answer:
        if path != "/robot/send" or query.get("access_token") != [self.token]:
            return Answer(200, {"errcode": 300001, "errmsg": "token is not exist"})
        if self.secret:
            timestamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
            expected = _sign(self.secret.encode(), f"{timestamp}\n{self.secret}".encode())
            if not _fresh(timestamp, unit=1000) or not hmac.compare_digest(sign, expected):
                return Answer(200, {"errcode": 310000, "errmsg": "sign not match"})
        kind = body.get("msgtype")
        if kind not in ("text", "link", "markdown", "actionCard", "feedCard") or not body.get(kind):
            return Answer(200, {"errcode": 40035, "errmsg": "missing parameter json"})
        if kind == "markdown" and not (
            body["markdown"].get("title") and body["markdown"].get("text")
        ):
            return Answer(200, {"errcode": 40035, "errmsg": "missing parameter markdown"})
        self.accepted.append(body)
        return Answer(200, {"errcode": 0, "errmsg": "ok"})

    def accepted_texts(self) -> list[str]:
        return [body["markdown"]["text"] for body in self.accepted]


class FeishuRobot(Robot):
    RATE_LIMITED = Answer(200, {"code": 11232, "msg": "frequency limited psm"})

    def path(self) -> str:
        return f"/open-apis/bot/v2/hook/{self.token}"

    def answer(self, path: str, query: dict, body: dict) -> Answer:
        if path != self.path():
            return Answer(
                200, {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
            )
        if self.secret:
            timestamp, sign = str(body.get("timestamp", "")), body.get("sign", "")
            expected = _sign(f"{timestamp}\n{self.secret}".encode(), b"")
            if not _fresh(timestamp, unit=1) or not hmac.compare_digest(sign, expected):
                return Answer(
                    200,
                    {
                        "code": 19021,
                        "msg": "sign match fail or timestamp is not within one hour from "
                        "current time",
                    },
                )
        kind = body.get("msg_type")
        payload = body.get("card") if kind == "interactive" else body.get("content")
        if kind not in ("text", "post", "image", "share_chat", "interactive") or not payload:
            return Answer(200, {"code": 9499, "msg": "Bad Request"})
        self.accepted.append(body)
        return Answer(200, {"code": 0, "msg": "success", "data": {}})

    def accepted_texts(self) -> list[str]:
        return [body["card"]["elements"][0]["content"] for body in self.accepted]


class WeComRobot(Robot):
    RATE_LIMITED = Answer(200, {"errcode": 45009, "errmsg": "api freq out of limit"})

    def path(self) -> str:
        return f"/cgi-bin/webhook/send?key={self.token}"

    def answer(self, path: str, query: dict, body: dict) -> Answer:
        if path != "/cgi-bin/webhook/send" or query.get("key") != [self.token]:
            return Answer(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        kind = body.get("msgtype")
        content = (body.get(kind) or {}).get("content", "")
        if kind not in ("text", "markdown") or not content:
            return Answer(200, {"errcode": 40008, "errmsg": "invalid message type"})
        if len(content.encode()) > 4096:
            return Answer(200, {"errcode": 40058, "errmsg": "markdown.content exceed max length"})
        self.accepted.append(body)
        return Answer(200, {"errcode": 0, "errmsg": "ok"})

    def accepted_texts(self) -> list[str]:
        return [body["markdown"]["content"] for body in self.accepted]


class SlackRobot(Robot):
    RATE_LIMITED = Answer(429, "rate_limited", {"Retry-After": "1"})

    def path(self) -> str:
        return f"/services/T0CRATOS/B0NOTICE/{self.token}"

    def answer(self, path: str, query: dict, body: dict) -> Answer:
        if path != self.path():
            return Answer(404, "no_service")
        if not body.get("text") and not body.get("blocks"):
            return Answer(400, "no_text")
        for block in body.get("blocks", []):
            if block.get("type") == "section" and len(block["text"]["text"]) > 3000:
                return Answer(400, "invalid_blocks")
        self.accepted.append(body)
        return Answer(200, "ok")

    def accepted_texts(self) -> list[str]:
        return [body["blocks"][1]["text"]["text"] for body in self.accepted]


class RobotServer:
    """One server for the robots of a test; each robot gets its own address on it."""

    def __init__(self):
        self.robots: list[Robot] = []
        robots = self.robots

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                split = urlsplit(self.path)
                query = parse_qs(split.query)
                robot = next((r for r in robots if urlsplit(r.path()).path == split.path), None)
                if robot is None:
                    return self._reply(Answer(404, "not found"))
                robot.requests += 1
                if robot.script:
                    return self._reply(robot.script.pop(0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._reply(Answer(400, "invalid_payload"))
                self._reply(robot.answer(split.path, query, body))

            def _reply(self, answer: Answer):
                data = answer.body
                raw = json.dumps(data).encode() if isinstance(data, dict) else str(data).encode()
                self.send_response(answer.status)
                self.send_header(
                    "Content-Type",
                    "application/json" if isinstance(data, dict) else "text/plain",
                )
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def add(self, robot: Robot) -> Robot:
        robot.url = self.base + robot.path()
        self.robots.append(robot)
        return robot

    def close(self):
        self.server.shutdown()
        self.server.server_close()
