"""Django admin: Responses, read-only: answers change only through the survey and the API."""


from django.contrib import admin

from surveys.models import (
    Response,
)


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["created_at", "customer", "touchpoint", "score", "category", "short_reason"]
    list_filter = ["category", "touchpoint", "score"]
    search_fields = ["customer__email", "customer__name", "reason"]
    list_select_related = ["customer", "touchpoint"]
    date_hierarchy = "created_at"
    readonly_fields = ["invitation", "customer", "touchpoint", "score", "category", "reason", "created_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="reason")
    def short_reason(self, obj):
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"
