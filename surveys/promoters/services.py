"""Fresh promoters: their coupon inside the 30-day window (issued once, emailed once, redeemed), and
referrals (the share link, its visits and the sign-ups it brought).
"""

import smtplib
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from surveys.core import dispatch, validation
from surveys.core.hashing import keyed_hash
from surveys.core.sweeps import EMAIL_CLAIM_TIMEOUT, SWEEP_BATCH, SWEEP_GRACE, SendFailed
from surveys.customers.services import address_is_suppressed, customer_suppress
from surveys.dashboard.services import stats_mark_dirty
from surveys.mail import messages as emails
from surveys.models import (
    Category,
    Coupon,
    Customer,
    ReferralConversion,
    ReferralLink,
    ReferralVisit,
    Response,
    Touchpoint,
    new_coupon_code,
)
from surveys.promoters.rules import COUPON_PER_CUSTOMER_WINDOW, PROMOTER_WINDOW
from surveys.webhooks import services as webhooks


class CouponNotFound(Exception):
    pass


class CouponAlreadyRedeemed(Exception):
    def __init__(self, coupon: Coupon):
        super().__init__(coupon.code)
        self.coupon = coupon


class CouponExpired(Exception):
    def __init__(self, coupon: Coupon):
        super().__init__(coupon.code)
        self.coupon = coupon


def _response_settle(response_id: int) -> None:
    Response.objects.filter(pk=response_id, coupon_settled_at__isnull=True).update(coupon_settled_at=timezone.now())


def promoter_reward(*, response_id: int) -> str:
    """Issue the fresh promoter's coupon (once) and email it (once). Returns what happened.

    Safe to run any number of times, from the task and the sweep at once.
    Raises `SendFailed` when the email could not go out; the coupon stays
    issued and unsent, and the next attempt or sweep sends it.
    """
    now = timezone.now()
    response = Response.objects.select_related("customer", "touchpoint").filter(pk=response_id).first()
    if response is None or response.category != Category.PROMOTER or response.coupon_settled_at is not None:
        return "nothing-to-do"
    if response.created_at <= now - PROMOTER_WINDOW:
        _response_settle(response_id)
        return "window-closed"
    if response.customer.unsubscribed_at is not None:
        _response_settle(response_id)
        return "unsubscribed"
    coupon = coupon_issue(response=response, now=now)
    if coupon is None:
        _response_settle(response_id)
        return "already-rewarded"
    outcome = coupon_email_send(coupon_id=coupon.pk)
    if outcome in ("sent", "already-emailed", "unsubscribed"):
        _response_settle(response_id)
    return outcome


def coupon_issue(*, response: Response, now=None) -> Coupon | None:
    """The response's coupon, issued now if needed; None if the customer had one in the last 30 days."""
    now = now or timezone.now()
    with transaction.atomic():
        # One coupon per customer per 30 days: the customer row lock makes the
        # check and the insert one step, whatever runs concurrently.
        Customer.objects.select_for_update().filter(pk=response.customer_id).first()
        existing = Coupon.objects.filter(response=response).first()
        if existing is not None:
            return existing
        if Coupon.objects.filter(
            customer_id=response.customer_id, issued_at__gt=now - COUPON_PER_CUSTOMER_WINDOW
        ).exists():
            return None
        touchpoint = response.touchpoint
        for _ in range(5):
            try:
                with transaction.atomic():
                    return Coupon.objects.create(
                        response=response,
                        customer_id=response.customer_id,
                        code=new_coupon_code(),
                        offer=touchpoint.promoter_offer,
                        issued_at=now,
                        expires_at=now + timedelta(days=max(touchpoint.coupon_validity_days, 1)),
                    )
            except IntegrityError:
                existing = Coupon.objects.filter(response=response).first()
                if existing is not None:
                    return existing
                # Otherwise two codes collided: draw another.
        raise RuntimeError("Could not draw a unique coupon code.")


