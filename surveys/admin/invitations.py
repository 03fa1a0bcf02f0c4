"""Django admin: Invitations ("Retry sending") and the surveys not sent, with why."""


from django.contrib import admin, messages
from django.utils.html import format_html

from surveys.invitations import services as invitations
from surveys.mail import messages as emails
from surveys.models import (
    Invitation,
    SurveySkip,
)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["customer", "touchpoint", "status", "source", "created_at", "sent_at", "answered_at"]
    list_filter = ["status", "source", "touchpoint", ("answered_at", admin.EmptyFieldListFilter)]
    search_fields = ["customer__email", "customer__name", "customer__external_id"]
    list_select_related = ["customer", "touchpoint"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "customer",
        "touchpoint",
        "survey_link",
        "status",
        "source",
        "created_at",
        "send_after",
        "claimed_at",
        "sent_at",
        "reminded_at",
        "opened_at",
        "answered_at",
        "expires_at",
        "send_attempts",
        "last_error",
    ]
    exclude = ["token"]
    actions = ["retry_sending"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="survey link")
    def survey_link(self, obj):
        url = emails.survey_url(obj)
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    @admin.action(description="Retry sending failed invitations", permissions=["change"])
    def retry_sending(self, request, queryset):
        retried = sum(invitations.invitation_retry(invitation=invitation) for invitation in queryset)
        self.message_user(request, f"{retried} failed invitation(s) queued again.", messages.SUCCESS)


@admin.register(SurveySkip)
class SurveySkipAdmin(admin.ModelAdmin):
    list_display = ["created_at", "customer", "touchpoint", "reason", "source"]
    list_filter = ["reason", "source", "touchpoint"]
    search_fields = ["customer__email"]
    list_select_related = ["customer", "touchpoint"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
