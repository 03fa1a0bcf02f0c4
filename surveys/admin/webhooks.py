"""Django admin: Webhook endpoints (checked where they may send) and the log of deliveries."""


from django.contrib import admin, messages

from surveys.models import (
    WebhookDelivery,
    WebhookEndpoint,
)
from surveys.web.forms import WebhookEndpointForm
from surveys.webhooks import services as webhooks


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ["name", "url", "event_list", "is_active", "created_at"]
    list_filter = ["is_active"]

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "endpoint", "event", "status", "attempts", "last_status_code", "next_attempt_at"]
    list_filter = ["status", "event", "endpoint"]
    list_select_related = ["endpoint"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "endpoint", "event", "payload", "status", "attempts", "next_attempt_at", "last_status_code", "last_error",
        "created_at", "delivered_at",
    ]
    exclude = ["claimed_at"]
    actions = ["redeliver"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Deliver again now", permissions=["change"])
    def redeliver(self, request, queryset):
        for delivery in queryset:
            webhooks.webhook_redeliver(delivery=delivery)
        self.message_user(request, "Queued again.", messages.SUCCESS)
