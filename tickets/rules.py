"""Who may do what to a ticket, and which state changes exist. Each rule lives here once.

A rule returns its refusal (a DomainError, not raised) or None. Services raise it; pages, admin
and API ask the same function to show or hide an action, so every entry point uses the same words.
"""

from django.db.models import Exists, OuterRef, Q
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from cratos.audit.selectors import may_review_audit
from cratos.exceptions import DomainError, InvalidTransition, NotFound, PermissionRefused
from cratos.teams.models import Team

from .models import Approval, ApprovalNode, Ticket, TicketEntry, TicketNodeApprover
from .providers import provider_for

State = Ticket.State

TRANSITIONS: dict[str, set[str]] = {
    State.NEW: {State.IN_APPROVAL, State.CLOSED},
    State.IN_APPROVAL: {State.APPROVED, State.REJECTED, State.CLOSED},
    State.APPROVED: {State.COMPLETED},
}
_VERB = {
    State.IN_APPROVAL: pgettext_lazy("a ticket cannot be", "submitted"),
    State.APPROVED: pgettext_lazy("a ticket cannot be", "approved"),
    State.REJECTED: pgettext_lazy("a ticket cannot be", "rejected"),
    State.CLOSED: pgettext_lazy("a ticket cannot be", "cancelled"),
    State.COMPLETED: pgettext_lazy("a ticket cannot be", "completed"),
}
_APPLICANT_ACTION = {
    "edit": pgettext_lazy("only the applicant may", "edit"),
    "submit": pgettext_lazy("only the applicant may", "submit"),
    "cancel": pgettext_lazy("only the applicant may", "cancel"),
}
# Refusals are built lazily (format_lazy) so they read in the reader's language. English keeps the
# raw state ({state}: API scripts match on it); translations name the state's label
# ({state_label}).


def transition_refusal(*, ticket: Ticket, to_state: str) -> InvalidTransition | None:
    """Why the ticket cannot move to `to_state` now (e.g. an APPROVED one cannot be rejected)."""
    if to_state in TRANSITIONS.get(ticket.state, set()):
        return None
    return InvalidTransition(
        format_lazy(
            _("Ticket {ticket_no} is {state}; it cannot be {verb}."),
            ticket_no=ticket.ticket_no,
            state=ticket.state,
            state_label=State(ticket.state).label,
            verb=_VERB[to_state],
        )
    )


def applicant_refusal(*, ticket: Ticket, user, action: str) -> PermissionRefused | None:
    """Why `user` may not change the ticket as its applicant (edit, submit, cancel)."""
    if user.pk != ticket.applicant_id:
        return PermissionRefused(
            format_lazy(
                _("Only the applicant may {action} ticket {ticket_no}."),
                action=_APPLICANT_ACTION[action],
                ticket_no=ticket.ticket_no,
            )
        )
    return None


def entries_refusal(*, ticket: Ticket, user) -> DomainError | None:
    """Why `user` may not add or remove entries: only the applicant, only while NEW."""
    refusal = applicant_refusal(ticket=ticket, user=user, action="edit")
    if refusal is None and ticket.state != State.NEW:
        refusal = InvalidTransition(
            format_lazy(
                _("Ticket {ticket_no} is {state}; its entries are frozen."),
                ticket_no=ticket.ticket_no,
                state=ticket.state,
                state_label=State(ticket.state).label,
            )
        )
    return refusal


