from django.urls import path

from . import application_views, dashboard_views, views

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
    path("applications/", application_views.application_list, name="applications"),
    path("applications/<path:name>/", application_views.application_detail, name="application"),
    path("dashboard/", dashboard_views.dashboard_page, name="dashboard"),
]
