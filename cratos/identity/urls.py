from django.urls import path

from . import views

urlpatterns = [
    path("oidc/authenticate/", views.OIDCSignInView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", views.OIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/welcome/", views.landing, name="landing"),
]
