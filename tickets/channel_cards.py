"""A chat card for each robot: the notice as a short markdown message in the robot's dialect
(DingTalk, Feishu/Lark and WeCom markdown, Slack mrkdwn) and in its reader's language."""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.translation import gettext as _

from .channel_robots import RobotMessage
from .models import NoticeChannel, NoticeProfile, Ticket
from .selectors import entries_table

Medium = NoticeChannel.Medium

# How each robot @-mentions a user by chat id (DingTalk also lists them in `at.atUserIds`).
MENTION = {
    Medium.DINGTALK: "@{}",
    Medium.FEISHU: "<at id={}></at>",
    Medium.WECOM: "<@{}>",
    Medium.SLACK: "<@{}>",
}
# Slack's mrkdwn differs from the others' markdown. Feishu and Slack show the title in a header
# of their own; DingTalk and WeCom show only the text.
BOLD = {Medium.SLACK: "*{}*"}
LINK = {Medium.SLACK: "<{url}|{text}>"}
# The markdown robots know no escaping that all of them honour: link and tag brackets in what
# users typed become their full-width look-alikes.
MARKUP_LOOKALIKES = str.maketrans("[]<>", "\uff3b\uff3d\uff1c\uff1e")
HEADING = {Medium.DINGTALK: "#### {}", Medium.WECOM: "### {}", Medium.FEISHU: "", Medium.SLACK: ""}


@dataclass(frozen=True)
class Decision:
    """An approver's signed one-use approve/reject links (tickets.notifications)."""

    user: object
    approve_url: str
    reject_url: str


@dataclass(frozen=True)
class CardNotice:
    """One event as the chat channels tell it. `words` gives (title, summary) in the active
    language; `recipients` are the users it is for (mentioned); `key` is the same for every
    run of the same event, so each channel posts it once."""

    key: str
    event: str
    ticket: Ticket
    recipients: list
    words: Callable[[], tuple[str, str]]
    ticket_url: str
    decisions: list[Decision] = field(default_factory=list)
    records: tuple[str, list] | None = None  # what an operation did: title, rows


def profiles_of(users: list) -> dict[int, NoticeProfile]:
    return {p.user_id: p for p in NoticeProfile.objects.filter(user__in=[u.pk for u in users])}


def card_language(*, users: list, fallback: str) -> str:
    """The recipients' language when they chose one and agree; else `fallback` (the work
    order's channel's)."""
    chosen = {p.language for p in profiles_of(users).values() if p.language}
    return chosen.pop() if len(chosen) == 1 else fallback or settings.LANGUAGE_CODE


def render_card(*, medium: str, notice: CardNotice) -> RobotMessage:
    """The card in the active language."""
    profiles = profiles_of([*notice.recipients, *(d.user for d in notice.decisions)])

    def chat_id(user) -> str:
        profile = profiles.get(user.pk)
        return profile.chat_id(medium) if profile else ""

    def mention(user) -> str:
        return MENTION[medium].format(chat_id(user)) if chat_id(user) else user.get_username()

    bold, link = BOLD.get(medium, "**{}**"), LINK.get(medium, "[{text}]({url})")

    def plain(text: str) -> str:
        return _plain(medium, text)

    title, summary = notice.words()
    paragraphs = [HEADING.get(medium, "{}").format(plain(title)), plain(summary)]
    if notice.ticket.reason:
        paragraphs.append(f"{bold.format(_('Reason'))}: {plain(notice.ticket.reason)}")
    _headers, rows = entries_table(ticket=notice.ticket)
    paragraphs.append(bold.format(_("Applications")) + "\n" + _bullets(rows, plain))
    if notice.records:
        title_of_records, record_rows = notice.records
        paragraphs.append(bold.format(title_of_records) + "\n" + _bullets(record_rows, plain))
    for decision in notice.decisions:
        approve = link.format(text=_("Approve"), url=decision.approve_url)
        reject = link.format(text=_("Reject"), url=decision.reject_url)
        paragraphs.append(f"{mention(decision.user)}: {approve} · {reject}")
    if notice.decisions:
        paragraphs.append(
            _(
                "Each link opens a page where you confirm. It works once, only for you, and "
                "only while the ticket waits on this step."
            )
        )
    open_ticket = _("Open ticket %(no)s") % {"no": notice.ticket.ticket_no}
    paragraphs.append(link.format(text=open_ticket, url=notice.ticket_url))
    if notice.recipients:
        paragraphs.append(" ".join(mention(user) for user in notice.recipients))
    mentioned = [*notice.recipients, *(d.user for d in notice.decisions)]
    return RobotMessage(
        title=title,
        text="\n\n".join(p for p in paragraphs if p),
        mentions=sorted({chat_id(user) for user in mentioned if chat_id(user)}),
    )


def _plain(medium: str, text: str) -> str:
    """`text` (a reason, a comment, a name) on one line, shown as typed: never a link, a
    mention or a tag that the card did not put there itself."""
    text = " ".join(str(text).split())
    if medium == Medium.SLACK:  # Slack's own escaping
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.translate(MARKUP_LOOKALIKES)


def _bullets(rows: list, plain: Callable[[str], str]) -> str:
    """A table's rows as a list: the first cell, the others in brackets."""
    lines = []
    for row in rows:
        first, *rest = [plain(cell) for cell in row]
        details = ", ".join(cell for cell in rest if cell)
        lines.append(f"- {first} ({details})" if details else f"- {first}")
    return "\n".join(lines)
