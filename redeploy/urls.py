from django.urls import path

from . import application_views, dashboard_views, pod_deletion_views, views

app_name = "redeploy"

urlpatterns = [
    path("redeploy/", views.redeploy_request, name="request"),
    path("redeploy/operations/", views.operation_list, name="operations"),
    path("redeploy/operations/<uuid:operation_id>/", views.operation_detail, name="operation"),
    path(
        "redeploy/operations/<uuid:operation_id>/status/",
        views.operation_status,
        name="operation-status",
    ),
    path("pod-deletions/new/", pod_deletion_views.pod_deletion_new, name="pod-deletion-new"),
    path(
        "pod-deletions/<uuid:operation_id>/",
        pod_deletion_views.pod_deletion_detail,
        name="pod-deletion",
    ),
    path("applications/", application_views.application_list, name="applications"),
    path("applications/<path:name>/", application_views.application_detail, name="application"),
    path("dashboard/", dashboard_views.dashboard_page, name="dashboard"),
]
