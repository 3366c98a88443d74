"""The project's URLs plus the audit page, until the lead adds it to redeploy/urls.py."""

from django.urls import include, path

import cratos.urls
import redeploy.urls
from redeploy import audit_views

audit_patterns = [path("audit/", audit_views.audit_event_list, name="audit")]

urlpatterns = [
    pattern
    for pattern in cratos.urls.urlpatterns
    if getattr(pattern, "namespace", None) != "redeploy"
] + [
    path(
        "",
        include(
            (
                [p for p in redeploy.urls.urlpatterns if getattr(p, "name", None) != "audit"]
                + audit_patterns,
                "redeploy",
            )
        ),
    )
]
