"""The project's URLs plus the dashboard, until the lead adds it to redeploy/urls.py."""

from django.urls import include, path

import cratos.urls
import redeploy.urls
from redeploy import dashboard_views

dashboard_patterns = [path("dashboard/", dashboard_views.dashboard_page, name="dashboard")]

urlpatterns = [
    pattern
    for pattern in cratos.urls.urlpatterns
    if getattr(pattern, "namespace", None) != "redeploy"
] + [
    path(
        "",
        include(
            (
                [p for p in redeploy.urls.urlpatterns if getattr(p, "name", None) != "dashboard"]
                + dashboard_patterns,
                "redeploy",
            )
        ),
    )
]
