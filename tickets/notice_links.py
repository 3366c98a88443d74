"""The signed one-use approve/reject links of approval notices (mails and chat cards).

A link is signed for one approver and one node of one ticket; it works once, only while the
ticket still waits on that node, and only for a browser signed in as that approver.
"""

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.translation import gettext as _

from cratos.exceptions import InvalidTransition, NotFound, PermissionRefused

from .models import Approval, ApprovalNode, DecisionLinkUse, Ticket
from .selectors import ticket_queryset

DECISION_LINK_SALT = "tickets.notices.decision-link"

Decision = Approval.Decision


def absolute_url(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def decision_links(*, ticket: Ticket, node: ApprovalNode, user) -> dict:
    # One nonce for the pair: using either link spends both.
    nonce = secrets.token_urlsafe(16)
    return {
        f"{decision.lower()}_url": decision_link_url(
            ticket=ticket, node=node, user=user, decision=decision, nonce=nonce
        )
        for decision in Decision.values
    }


@dataclass(frozen=True)
class DecisionLink:
    """A verified approve/reject link: `ticket` still waits on `node`, for `user_id`."""

    ticket: Ticket
    node: ApprovalNode
    user_id: int
    decision: str
    nonce: str

    @property
    def rejects(self) -> bool:
        return self.decision == Decision.REJECT


def decision_link_url(*, ticket: Ticket, node: ApprovalNode, user, decision: str, nonce: str):
    token = signing.dumps(
        {"t": ticket.pk, "n": node.pk, "u": user.pk, "d": decision, "k": nonce},
        salt=DECISION_LINK_SALT,
    )
    return absolute_url(reverse("notices:decide", args=[token]))


def read_decision_link(*, token: str, user) -> DecisionLink:
    """The link behind `token` if `user` may still use it; refused otherwise: tampered or
    another user's (403), unknown ticket (404), used or expired with its node (409)."""
    try:
        data = signing.loads(token, salt=DECISION_LINK_SALT)
    except signing.BadSignature:
        raise PermissionRefused(_("This decision link is not valid.")) from None
    if data["u"] != user.pk:
        raise PermissionRefused(
            _("This decision link was sent to another approver; sign in as that approver.")
        )
    ticket = ticket_queryset().prefetch_related("entries").filter(pk=data["t"]).first()
    node = ApprovalNode.objects.select_related("group").filter(pk=data["n"]).first()
    if ticket is None or node is None:
        raise NotFound(_("The ticket of this decision link does not exist."))
    if DecisionLinkUse.objects.filter(nonce=data["k"]).exists():
        raise InvalidTransition(_("This decision link was already used."))
    if ticket.state != Ticket.State.IN_APPROVAL or ticket.current_node_id != node.pk:
        raise InvalidTransition(
            _("This decision link has expired: ticket %(no)s no longer waits on step %(node)s.")
            % {"no": ticket.ticket_no, "node": node.display_name}
        )
    return DecisionLink(
        ticket=ticket, node=node, user_id=user.pk, decision=data["d"], nonce=data["k"]
    )
