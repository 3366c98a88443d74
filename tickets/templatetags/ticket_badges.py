from django import template

from ..tables import state_badge

register = template.Library()


@register.simple_tag
def ticket_state_badge(state: str) -> str:
    return state_badge(state)
