"""A decision taken through a signed one-use link (sent in a notice): the link is spent in the
decision's own transaction, then the usual approve/reject services decide."""

from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy as _

from cratos.exceptions import InvalidTransition, PermissionRefused

from .models import DecisionLinkUse, Ticket
from .notice_links import DecisionLink
from .services import approve_ticket, reject_ticket


def decide_by_link(*, link: DecisionLink, user, text: str = "", request_ip: str = "") -> Ticket:
    """Approve (`text`: optional comment) or reject (`text`: the reason) as the link says,
    through the services, on the link's node only.

    The use is recorded in the decision's transaction: a refused decision leaves the link
    usable, and of two requests racing with one link the second waits on the nonce and is
    refused. Nothing follows the decision in that transaction, so its Redis writes stay last.
    """
    if user.pk != link.user_id:
        raise PermissionRefused(
            _("This decision link was sent to another approver; sign in as that approver.")
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                DecisionLinkUse.objects.create(
                    nonce=link.nonce,
                    ticket=link.ticket,
                    node=link.node,
                    user=user,
                    decision=link.decision,
                )
        except IntegrityError:
            raise InvalidTransition(_("This decision link was already used.")) from None
        if link.rejects:
            return reject_ticket(
                ticket=link.ticket,
                approver=user,
                reason=text,
                node=link.node,
                request_ip=request_ip,
            )
        return approve_ticket(
            ticket=link.ticket, approver=user, comment=text, node=link.node, request_ip=request_ip
        )
