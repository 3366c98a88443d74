from django.contrib import admin

from cratos.teams.models import Team


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name"]
    search_fields = ["name", "display_name", "members__username"]
    filter_horizontal = ["members"]
