"""Django admin: touchpoints, customers (with "Send survey"), invitations, responses, API keys."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from .access import services as access
from .customers import services as customers
from .followups import services as followups
from .followups.selectors import case_assignees
from .forms import CustomerAdminForm, CustomerImportForm, SendSurveyForm, WebhookEndpointForm
from .imports import customers as imports
from .invitations import services as invitations
from .mail import messages as emails
from .models import (
    ApiKey,
    ApiScope,
    CaseNote,
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralConversion,
    ReferralLink,
    ReferralVisit,
    Response,
    SurveySkip,
    Touchpoint,
    TouchpointTranslation,
    WebhookDelivery,
    WebhookEndpoint,
)
from .privacy import services as privacy
from .privacy.selectors import customer_export
from .promoters import services as promoters
from .webhooks import services as webhooks


def _count_per_touchpoint(model, field: str):
    counts = (
        model.objects.filter(**{field: OuterRef("pk")})
        .order_by()
        .values(field)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts), 0)


class TouchpointTranslationInline(admin.TabularInline):
    model = TouchpointTranslation
    extra = 0
    verbose_name = "wording in another language"
    verbose_name_plural = "wording in other languages (customers with that locale see it)"


@admin.register(Touchpoint)
class TouchpointAdmin(admin.ModelAdmin):
    inlines = [TouchpointTranslationInline]
    list_display = [
        "name", "slug", "is_active", "cooldown_days", "expiry_days", "coupons_issued", "referral_visits",
        "referrals_converted",
    ]

    def get_queryset(self, request):
        # "How many referrals did our promoters actually bring?", per touchpoint.
        return (
            super()
            .get_queryset(request)
            .annotate(
                coupons_issued=_count_per_touchpoint(Coupon, "response__touchpoint"),
                referral_visits=_count_per_touchpoint(ReferralVisit, "link__touchpoint"),
                referrals_converted=_count_per_touchpoint(ReferralConversion, "link__touchpoint"),
            )
        )

    @admin.display(description="coupons issued", ordering="coupons_issued")
    def coupons_issued(self, obj):
        return obj.coupons_issued

    @admin.display(description="referral visits", ordering="referral_visits")
    def referral_visits(self, obj):
        return obj.referral_visits

    @admin.display(description="referrals converted", ordering="referrals_converted")
    def referrals_converted(self, obj):
        return obj.referrals_converted

    list_filter = ["is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "is_active"]}),
        (
            "Wording",
            {
                "fields": [
                    "question",
                    "reason_prompt",
                    "reason_prompt_promoter",
                    "reason_prompt_passive",
                    "reason_prompt_detractor",
                ]
            },
        ),
        ("Sending", {"fields": ["cooldown_days", "expiry_days", "reminder_delay_days"]}),
        ("Promoters", {"fields": ["promoter_offer", "coupon_validity_days"]}),
        ("Follow-up", {"fields": ["alert_recipients", "case_due_hours", "open_cases_for_passives"]}),
    ]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class InvitationInline(ReadOnlyInline):
    model = Invitation
    fields = ["touchpoint", "status", "created_at", "sent_at", "answered_at", "expires_at", "last_error"]
    readonly_fields = fields
    ordering = ["-created_at"]


class SurveySkipInline(ReadOnlyInline):
    model = SurveySkip
    verbose_name = "survey not sent"
    verbose_name_plural = "surveys not sent (and why)"
    fields = ["created_at", "touchpoint", "reason", "source"]
    readonly_fields = fields
    show_change_link = False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    form = CustomerAdminForm
    list_display = ["email", "name", "external_id", "locale", "unsubscribed_at", "erased_at", "created_at"]
    list_filter = [("unsubscribed_at", admin.EmptyFieldListFilter), ("erased_at", admin.EmptyFieldListFilter), "locale"]
    search_fields = ["email", "name", "external_id", "phone"]
    readonly_fields = ["created_at", "updated_at", "unsubscribed_at", "erased_at"]
    fields = ["email", "name", "phone", "external_id", "locale", "unsubscribed_at", "erased_at", "created_at",
              "updated_at"]
    inlines = [InvitationInline, SurveySkipInline]
    actions = ["send_survey", "export_data", "erase_personal_data"]
    change_list_template = "admin/surveys/customer/change_list.html"

    def has_change_permission(self, request, obj=None):
        # An erased person's record is never filled with data again (SPEC §8.1): it can only be looked at.
        if obj is not None and obj.erased_at is not None:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        """Through the services, as every other way in: canonical address, suppression, erased records refused."""
        data = form.cleaned_data
        try:
            if change:
                customers.customer_edit(
                    customer=obj, email=data["email"], name=data["name"], phone=data["phone"],
                    external_id=data["external_id"], locale=data["locale"],
                )
            else:
                created, _ = customers.customer_import_row(
                    email=data["email"], name=data["name"], phone=data["phone"],
                    external_id=data["external_id"], locale=data["locale"],
                )
                obj.pk = created.pk
            obj.refresh_from_db()
        except customers.CustomerConflict as exc:
            # The form checked uniqueness; only a concurrent change gets here.
            raise PermissionDenied(str(exc)) from exc

    @admin.action(description="Export everything stored about the customer (JSON)", permissions=["view"])
    def export_data(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one customer to export.", messages.WARNING)
            return None
        customer = queryset.get()
        response = HttpResponse(
            json.dumps(customer_export(customer=customer), indent=2, ensure_ascii=False),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="customer-{customer.pk}.json"'
        return response

    @admin.action(description="Erase personal data (keeps anonymised scores)", permissions=["delete"])
    def erase_personal_data(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            return render(
                request,
                "admin/surveys/customer/erase_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Erase personal data",
                    "customers": queryset,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        for customer in queryset:
            privacy.customer_erase(customer=customer)
        self.message_user(
            request,
            f"Erased {queryset.count()} customer(s): names, addresses and comments removed, scores kept; "
            "their addresses will never be emailed again.",
            messages.SUCCESS,
        )
        return None

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="surveys_customer_import"),
            *super().get_urls(),
        ]

    def import_view(self, request):
        """Upload a CSV of customers: the same import as `manage.py import_customers`."""
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        form = CustomerImportForm(request.POST or None, request.FILES or None)
        summary = None
        if request.method == "POST" and form.is_valid():
            try:
                summary = imports.customers_import(
                    binary=form.cleaned_data["file"],
                    touchpoint=form.cleaned_data["touchpoint"],
                    send=form.cleaned_data["send"],
                    dry_run=form.cleaned_data["dry_run"],
                )
            except imports.ImportFileError as exc:
                form.add_error("file", str(exc))
        return render(
            request,
            "admin/surveys/customer/import.html",
            {
                **self.admin_site.each_context(request),
                "title": "Import customers from CSV",
                "form": form,
                "summary": summary,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Send survey", permissions=["change"])
    def send_survey(self, request, queryset):
        form = SendSurveyForm(request.POST if "touchpoint" in request.POST else None)
        if not form.is_valid():
            return render(
                request,
                "admin/surveys/customer/send_survey.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Send survey",
                    "form": form,
                    "customers": queryset,
                    "opts": self.model._meta,
                    "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                },
            )
        touchpoint = form.cleaned_data["touchpoint"]
        created, skipped = [], {}
        for customer in queryset:
            with transaction.atomic():
                outcome = invitations.invitation_request(
                    touchpoint=touchpoint, customer=customer, source=Invitation.Source.ADMIN, enqueue=False
                )
            if outcome.skipped:
                skipped.setdefault(outcome.skip_reason, []).append(customer.email)
            else:
                created.append(outcome.invitation.pk)
        # All of them in a few broker messages, sent over shared SMTP connections.
        transaction.on_commit(lambda: invitations.invitations_enqueue(created), robust=True)
        sent = len(created)
        if sent:
            self.message_user(request, f"{sent} survey(s) for “{touchpoint}” queued for sending.", messages.SUCCESS)
        for reason, addresses in skipped.items():
            label = SurveySkip.Reason(reason).label
            self.message_user(
                request, f"Not sent ({label}): {', '.join(addresses)}", messages.WARNING
            )
        return None


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


class CouponStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("unsent", "Issued, not emailed"),
            ("emailed", "Emailed"),
            ("redeemed", "Redeemed"),
            ("expired", "Expired unredeemed"),
            ("valid", "Valid, not redeemed"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        return {
            "unsent": lambda: queryset.filter(emailed_at__isnull=True),
            "emailed": lambda: queryset.filter(emailed_at__isnull=False),
            "redeemed": lambda: queryset.filter(redeemed_at__isnull=False),
            "expired": lambda: queryset.filter(redeemed_at__isnull=True, expires_at__lte=now),
            "valid": lambda: queryset.filter(redeemed_at__isnull=True, expires_at__gt=now),
        }.get(self.value(), lambda: queryset)()


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["code", "customer", "offer", "issued_at", "expires_at", "emailed_at", "redeemed_at"]
    list_filter = [CouponStateFilter, ("issued_at", admin.DateFieldListFilter), "response__touchpoint"]
    search_fields = ["code", "customer__email", "customer__name"]
    list_select_related = ["customer"]
    date_hierarchy = "issued_at"
    readonly_fields = [
        "code", "customer", "response", "offer", "issued_at", "expires_at", "emailed_at", "email_attempts",
        "last_error", "redeemed_at",
    ]
    actions = ["redeem"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Redeem selected coupons", permissions=["change"])
    def redeem(self, request, queryset):
        done, refused = 0, []
        for coupon in queryset:
            try:
                promoters.coupon_redeem(code=coupon.code)
                done += 1
            except promoters.CouponAlreadyRedeemed:
                refused.append(f"{coupon.code} (already redeemed)")
            except promoters.CouponExpired:
                refused.append(f"{coupon.code} (expired)")
        if done:
            self.message_user(request, f"{done} coupon(s) redeemed.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not redeemed: " + ", ".join(refused), messages.WARNING)


class CaseNoteInline(admin.TabularInline):
    """Notes are added through followups.case_note_add (FollowUpCaseAdmin.save_formset), never edited or removed."""

    model = CaseNote
    extra = 0
    fields = ["created_at", "author", "text"]
    readonly_fields = ["created_at", "author"]
    can_delete = False

    def has_change_permission(self, request, obj=None):
        return False


class FollowUpCaseAdminForm(forms.ModelForm):
    class Meta:
        model = FollowUpCase
        fields = ["status", "assignee"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The same people the cases pages offer (those who may work cases), and whoever has the case now,
        # so that saving another change does not unassign someone who has since lost the permission.
        assignees = case_assignees()
        if self.instance.assignee_id:
            assignees = assignees.model.objects.filter(
                Q(pk__in=assignees.values("pk")) | Q(pk=self.instance.assignee_id)
            ).order_by("username")
        self.fields["assignee"].queryset = assignees


@admin.register(FollowUpCase)
class FollowUpCaseAdmin(admin.ModelAdmin):
    list_display = ["__str__", "touchpoint", "score", "status", "assignee", "due_at", "resolved_at", "won_back_at"]
    list_filter = ["status", "touchpoint", ("won_back_at", admin.EmptyFieldListFilter)]
    search_fields = ["customer__email", "customer__name", "response__reason"]
    list_select_related = ["customer", "touchpoint", "response", "assignee"]
    form = FollowUpCaseAdminForm
    fields = ["customer", "touchpoint", "response", "status", "assignee", "opened_at", "due_at", "contacted_at",
              "resolved_at", "won_back_at", "alert_sent_at"]
    # Times are set by the rules of the cases pages (followups.case_status_set), never typed in.
    readonly_fields = ["customer", "touchpoint", "response", "opened_at", "due_at", "contacted_at", "resolved_at",
                       "won_back_at", "alert_sent_at"]
    inlines = [CaseNoteInline]

    def has_add_permission(self, request):
        return False

    @admin.display(description="score", ordering="response__score")
    def score(self, obj):
        return obj.response.score

    def save_model(self, request, obj, form, change):
        """Status and assignee through the same services as the cases pages: times, notes, statistics."""
        case = FollowUpCase.objects.get(pk=obj.pk)
        if "assignee" in form.changed_data:
            followups.case_assign(case=case, assignee=form.cleaned_data["assignee"], by=request.user)
        if "status" in form.changed_data:
            followups.case_status_set(case=case, status=form.cleaned_data["status"], by=request.user)
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        for note in formset.save(commit=False):
            if note.pk is None:
                followups.case_note_add(case=form.instance, author=request.user, text=note.text)


@admin.register(ReferralLink)
class ReferralLinkAdmin(admin.ModelAdmin):
    list_display = ["code", "customer", "touchpoint", "visit_count", "conversion_count", "created_at"]
    list_filter = ["touchpoint"]
    search_fields = ["code", "customer__email", "customer__name"]
    readonly_fields = ["code", "customer", "touchpoint", "response", "created_at"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("customer", "touchpoint")
            .annotate(
                visit_count=Count("visits", distinct=True), conversion_count=Count("conversions", distinct=True)
            )
        )

    def has_add_permission(self, request):
        return False

    @admin.display(description="visits", ordering="visit_count")
    def visit_count(self, obj):
        return obj.visit_count

    @admin.display(description="referrals converted", ordering="conversion_count")
    def conversion_count(self, obj):
        return obj.conversion_count


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
