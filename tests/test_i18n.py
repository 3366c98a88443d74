"""Language: pages follow the browser's language (zh-hans or en) or the switcher's choice; the
seed's error messages stay English everywhere, since scripts match on them; the shipped catalogs
are complete and compiled."""

import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import translation
from rest_framework.test import APIClient

from cratos.audit.models import AuditEvent
from cratos.teams.models import Team
from redeploy.exceptions import binding_missing_message
from redeploy.models import RedeployOperation
from tests.factories import (
    ApplicationFactory,
    AuditEventFactory,
    RedeployOperationFactory,
    RedeployWorkOrderFactory,
    TicketFactory,
    UserFactory,
)
from tickets.rules import transition_refusal

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
# What a browser set to Chinese (China) sends.
ZH_CN_BROWSER = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.8"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
UNAUTHORIZED = {"error": "unauthorized_access", "message": "Unauthorized access"}
CATALOG = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
TEMPLATES = Path(settings.BASE_DIR) / "templates"


@pytest.fixture
def work_order(db):
    return RedeployWorkOrderFactory(key="APPLICATION_REDEPLOY")


@pytest.fixture
def alice(work_order):
    user = UserFactory(username="alice")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="redeploy", codename="redeploy_application")
    )
    return user


@pytest.fixture
def bob(work_order):
    return UserFactory(username="bob", groups=["Approvers"])


@pytest.fixture
def web(db):
    return ApplicationFactory(name="web", tags=[{"key": "team", "value": "shop"}])


def text(response) -> str:
    return response.content.decode()


# --- pages follow the browser's language ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [ZH, ZH_CN_BROWSER], ids=["zh-hans", "zh-CN browser"])
def test_login_page_is_chinese_for_a_chinese_browser(client, headers):
    response = client.get(reverse("login"), **headers)

    assert response.status_code == 200
    assert response["Content-Language"] == "zh-hans"
    html = text(response)
    assert '<html lang="zh-hans"' in html
    for words in ("登录", "用户名", "密码", "Cratos 重新部署", "工单审批通过后即可重新部署应用。"):
        assert words in html
    assert "Sign in" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("headers", [EN, {}], ids=["en", "no Accept-Language"])
def test_login_page_is_english_otherwise(client, headers):
    html = text(client.get(reverse("login"), **headers))

    assert '<html lang="en"' in html
    assert "Sign in" in html and "User name" in html
    assert "登录" not in html


def test_ticket_list_is_chinese(client, alice, web):
    TicketFactory(applicant=alice, applications=[web])
    client.force_login(alice)

    html = text(client.get(reverse("tickets:list"), **ZH))

    for words in ("我的工单", "新建工单", "我的授权", "工单号", "工单类型", "状态", "草稿"):
        assert words in html
    assert "My tickets" not in html


def test_empty_ticket_list_is_chinese(client, alice):
    client.force_login(alice)

    html = text(client.get(reverse("tickets:list"), **ZH))

    assert "还没有工单" in html
    assert "提交你的第一个工单" in html


def test_ticket_page_is_chinese(client, alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], submitted=True)
    client.force_login(alice)

    html = text(client.get(reverse("tickets:detail", args=[ticket.ticket_no]), **ZH))

    for words in (
        f"工单 {ticket.ticket_no}",
        "审批中",
        "申请人",
        "等待审批",
        "可审批人",
        "状态历史",
        "审计记录",
        "取消此工单",
    ):
        assert words in html
    # The seed's table headers: word for word in English, translated in Chinese.
    assert '<th scope="col">应用名称</th>' in html
    assert "Waiting for" not in html


def test_audit_page_names_actions_in_chinese(client, db):
    AuditEventFactory(action="ticket.created", outcome="SUCCESS")
    client.force_login(UserFactory(username="carol", groups=["Reviewers"]))

    html = text(client.get(reverse("audit:events"), **ZH))

    assert "审计日志" in html
    assert "工单已创建" in html
    # The raw action stays beside its label, for searches and scripts.
    assert '<code class="muted">ticket.created</code>' in html


# --- the switcher -------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_page_offers_the_language_switcher(client):
    html = text(client.get(reverse("login"), **ZH))

    form = re.search(
        r'<form method="post" action="([^"]+)"[^>]*language-form.*?</form>', html, re.S
    )
    assert form and form.group(1) == reverse("set_language")
    assert '<option value="zh-hans" selected lang="zh-hans">简体中文</option>' in form.group(0)
    assert '<option value="en" lang="en">English</option>' in form.group(0)
    assert 'name="next" value="/accounts/login/"' in form.group(0)


@pytest.mark.django_db
def test_switching_language_wins_over_the_browser(client):
    response = client.post(
        reverse("set_language"), {"language": "zh-hans", "next": reverse("login")}, **EN
    )

    assert response.status_code == 302
    assert response.url == reverse("login")
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert "用户名" in text(client.get(reverse("login"), **EN))

    client.post(reverse("set_language"), {"language": "en", "next": reverse("login")}, **ZH)

    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    assert "User name" in text(client.get(reverse("login"), **ZH))