def decision_refusal(*, ticket: Ticket, user, reject: bool = False) -> DomainError | None:
    """Why `user` may not decide (approve, or reject) the ticket's current node now."""
    refusal = transition_refusal(
        ticket=ticket, to_state=State.REJECTED if reject else State.APPROVED
    )
    if refusal:
        return refusal
    if not user.is_active:
        return PermissionRefused(_("Your account is deactivated; it can no longer decide."))
    if user.pk == ticket.applicant_id:
        return PermissionRefused(_("You cannot decide on your own ticket."))
    node = ticket.current_node
    # One person, one node per ticket: whoever decided a node, or was picked for another one,
    # leaves this node to someone else (else a multi-node chain would need only one person).
    if any(approval.approver_id == user.pk for approval in ticket.approvals.all()):
        return PermissionRefused(
            format_lazy(
                _(
                    "You already decided on ticket {ticket_no}; "
                    "another approver must decide node {node}."
                ),
                ticket_no=ticket.ticket_no,
                node=node.display_name,
            )
        )
    picked_elsewhere = next(
        (c for c in ticket.chosen_approvers.all() if c.user_id == user.pk and c.node_id != node.pk),
        None,
    )
    if picked_elsewhere is not None:
        return PermissionRefused(
            format_lazy(
                _(
                    "You are the chosen approver of node {chosen_node}; "
                    "another approver must decide node {node}."
                ),
                chosen_node=picked_elsewhere.node.display_name,
                node=node.display_name,
            )
        )
    if node.node_type == ApprovalNode.Type.USER_SPECIFIED:
        chosen = next((c for c in ticket.chosen_approvers.all() if c.node_id == node.pk), None)
        if chosen is None or chosen.user_id != user.pk:
            return PermissionRefused(
                format_lazy(
                    _("Only the approver the applicant chose may decide on node {node}."),
                    node=node.display_name,
                )
            )
    # The node's role is read now, whatever the kind: an approver chosen (or sent a link)
    # earlier who has left the group since no longer decides.
    if not user.groups.filter(pk=node.group_id).exists():
        return PermissionRefused(
            format_lazy(
                _("Only members of {group} may decide on node {node}."),
                group=node.group.name,
                node=node.display_name,
            )
        )
    if node.node_type == ApprovalNode.Type.APPLICATION_OWNER:
        return owner_refusal(ticket=ticket, node=node, user=user)
    return None


def entries_awaiting_owners(*, ticket: Ticket, node: ApprovalNode) -> dict[str, set[int]]:
    """{entry name: ids of its owner teams, as they are now} for the ticket's entries that
    still wait on APPLICATION_OWNER `node`: an owned entry until a member of one of its teams
    decided it; an entry no team owns (an empty set) until anyone decided on the node."""
    names = [entry.name for entry in ticket.entries.all()]
    owners = provider_for(ticket.work_order).owner_team_ids(names=names)
    decisions = [approval for approval in ticket.approvals.all() if approval.node_id == node.pk]
    decided_teams = {approval.team_id for approval in decisions}
    return {
        name: owners.get(name, set())
        for name in names
        if (owners.get(name) and not owners[name] & decided_teams)
        or (not owners.get(name) and not decisions)
    }


def owner_teams_decided_by(*, ticket: Ticket, node: ApprovalNode, user) -> list[int] | None:
    """The owner teams `user` decides for on APPLICATION_OWNER `node`: their teams owning an
    entry that still waits; else [] when an unowned entry waits (any candidate decides those);
    None when no waiting entry is theirs to decide."""
    waiting = entries_awaiting_owners(ticket=ticket, node=node)
    mine = set(user.teams.values_list("pk", flat=True)) & set().union(*waiting.values())
    if mine:
        return sorted(mine)
    if not waiting or any(not teams for teams in waiting.values()):
        return []
    return None


def owner_refusal(*, ticket: Ticket, node: ApprovalNode, user) -> PermissionRefused | None:
    """Why `user` may not decide APPLICATION_OWNER `node`: no entry still waiting is owned by a
    team of theirs."""
    if owner_teams_decided_by(ticket=ticket, node=node, user=user) is not None:
        return None
    waiting = entries_awaiting_owners(ticket=ticket, node=node)
    teams = Team.objects.filter(pk__in=set().union(*waiting.values())).order_by("name")
    return PermissionRefused(
        format_lazy(
            _("Only members of {teams} (owners of {applications}) may decide on node {node} now."),
            teams=", ".join(team.name for team in teams),
            applications=", ".join(sorted(waiting)),
            node=node.display_name,
        )
    )


