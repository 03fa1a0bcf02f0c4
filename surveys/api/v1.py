"""The JSON API for integrators: invitations, coupon redemption, referral conversions.

Authentication is `Authorization: Bearer <key>`. Every error answers
`{"error": "<code>", "detail": "<text for a person>"}`.
"""


from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from surveys.access import services as access
from surveys.api import common
from surveys.customers import services as customers
from surveys.invitations import services as invitations
from surveys.mail import messages as emails
from surveys.models import ApiKey, ApiScope
from surveys.promoters import services as promoters
from surveys.promoters.selectors import referral_link_for_code
from surveys.touchpoints.selectors import touchpoint_for_slug
from surveys.web.forms import InvitationRequestForm, ReferralConversionForm

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def api_error(status: int, code: str, detail: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail, **extra}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


def _refused(refusal: common.Refusal) -> JsonResponse:
    return refusal.onto(api_error(refusal.status, refusal.code, refusal.message))


def _admit(request: HttpRequest, scope: str) -> ApiKey:
    return common.admit(
        request, raw_key=common.bearer_key(request), scope=scope, how="as 'Authorization: Bearer <key>'"
    )


def _parse_json_object(request: HttpRequest) -> tuple[dict | None, JsonResponse | None]:
    content_type = request.content_type or ""
    if content_type not in ("application/json", "") and not content_type.endswith("+json"):
        return None, api_error(415, "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).")
    try:
        return common.json_object(common.body_bytes(request)), None
    except common.Refusal as refusal:
        return None, _refused(refusal)
    except ValueError as exc:
        return None, api_error(400, "malformed_json", str(exc))


@csrf_exempt
def invitations_create(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        response = api_error(405, "method_not_allowed", "Use POST to create an invitation.")
        response["Allow"] = "POST"
        return response
    try:
        api_key = _admit(request, ApiScope.INVITATIONS)
    except common.Refusal as refusal:
        return _refused(refusal)
    data, error = _parse_json_object(request)
    if error is not None:
        return error
    idempotency_key = request.headers.get("Idempotency-Key", "").strip()
    if len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH or "\x00" in idempotency_key:
        return api_error(
            400, "invalid_idempotency_key", "The Idempotency-Key header is at most 255 characters, without NUL."
        )

    form = InvitationRequestForm(data)
    if not form.is_valid():
        fields = {field: [str(e) for e in errors] for field, errors in form.errors.items()}
        first_field, first_errors = next(iter(fields.items()))
        return api_error(400, "invalid_request", f"{first_field}: {first_errors[0]}", fields=fields)
    touchpoint = touchpoint_for_slug(slug=form.cleaned_data["touchpoint"])
    if touchpoint is None:
        return api_error(404, "touchpoint_not_found", f"No touchpoint has the slug {form.cleaned_data['touchpoint']!r}.")

    with transaction.atomic():
        if idempotency_key:
            request_hash = access.idempotency_request_hash(method=request.method, path=request.path, body=request.body)
            try:
                earlier = access.idempotency_claim(api_key=api_key, key=idempotency_key, request_hash=request_hash)
            except access.IdempotencyKeyReused:
                return api_error(
                    422, "idempotency_key_reused",
                    "This Idempotency-Key was used for a different request in the last 24 hours; use a new key.",
                )
            if earlier is not None:
                replay = JsonResponse(earlier.body, status=earlier.status_code)
                replay["Idempotent-Replayed"] = "true"
                return replay
        try:
            customer = customers.customer_upsert(
                email=form.cleaned_data["email"],
                name=form.cleaned_data["name"],
                external_id=form.cleaned_data["external_id"] or None,
            )
        except customers.CustomerErased as exc:
            transaction.set_rollback(True)
            return api_error(422, "customer_erased", str(exc))
        except customers.CustomerConflict as exc:
            transaction.set_rollback(True)
            return api_error(409, "customer_conflict", str(exc))
        outcome = invitations.invitation_request(touchpoint=touchpoint, customer=customer)
        if outcome.skipped:
            status, body = 200, {"status": "skipped", "reason": outcome.skip_reason}
        else:
            invitation = outcome.invitation
            status = 201
            body = {"id": invitation.pk, "status": invitation.status, "survey_url": emails.survey_url(invitation)}
        if idempotency_key:
            access.idempotency_complete(
                api_key=api_key, key=idempotency_key, status_code=status, body=body, customer=customer
            )
    return JsonResponse(body, status=status)


def _api_post(request: HttpRequest, scope: str) -> tuple[ApiKey | None, JsonResponse | None]:
    """Method, key, scope and rate-limit checks shared by the POST endpoints."""
    if request.method != "POST":
        response = api_error(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return None, response
    try:
        return _admit(request, scope), None
    except common.Refusal as refusal:
        return None, _refused(refusal)


@csrf_exempt
def coupon_redeem(request: HttpRequest, code: str) -> JsonResponse:
    _, error = _api_post(request, ApiScope.COUPONS)
    if error is not None:
        return error
    try:
        coupon = promoters.coupon_redeem(code=code)
    except promoters.CouponNotFound:
        return api_error(404, "coupon_not_found", "No coupon has this code.")
    except promoters.CouponAlreadyRedeemed as exc:
        return api_error(
            409,
            "coupon_already_redeemed",
            f"This coupon was already redeemed on {exc.coupon.redeemed_at:%Y-%m-%d %H:%M} UTC.",
            redeemed_at=exc.coupon.redeemed_at.isoformat(),
        )
    except promoters.CouponExpired as exc:
        return api_error(
            410,
            "coupon_expired",
            f"This coupon expired on {timezone.localdate(exc.coupon.expires_at):%Y-%m-%d}.",
            expires_at=exc.coupon.expires_at.isoformat(),
        )
    return JsonResponse({"code": coupon.code, "redeemed_at": coupon.redeemed_at.isoformat()})


@csrf_exempt
def referral_convert(request: HttpRequest, code: str) -> JsonResponse:
    _, error = _api_post(request, ApiScope.ORDERS)
    if error is not None:
        return error
    data, error = _parse_json_object(request)
    if error is not None:
        return error
    link = referral_link_for_code(code=code)
    if link is None:
        return api_error(404, "referral_not_found", "No referral link has this code.")
    email, order_id = data.get("email", ""), data.get("order_id", "")
    if not isinstance(email, str) or not isinstance(order_id, str):
        return api_error(400, "invalid_request", "email and order_id must be strings.")
    if email:
        form = ReferralConversionForm({"email": email})
        if not form.is_valid():
            return api_error(400, "invalid_request", f"email: {form.errors['email'][0]}")
        email = form.cleaned_data["email"]
    if len(order_id) > 120:
        return api_error(400, "invalid_request", "order_id: at most 120 characters.")
    try:
        conversion, created = promoters.referral_convert(link=link, email=email, order_id=order_id)
    except ValidationError as exc:
        return api_error(400, "invalid_request", exc.messages[0])
    body = {"code": link.code, "converted_at": conversion.created_at.isoformat(), "created": created}
    return JsonResponse(body, status=201 if created else 200)