def coupon_email_send(*, coupon_id: int) -> str:
    now = timezone.now()
    claimed = (
        Coupon.objects.filter(pk=coupon_id, emailed_at__isnull=True)
        .filter(Q(email_claimed_at__isnull=True) | Q(email_claimed_at__lt=now - EMAIL_CLAIM_TIMEOUT))
        .update(email_claimed_at=now, email_attempts=F("email_attempts") + 1)
    )
    if not claimed:
        emailed = Coupon.objects.filter(pk=coupon_id, emailed_at__isnull=False).exists()
        return "already-emailed" if emailed else "claimed-elsewhere"
    coupon = Coupon.objects.select_related("customer", "response__touchpoint").get(pk=coupon_id)
    if coupon.customer.unsubscribed_at is None and address_is_suppressed(coupon.customer.email):
        customer_suppress(customer_id=coupon.customer_id)
        coupon.customer.unsubscribed_at = timezone.now()
    if coupon.customer.unsubscribed_at is not None:
        Coupon.objects.filter(pk=coupon_id).update(email_claimed_at=None, last_error="Customer unsubscribed.")
        return "unsubscribed"
    link = ReferralLink.objects.filter(customer_id=coupon.customer_id).first()
    try:
        emails.coupon_message(coupon, link).send()
    except (smtplib.SMTPException, OSError) as exc:
        Coupon.objects.filter(pk=coupon_id).update(
            email_claimed_at=None, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise SendFailed(str(exc)) from exc
    Coupon.objects.filter(pk=coupon_id).update(emailed_at=timezone.now(), last_error="")
    stats_mark_dirty(coupon.issued_at)
    return "sent"


def promoters_sweep() -> dict[str, int]:
    """Find every fresh promoter whose coupon was not emailed and enqueue them.

    Reads only unsettled promoter responses (a partial index), so its cost
    does not grow with the total number of responses.
    """
    now = timezone.now()
    closed = Response.objects.filter(
        category=Category.PROMOTER, coupon_settled_at__isnull=True, created_at__lte=now - PROMOTER_WINDOW
    ).update(coupon_settled_at=now)
    due_ids = list(
        Response.objects.filter(
            category=Category.PROMOTER,
            coupon_settled_at__isnull=True,
            created_at__gt=now - PROMOTER_WINDOW,
            created_at__lte=now - SWEEP_GRACE,
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for response_id in due_ids:
        dispatch.enqueue("promoter_reward_task", response_id)
    return {"window_closed": closed, "enqueued": len(due_ids)}


@transaction.atomic
def coupon_redeem(*, code: str) -> Coupon:
    """Mark the coupon redeemed now. Codes are case-insensitive."""
    code = validation.code_or_none(code)
    if code is None:
        raise CouponNotFound(code)
    now = timezone.now()
    redeemed = Coupon.objects.filter(code=code, redeemed_at__isnull=True, expires_at__gt=now).update(
        redeemed_at=now
    )
    coupon = Coupon.objects.filter(code=code).first()
    if coupon is None:
        raise CouponNotFound(code)
    if not redeemed:
        if coupon.redeemed_at is not None:
            raise CouponAlreadyRedeemed(coupon)
        raise CouponExpired(coupon)
    stats_mark_dirty(coupon.issued_at)
    customer = coupon.customer
    webhooks.webhook_event_emit(
        event="coupon.redeemed",
        data={
            "code": coupon.code,
            "redeemed_at": coupon.redeemed_at.isoformat(),
            "issued_at": coupon.issued_at.isoformat(),
            "offer": coupon.offer,
            "customer": {"email": customer.email, "name": customer.name, "external_id": customer.external_id},
        },
        customer_id=customer.pk,
    )
    return coupon



def referral_link_add(*, customer_id: int, touchpoint: Touchpoint, response: Response | None = None) -> None:
    """Give the customer a share link unless they have one: one statement, no savepoint."""
    ReferralLink.objects.bulk_create(
        [ReferralLink(customer_id=customer_id, touchpoint=touchpoint, response=response)], ignore_conflicts=True
    )


def referral_link_ensure(*, customer_id: int, touchpoint: Touchpoint, response: Response | None = None) -> ReferralLink:
    link = ReferralLink.objects.filter(customer_id=customer_id).first()
    if link is None:
        referral_link_add(customer_id=customer_id, touchpoint=touchpoint, response=response)
        link = ReferralLink.objects.get(customer_id=customer_id)
    return link


def referral_visit_record(*, link: ReferralLink, visitor: str) -> bool:
    """Count a visit once per visitor per day. `visitor` (the client's address) is only hashed."""
    today = timezone.localdate()
    visitor_hash = keyed_hash(f"visit|{today.isoformat()}|{visitor}")
    try:
        with transaction.atomic():
            ReferralVisit.objects.create(link=link, visitor_hash=visitor_hash, day=today)
    except IntegrityError:
        return False
    return True


def referral_convert(*, link: ReferralLink, email: str = "", order_id: str = "") -> tuple[ReferralConversion, bool]:
    """Record a referred sign-up or purchase, once per referred email or order id."""
    email = (email or "").strip().lower()
    order_id = (order_id or "").strip()
    if not email and not order_id:
        raise ValidationError("Give the referred customer's email or the order id.")
    reference = f"order:{order_id}" if order_id else f"email:{keyed_hash('referred|' + email)}"
    try:
        with transaction.atomic():
            return ReferralConversion.objects.create(link=link, reference=reference, order_id=order_id), True
    except IntegrityError:
        return ReferralConversion.objects.get(link=link, reference=reference), False
