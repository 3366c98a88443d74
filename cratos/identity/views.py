"""Sign-in through the OpenID provider (404 unless it is configured), sign-out, and where each
role lands after signing in."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from mozilla_django_oidc import views as oidc_views

from cratos.audit.selectors import may_review_audit

from .oidc import oidc_configured

APPROVERS = "Approvers"  # the role of cratos.roles


class OIDCSignInView(oidc_views.OIDCAuthenticationRequestView):
    """Sends the browser to the provider's login page (authorization code with PKCE)."""

    def get(self, request):
        if not oidc_configured():
            raise Http404
        return super().get(request)


class OIDCCallbackView(oidc_views.OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back with the code."""

    def get(self, request):
        if not oidc_configured():
            raise Http404
        return super().get(request)

    def login_failure(self):
        messages.error(
            self.request,
            _("Signing in with %(provider)s failed.") % {"provider": settings.OIDC_PROVIDER_NAME},
        )
        return redirect("login")


class LogoutView(oidc_views.OIDCLogoutView):
    """Signs out here and, after an OIDC sign-in, at the provider (cratos.identity.oidc)."""


@login_required
def landing(request):
    """After signing in without a page in mind: approvers to their queue, reviewers to the audit
    log, everyone else to their tickets."""
    if request.user.groups.filter(name=APPROVERS).exists():
        return redirect("tickets:approvals")
    if may_review_audit(user=request.user):
        return redirect("audit:events")
    return redirect("tickets:list")