@pytest.mark.django_db
def test_switching_to_an_unknown_language_changes_nothing(client):
    client.post(reverse("set_language"), {"language": "xx", "next": reverse("login")})

    assert settings.LANGUAGE_COOKIE_NAME not in client.cookies
    assert "User name" in text(client.get(reverse("login")))


def test_signed_in_user_keeps_the_chosen_language_across_pages(client, alice):
    client.force_login(alice)
    client.post(reverse("set_language"), {"language": "zh-hans", "next": "/"})

    assert "我的授权" in text(client.get(reverse("tickets:authorizations")))
    assert "新建重新部署工单" in text(client.get(reverse("tickets:create")))


# --- refusals read in the reader's language; the audit log keeps English --------------------


@pytest.fixture
def shop_owned_web(db):
    application = ApplicationFactory(name="web")
    application.owner_teams.add(Team.objects.create(name="shop"))
    return application


def test_a_refusal_on_a_page_is_chinese_and_audited_in_english(client, alice, shop_owned_web):
    client.force_login(alice)

    response = client.post(
        reverse("tickets:create"),
        {"applications": ["web"], "reason": "Try", "action": "draft"},
        **ZH,
    )

    assert response.status_code == 200
    assert "你不能申请 web" in text(response)
    assert "只有所属团队的成员可以" in text(response)
    (message,) = AuditEvent.objects.filter(action="ticket.refused").values_list(
        "message", flat=True
    )
    assert message.startswith("You may not request web (owned by shop): only members")


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (ZH, "你不能申请 web"),
        ({}, "You may not request web (owned by shop)"),
    ],
    ids=["zh-hans", "no language"],
)
def test_an_api_refusal_follows_accept_language(alice, shop_owned_web, headers, expected):
    api = APIClient()
    api.force_authenticate(alice)

    response = api.post(
        "/api/v1/tickets/",
        {"workOrderKey": "APPLICATION_REDEPLOY", "applications": ["web"], "reason": "Try"},
        format="json",
        **headers,
    )

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert response.json()["message"].startswith(expected)


def test_a_refused_batch_is_chinese_to_its_reader_and_audited_in_english(db):
    api = APIClient()
    api.force_authenticate(UserFactory(username="mallory"))
    batch = [{"applicationName": n, "namespace": "shop", "deploymentName": n} for n in ("a", "b")]

    response = api.post("/api/v1/redeploys/", batch, format="json", **ZH)

    assert response.status_code == 403
    assert response.json()["message"] == "你无权重新部署应用。"
    (message,) = AuditEvent.objects.filter(action="redeploy.refused").values_list(
        "message", flat=True
    )
    assert message == "You may not redeploy applications. (2 redeploys requested)"


def test_a_refusal_is_worded_when_it_is_read(alice, bob, web):
    ticket = TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    refusal = transition_refusal(ticket=ticket, to_state="REJECTED")

    with translation.override("zh-hans"):
        worded = str(refusal.message)
    assert worded.startswith(f"工单 {ticket.ticket_no} 当前为")
    assert "已通过" in worded
    assert worded.endswith("不能驳回。")
    with translation.override("en"):
        assert str(refusal.message) == (
            f"Ticket {ticket.ticket_no} is APPROVED; it cannot be rejected."
        )


# --- the seed's messages stay English -------------------------------------------------------


def test_api_unauthorized_access_stays_english(alice, web):
    api = APIClient()
    api.force_authenticate(alice)

    response = api.post(
        "/api/v1/redeploys/",
        {"applicationName": "web", "namespace": "shop", "deploymentName": "web"},
        format="json",
        **ZH,
    )

    assert response.status_code == 403
    assert response["Content-Language"] == "zh-hans"
    assert response.json() == UNAUTHORIZED


def test_api_operation_keeps_the_seed_failure_message(alice):
    operation = RedeployOperationFactory(
        requested_by=alice,
        state=RedeployOperation.State.FAILED,
        message="Operation failed err: connection refused",
    )
    api = APIClient()
    api.force_authenticate(alice)

    response = api.get(f"/api/v1/redeploys/{operation.pk}/", **ZH)

    assert response.status_code == 200
    assert response.json()["message"] == "Operation failed err: connection refused"


def test_redeploy_page_shows_unauthorized_access_in_english_among_chinese(client, alice, web):
    client.force_login(alice)
    form = {"application": "web", "namespace": "shop", "deployment": "web", "cluster": ""}

    response = client.post(reverse("redeploy:request"), form | {"confirmed": "1"}, **ZH)

    assert response.status_code == 403
    html = text(response)
    assert "<p>Unauthorized access</p>" in html
    assert "重新部署应用" in html


