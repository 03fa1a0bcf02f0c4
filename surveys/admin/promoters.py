"""Django admin: Coupons (redeem at the till) and promoters' share links with their visits and referrals."""


from django.contrib import admin, messages
from django.db.models import Count
from django.utils import timezone

from surveys.models import (
    Coupon,
    ReferralLink,
)
from surveys.promoters import services as promoters


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
