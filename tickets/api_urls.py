from django.urls import path
from rest_framework.routers import SimpleRouter

from .api import AuthorizationListView, TicketViewSet

router = SimpleRouter()
router.register("tickets", TicketViewSet, basename="api-ticket")

urlpatterns = [
    *router.urls,
    path("authorizations/", AuthorizationListView.as_view(), name="api-authorizations"),
]
