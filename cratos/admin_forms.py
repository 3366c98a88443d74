"""Admin forms and mixins shared by the apps."""

from django import forms
from django.utils.translation import gettext_lazy as _


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, neither the stored one nor one just typed."""

    def format_value(self, value):
        return None


class WriteOnlyCredentialsForm(forms.ModelForm):
    """A model form whose `credential_fields` are write-only.

    A stored value is never rendered back (nor written to the change message); leaving the
    field blank keeps it, and "Remove stored" clears it.
    """

    credential_fields: tuple[str, ...] = ()

    forget_credentials = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label=_("Remove stored")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["forget_credentials"].choices = [
            (name, self.fields[name].label) for name in self.credential_fields
        ]
        for name in self.credential_fields:
            self.initial[name] = ""
            self.fields[name].help_text = (
                _("A value is stored; leave blank to keep it.")
                if getattr(self.instance, name)
                else _("Not set.")
            )

    def clean(self):
        cleaned = super().clean()
        forget = set(cleaned.get("forget_credentials") or [])
        for name in self.credential_fields:
            if cleaned.get(name):
                if name in forget:
                    self.add_error(name, _("Enter a new value or remove the stored one, not both."))
            elif name in forget:
                cleaned[name] = ""
            else:
                cleaned[name] = getattr(self.instance, name)
        return cleaned


class ReadOnlyAdminMixin:
    """Records of what happened: nobody adds, changes or deletes them, superusers included."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