def test_confirmation_page_quotes_the_missing_binding_message_in_english(client, alice, bob, web):
    TicketFactory(applicant=alice, applications=[web], approved_by=bob)
    client.force_login(alice)
    form = {"application": "web", "namespace": "shop", "deployment": "web", "cluster": ""}

    html = text(client.post(reverse("redeploy:request"), form, **ZH))

    assert "确认重新部署" in html
    assert f"<q>{binding_missing_message('web')}</q>" in html
    assert "The deployment=web resource does not exist" in html


# --- the catalogs -------------------------------------------------------------------------


def _unquote(line: str) -> str:
    body = line[line.index('"') + 1 : line.rindex('"')]
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes[m.group(1)], body)


def read_po(path: Path) -> list[dict]:
    """The entries of a .po file: flags, msgctxt, msgid, msgid_plural and msgstr(s)."""
    entries: list[dict] = []
    entry: dict = {}
    field = None
    for raw in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        line = raw.strip()
        if not line or (line.startswith("#") and "msgid" in entry):
            if "msgid" in entry:
                entries.append(entry)
            entry, field = {}, None
            if not line:
                continue
        if line.startswith("#,"):
            entry.setdefault("flags", set()).update(f.strip() for f in line[2:].split(","))
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            entry[field] += _unquote(line)
        else:
            field = line.split(" ", 1)[0]
            entry[field] = _unquote(line)
    return entries


@pytest.fixture(scope="module")
def zh_entries() -> list[dict]:
    return [entry for entry in read_po(CATALOG / "django.po") if entry["msgid"]]


def _translations(entry: dict) -> list[str]:
    return [value for key, value in entry.items() if key.startswith("msgstr")]


def test_zh_hans_catalog_translates_every_message(zh_entries):
    assert len(zh_entries) > 300
    untranslated = [entry["msgid"] for entry in zh_entries if not all(_translations(entry))]
    fuzzy = [entry["msgid"] for entry in zh_entries if "fuzzy" in entry.get("flags", ())]
    assert untranslated == []
    assert fuzzy == []


def test_zh_hans_translations_keep_their_placeholders(zh_entries):
    placeholder = re.compile(r"%\(\w+\)[sd]|%%")
    wrong = []
    for entry in zh_entries:
        expected = sorted(placeholder.findall(entry.get("msgid_plural") or entry["msgid"]))
        for translated in _translations(entry):
            if sorted(placeholder.findall(translated)) != expected:
                wrong.append(entry["msgid"])
    assert wrong == []


def test_zh_hans_translations_keep_their_named_fields(zh_entries):
    # Refusals are built with format_lazy: a translation uses the fields the code passes, where
    # {state_label} (the state's translated name) may stand for the raw {state}.
    field = re.compile(r"{(\w+)}")
    wrong = []
    for entry in zh_entries:
        expected = set(field.findall(entry["msgid"]))
        if "state" in expected:
            expected = expected - {"state"} | {"state_label"}
        if any(set(field.findall(t)) != expected for t in _translations(entry)):
            wrong.append(entry["msgid"])
    assert wrong == []


def test_zh_hans_catalog_has_one_plural_form(zh_entries):
    header = read_po(CATALOG / "django.po")[0]
    assert "Plural-Forms: nplurals=1; plural=0;" in header["msgstr"]
    plurals = [entry for entry in zh_entries if "msgid_plural" in entry]
    assert plurals
    assert all(set(entry) >= {"msgstr[0]"} and "msgstr[1]" not in entry for entry in plurals)


def test_compiled_catalog_matches_the_po_file(zh_entries):
    # The .mo is committed so a clean clone works without gettext; it must be the .po compiled.
    with (CATALOG / "django.mo").open("rb") as compiled:
        catalog = gettext.GNUTranslations(compiled)
    stale = []
    for entry in zh_entries:
        key = entry["msgid"]
        if "msgctxt" in entry:
            key = f"{entry['msgctxt']}\x04{key}"
        if "msgid_plural" in entry:
            if catalog.ngettext(key, entry["msgid_plural"], 1) != entry["msgstr[0]"]:
                stale.append(entry["msgid"])
        elif catalog.gettext(key) != entry["msgstr"]:
            stale.append(entry["msgid"])
    assert stale == []


def test_english_catalog_exists_alongside():
    english = Path(settings.BASE_DIR) / "locale" / "en" / "LC_MESSAGES"
    assert (english / "django.po").is_file() and (english / "django.mo").is_file()


def test_every_translate_tag_of_the_templates_is_in_the_catalog(zh_entries):
    """A string wrapped in a template after the catalog was made shows up here: run
    makemessages, translate it, compilemessages."""
    known = {entry["msgid"] for entry in zh_entries}
    tag = re.compile(r"""{%\s*(?:translate|trans)\s+(["'])(.+?)\1""")
    missing = sorted(
        f"{path.relative_to(TEMPLATES)}: {match.group(2)}"
        for path in TEMPLATES.rglob("*")
        if path.suffix in (".html", ".txt")
        for match in tag.finditer(path.read_text(encoding="utf-8"))
        if match.group(2) not in known
    )
    assert missing == []
