"""Form widgets that write their HTML in Python, for forms on pages people open all day.

Django renders a widget through templates, and a <select> includes one more template per
option: profiled, the audit page's filter form (an 18-option select among ten fields) cost
more than the rest of its 0-row page. These widgets write the same HTML as Django's
templates (django/forms/widgets/input.html, select.html, select_option.html, attrs.html),
from the same context, so labels, errors and aria attributes are untouched.
"""

from django import forms
from django.utils.html import conditional_escape, escape
from django.utils.safestring import SafeString, mark_safe


def _attrs(attrs: dict) -> str:
    return "".join(
        f" {escape(name)}" if value is True else f' {escape(name)}="{escape(value)}"'
        for name, value in attrs.items()
        if value is not False
    )


def _input(widget: dict) -> str:
    value = "" if widget["value"] is None else f' value="{escape(widget["value"])}"'
    return (
        f'<input type="{escape(widget["type"])}" name="{escape(widget["name"])}"'
        f"{value}{_attrs(widget['attrs'])}>"
    )


def _select(widget: dict) -> str:
    parts = [f'<select name="{escape(widget["name"])}"{_attrs(widget["attrs"])}>']
    for group_name, options, _index in widget["optgroups"]:
        if group_name:
            parts.append(f'\n  <optgroup label="{conditional_escape(group_name)}">')
        parts.extend(
            f'\n  <option value="{escape(option["value"])}"{_attrs(option["attrs"])}>'
            f"{conditional_escape(option['label'])}</option>\n"
            for option in options
        )
        if group_name:
            parts.append("\n  </optgroup>")
    parts.append("\n</select>")
    return "".join(parts)


class _WrittenInPython:
    write = staticmethod(_input)

    def _render(self, template_name, context, renderer=None) -> SafeString:
        return mark_safe(self.write(context["widget"]))


class TextInput(_WrittenInPython, forms.TextInput):
    pass


class DateInput(_WrittenInPython, forms.DateInput):
    pass


class Select(_WrittenInPython, forms.Select):
    write = staticmethod(_select)
