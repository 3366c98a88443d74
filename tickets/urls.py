from django.urls import path

from . import approval_views, views

app_name = "tickets"

urlpatterns = [
    path("", views.home, name="home"),
    path("tickets/", views.ticket_list, name="list"),
    path("tickets/new/", views.ticket_create, name="create"),
    path("tickets/<str:ticket_no>/", views.ticket_detail, name="detail"),
    path("tickets/<str:ticket_no>/submit/", views.ticket_submit, name="submit"),
    path("tickets/<str:ticket_no>/cancel/", views.ticket_cancel, name="cancel"),
    path("tickets/<str:ticket_no>/entries/add/", views.entries_add, name="entries-add"),
    path("tickets/<str:ticket_no>/entries/remove/", views.entry_remove, name="entry-remove"),
    path("authorizations/", views.authorizations, name="authorizations"),
    path("approvals/", approval_views.approvals, name="approvals"),
    path("approvals/confirm/", approval_views.approval_confirm, name="approval-confirm"),
    path(
        "tickets/<str:ticket_no>/entries/<int:entry_id>/revoke/",
        approval_views.revoke,
        name="revoke",
    ),
]
