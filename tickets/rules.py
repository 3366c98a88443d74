"""Who may do what to a ticket. Each rule lives here once; every entry point asks these."""

from .models import ApprovalNode, Ticket


def decision_refusal(*, ticket: Ticket, user) -> str | None:
    """Why `user` may not decide the ticket's current node now; None when they may."""
    if ticket.state != Ticket.State.IN_APPROVAL or ticket.current_node is None:
        return f"Ticket {ticket.ticket_no} is {ticket.state}; there is nothing to decide."
    if user.pk == ticket.applicant_id:
        return "You cannot decide on your own ticket."
    node = ticket.current_node
    if node.node_type == ApprovalNode.Type.USER_SPECIFIED:
        chosen = next((c for c in ticket.chosen_approvers.all() if c.node_id == node.pk), None)
        if chosen is None or chosen.user_id != user.pk:
            return f"Only the approver the applicant chose may decide on node {node.name}."
        return None
    if not user.groups.filter(pk=node.group_id).exists():
        return f"Only members of {node.group.name} may decide on node {node.name}."
    return None


def applicant_refusal(*, ticket: Ticket, user, action: str) -> str | None:
    """Why `user` may not change the ticket as its applicant (edit, submit, cancel)."""
    if user.pk != ticket.applicant_id:
        return f"Only the applicant may {action} ticket {ticket.ticket_no}."
    return None
