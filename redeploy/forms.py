"""The redeploy request form. It only shapes input; who may redeploy is for the services."""

from django import forms
from django.utils.translation import gettext_lazy as _

from .validators import validate_dns1123_label, validate_dns1123_subdomain


def _name_input(*, datalist: str, maxlength: int, placeholder: str = "") -> forms.TextInput:
    attrs = {
        "list": datalist,
        "maxlength": maxlength,
        "autocomplete": "off",
        "autocapitalize": "none",
        "spellcheck": "false",
    }
    if placeholder:
        attrs["placeholder"] = placeholder
    return forms.TextInput(attrs=attrs)


class RedeployRequestForm(forms.Form):
    """Application, namespace and Deployment to restart, and optionally the one cluster.

    Names are typed (offered from datalists), not picked from a closed list: an application the
    user holds no live authorization for must reach the service, which refuses it in the
    manual's words. The DNS-1123 checks are the validators the bindings use.
    """

    # The field names are the query parameters that prefill the form (?application=web).
    application = forms.CharField(
        label=_("Application name"),
        max_length=128,
        widget=_name_input(datalist="application-choices", maxlength=128),
    )
    namespace = forms.CharField(
        label=_("Namespace"),
        validators=[validate_dns1123_label],
        widget=_name_input(datalist="namespace-choices", maxlength=63),
    )
    deployment = forms.CharField(
        label=_("Deployment name"),
        validators=[validate_dns1123_subdomain],
        widget=_name_input(datalist="deployment-choices", maxlength=253),
    )
    cluster = forms.CharField(
        label=_("Cluster (optional)"),
        required=False,
        max_length=64,
        help_text=_("Leave empty to restart it in every cluster where it runs."),
        widget=_name_input(
            datalist="cluster-choices", maxlength=64, placeholder=_("every cluster")
        ),
    )

    def request_fields(self) -> dict[str, str]:
        """The cleaned values as request_redeploy takes them."""
        data = self.cleaned_data
        return {
            "application_name": data["application"],
            "namespace": data["namespace"],
            "deployment_name": data["deployment"],
            "cluster_name": data["cluster"],
        }
