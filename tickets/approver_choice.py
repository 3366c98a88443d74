"""The applicant's choice of approvers, checked when a ticket is submitted."""

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from cratos.exceptions import ValidationFailed

from .models import ApprovalNode, Ticket, TicketNodeApprover


def chosen_approvers(
    *, ticket: Ticket, nodes: list[ApprovalNode], approvers: Mapping[str, object]
) -> list[TicketNodeApprover]:
    """The applicant's pick for each USER_SPECIFIED node, by node name (a user or a username)."""
    picking = {
        node.name: node for node in nodes if node.node_type == ApprovalNode.Type.USER_SPECIFIED
    }
    unknown = sorted(set(approvers) - set(picking))
    if unknown:
        raise ValidationFailed(
            format_lazy(
                _("Work order {work_order} has no node to choose an approver for: {nodes}."),
                work_order=ticket.work_order.key,
                nodes=", ".join(unknown),
            )
        )
    users = get_user_model().objects
    chosen = []
    for name, node in picking.items():
        pick = approvers.get(name)
        if not pick:
            raise ValidationFailed(
                format_lazy(_("Choose the approver for node {node}."), node=node.display_name)
            )
        user = pick if hasattr(pick, "pk") else users.filter(username=pick).first()
        if user is not None and user.pk == ticket.applicant_id:
            raise ValidationFailed(_("You cannot choose yourself as an approver."))
        if user is None or not user.is_active or not user.groups.filter(pk=node.group_id).exists():
            raise ValidationFailed(
                format_lazy(
                    _("{user} is not a candidate approver of node {node}."),
                    user=pick,
                    node=node.display_name,
                )
            )
        if any(c.user.pk == user.pk for c in chosen):
            raise ValidationFailed(
                format_lazy(
                    _("Choose a different approver for each node ({user} twice)."), user=pick
                )
            )
        chosen.append(TicketNodeApprover(ticket=ticket, node=node, user=user))
    return chosen
