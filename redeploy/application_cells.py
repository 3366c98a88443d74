"""The cells of the applications list that say more than a value: written in Python, since a
template per cell (three per row) was most of that page's time in a profile. The HTML is what
templates/_tag_chips.html and the list's former cell templates wrote."""

from django.utils.dateformat import format as format_date
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime
from django.utils.translation import gettext as _

from .models import DeploymentBinding

TIME_FORMAT = "Y-m-d H:i T"


def tag_chips(tags: list[dict]) -> SafeString:
    chips = format_html_join(
        "", '<span class="chip">{}:{}</span>', ((t["key"], t["value"]) for t in tags)
    )
    return format_html(
        '<span class="chips">{}</span>', chips or mark_safe('<span class="muted">—</span>')
    )


def _binding_state(binding: DeploymentBinding) -> SafeString:
    title = f"{binding.cluster.name}/{binding.namespace}/{binding.deployment_name}"
    if binding.seen_at:
        title += f" · {_('seen')} {format_date(localtime(binding.seen_at), TIME_FORMAT)}"
    ready, desired = binding.ready_replicas, binding.desired_replicas
    if desired is None:
        replicas = format_html('<span class="muted">{}</span>', _("not synced"))
    else:
        css = "badge-success" if ready is not None and ready >= desired else "badge-pending"
        replicas = format_html('<span class="badge {}">{}/{}</span>', css, ready, desired)
    paused = (
        format_html('<span class="badge badge-failure">{}</span>', _("paused"))
        if binding.paused
        else ""
    )
    managed = (
        format_html(
            '<span class="chip">{}</span>',
            _("managed by %(manager)s") % {"manager": binding.managed_by},
        )
        if binding.managed_by
        else ""
    )
    return format_html(
        '\n  <li title="{}">\n    {}\n    {}\n    {}\n  </li>', title, replicas, paused, managed
    )


def binding_states(bindings: list[DeploymentBinding]) -> SafeString:
    """An application's Deployments as the last sync saw them: ready of desired replicas,
    paused, who manages them."""
    if not bindings:
        return format_html('<span class="muted">{}</span>', _("runs nowhere yet"))
    items = mark_safe("".join(_binding_state(binding) for binding in bindings))
    return format_html('<ul class="binding-states">{}\n</ul>', items)


def last_redeploy(when) -> SafeString:
    if not when:
        return format_html('<span class="muted">{}</span>', _("never"))
    when = localtime(when)
    return format_html(
        '<time datetime="{}">{}</time>', format_date(when, "c"), format_date(when, TIME_FORMAT)
    )
