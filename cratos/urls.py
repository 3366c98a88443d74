from django.contrib import admin
from django.urls import include, path

from cratos import health, security

# Django's own refusals and failures in the app's format: JSON under /api/, the error page else.
handler400 = "cratos.middleware.bad_request"
handler404 = "cratos.middleware.page_not_found"
handler500 = "cratos.middleware.server_error"

# The admin's own login form, throttled like the site's (cratos.security).
admin.site.login_form = security.ThrottledAdminAuthenticationForm

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Ahead of admin.site.urls, so the admin's login answers 429 when locked, like the site's.
    path("admin/login/", security.admin_login),
    path("admin/", admin.site.urls),
    path("accounts/login/", security.LoginView.as_view(), name="login"),
    # OIDC sign-in and its callback, sign-out (at the provider too), each role's landing page.
    path("", include("cratos.identity.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/v1/", include("cratos.api_urls")),
    path("", include("tickets.urls")),
    path("", include("tickets.notice_urls")),
    path("", include("redeploy.urls")),
    path("", include("cratos.audit.urls")),
]
