"""Django admin: Touchpoints and their wording in other languages."""


from django.contrib import admin
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce

from surveys.models import (
    Coupon,
    ReferralConversion,
    ReferralVisit,
    Touchpoint,
    TouchpointTranslation,
)


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
