"""Reads of promoters' coupons and share links.
"""


from django.utils import timezone

from surveys.core import validation
from surveys.models import (
    Coupon,
    ReferralLink,
    Response,
)
from surveys.promoters.rules import COUPON_PER_CUSTOMER_WINDOW


def referral_link_for_code(*, code: str) -> ReferralLink | None:
    code = validation.code_or_none(code)
    return None if code is None else ReferralLink.objects.filter(code=code).first()


def referral_link_for_customer(*, customer_id: int) -> ReferralLink | None:
    return ReferralLink.objects.filter(customer_id=customer_id).first()


def promoter_coupon_expected(*, response: Response) -> bool:
    """Whether this promoter answer earns a coupon (one per customer per 30 days)."""
    if Coupon.objects.filter(response=response).exists():
        return True
    return not Coupon.objects.filter(
        customer_id=response.customer_id, issued_at__gt=timezone.now() - COUPON_PER_CUSTOMER_WINDOW
    ).exists()
