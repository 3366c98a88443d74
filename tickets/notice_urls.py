from django.urls import path

from . import notice_views

app_name = "notices"

urlpatterns = [
    path("notices/decide/<str:token>/", notice_views.decide, name="decide"),
]
