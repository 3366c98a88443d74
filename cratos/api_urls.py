from django.urls import include, path

urlpatterns = [
    path("", include("tickets.api_urls")),
    path("", include("redeploy.api_urls")),
]
