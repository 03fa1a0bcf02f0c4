"""Django admin: Customers: "Send survey", the CSV import, export and erasure; edits through the services."""

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import path

from surveys.customers import services as customers
from surveys.imports import customers as imports
from surveys.invitations import services as invitations
from surveys.models import (
    Customer,
    Invitation,
    SurveySkip,
)
from surveys.privacy import services as privacy
from surveys.privacy.selectors import customer_export
from surveys.web.forms import CustomerAdminForm, CustomerImportForm, SendSurveyForm


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
