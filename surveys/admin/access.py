"""Django admin: API keys: made with their scopes, the secret shown once; revoked."""


from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from surveys.access import services as access
from surveys.models import (
    ApiKey,
    ApiScope,
)


class ApiKeyAdminForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple, initial=ApiScope.values,
        help_text="What this key may do. Give an integration only what it needs.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyAdminForm
    list_display = ["name", "prefix", "scope_list", "created_at", "last_used_at", "revoked_at"]
    fields = ["name", "scopes", "prefix", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name", "scopes"])
            return
        api_key, raw_key = access.api_key_create(name=obj.name, scopes=form.cleaned_data["scopes"])
        obj.pk, obj.prefix, obj.key_hash = api_key.pk, api_key.prefix, api_key.key_hash
        self.message_user(
            request,
            format_html("New API key (shown once, copy it now): <code>{}</code>", raw_key),
            messages.WARNING,
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        for api_key in queryset:
            access.api_key_revoke(api_key=api_key)
        self.message_user(request, "Revoked.", messages.SUCCESS)
