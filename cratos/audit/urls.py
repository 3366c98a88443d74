from django.urls import path

from . import views

app_name = "audit"

urlpatterns = [
    path("audit/", views.audit_event_list, name="events"),
]