def decidable_by(user) -> Q:
    """`decision_refusal(...) is None` as a query filter, for lists of tickets awaiting `user`;
    at an APPLICATION_OWNER node it keeps the node's candidates, whose owner teams only the
    rule itself can weigh (tickets.selectors.tickets_awaiting_decision does).

    Kept next to decision_refusal so the two change together (tests compare them).
    """
    if not user.is_active:
        return Q(pk__in=[])
    # The nodes of the user's groups, read first: the planner then knows which tickets can
    # match (10,000 awaiting others cost a user of no such group 40 ms as a subquery), and one
    # in no group is refused without a query.
    their_nodes = list(ApprovalNode.objects.filter(group__user=user).values_list("pk", flat=True))
    if not their_nodes:
        return Q(pk__in=[])
    chosen = TicketNodeApprover.objects.filter(
        ticket_id=OuterRef("pk"), node_id=OuterRef("current_node_id"), user_id=user.pk
    )
    decided = Approval.objects.filter(ticket_id=OuterRef("pk"), approver_id=user.pk)
    picked_elsewhere = TicketNodeApprover.objects.filter(
        ticket_id=OuterRef("pk"), user_id=user.pk
    ).exclude(node_id=OuterRef("current_node_id"))
    return (
        Q(state=State.IN_APPROVAL)
        & ~Q(applicant_id=user.pk)
        & ~Exists(decided)
        & ~Exists(picked_elsewhere)
        & (Exists(chosen) | ~Q(current_node__node_type=ApprovalNode.Type.USER_SPECIFIED))
        & Q(current_node__in=their_nodes)
    )


def view_refusal(*, ticket: Ticket, user) -> NotFound | None:
    """Who sees a ticket: its applicant, staff, ticket viewers, reviewers, its approvers.

    Others get "does not exist", not "forbidden", so ticket numbers cannot be probed.
    """
    if (
        user.pk == ticket.applicant_id
        or user.is_staff
        or user.has_perm("tickets.view_ticket")
        or may_review_audit(user=user)
        or any(approval.approver_id == user.pk for approval in ticket.approvals.all())
        or decision_refusal(ticket=ticket, user=user) is None
    ):
        return None
    return NotFound(
        format_lazy(_("Ticket {ticket_no} does not exist."), ticket_no=ticket.ticket_no)
    )


def candidate_of(*, ticket: Ticket, node: ApprovalNode, user) -> bool:
    """Whether `user` is among those who decide `node` of the ticket, current or not: the user the
    applicant chose for a USER_SPECIFIED node, else the node group's members. Never the applicant.

    Lets an approver hear why a vote on a page they loaded earlier no longer counts, where others
    are told the ticket does not exist.
    """
    if user.pk == ticket.applicant_id or node.work_order_id != ticket.work_order_id:
        return False
    if node.node_type == ApprovalNode.Type.USER_SPECIFIED:
        return ticket.chosen_approvers.filter(node_id=node.pk, user_id=user.pk).exists()
    return user.groups.filter(pk=node.group_id).exists()


def revoker_refusal(*, ticket: Ticket, user) -> PermissionRefused | None:
    """Why `user` may not revoke the ticket's authorizations: approvers of its work order (members
    of a gating node's group) and administrators (staff with tickets.change_ticket) may."""
    if user.is_superuser or (user.is_staff and user.has_perm("tickets.change_ticket")):
        return None
    approvers_of_work_order = (
        ApprovalNode.objects.filter(work_order_id=ticket.work_order_id, group__user=user.pk)
        .exclude(node_type=ApprovalNode.Type.CC_TO)
        .exists()
    )
    if approvers_of_work_order:
        return None
    return PermissionRefused(
        format_lazy(
            _(
                "Only approvers of work order {work_order} or administrators may revoke "
                "its authorizations."
            ),
            work_order=ticket.work_order.key,
        )
    )


def revoke_refusal(*, entry: TicketEntry, user) -> DomainError | None:
    """Why `user` may not revoke the entry's authorization now."""
    ticket = entry.ticket
    refusal = revoker_refusal(ticket=ticket, user=user)
    if refusal:
        return refusal
    if entry.state == TicketEntry.State.IN_USE:
        return InvalidTransition(
            format_lazy(
                _(
                    "An operation on {application} is running on this authorization; "
                    "it can no longer be revoked."
                ),
                application=entry.name,
            )
        )
    if entry.state != TicketEntry.State.AUTHORIZED:
        return InvalidTransition(
            format_lazy(
                _(
                    "{application} on ticket {ticket_no} is {state}; "
                    "only an authorized entry can be revoked."
                ),
                application=entry.name,
                ticket_no=ticket.ticket_no,
                state=entry.state,
                state_label=TicketEntry.State(entry.state).label,
            )
        )
    return None


def is_approver(*, user) -> bool:
    """Whether `user` decides any node of any work order (menus show them the queue)."""
    return (
        user.is_authenticated
        and ApprovalNode.objects.exclude(node_type=ApprovalNode.Type.CC_TO)
        .filter(group__user=user)
        .exists()
    )
