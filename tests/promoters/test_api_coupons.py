"""POST /api/v1/coupons/<code>/redeem: the till or the web shop redeems a promoter's coupon."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from surveys.access.services import api_key_create, api_key_revoke
from surveys.models import Coupon
from surveys.promoters.services import coupon_issue

from ..factories import ResponseFactory


@pytest.fixture
def coupon(db):
    return coupon_issue(response=ResponseFactory(score=10))


def redeem(client, code, **extra):
    return client.post(f"/api/v1/coupons/{code}/redeem", content_type="application/json", **extra)


def assert_error(response, status, error):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_it_redeems_a_coupon(api_client, coupon):
    response = redeem(api_client, coupon.code)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"code", "redeemed_at"}
    assert body["code"] == coupon.code
    coupon.refresh_from_db()
    assert parse_datetime(body["redeemed_at"]) == coupon.redeemed_at
    assert abs(coupon.redeemed_at - timezone.now()) < timedelta(seconds=10)


def test_codes_are_case_insensitive(api_client, coupon):
    response = redeem(api_client, coupon.code.lower())

    assert response.status_code == 200
    assert response.json()["code"] == coupon.code
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is not None


def test_a_second_redemption_is_refused_with_409(api_client, coupon):
    first = redeem(api_client, coupon.code).json()

    body = assert_error(redeem(api_client, coupon.code), 409, "coupon_already_redeemed")

    assert parse_datetime(body["redeemed_at"]) == parse_datetime(first["redeemed_at"])
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at == parse_datetime(first["redeemed_at"])


def test_an_expired_coupon_is_refused_with_410(api_client, coupon):
    now = timezone.now()
    Coupon.objects.filter(pk=coupon.pk).update(issued_at=now - timedelta(days=30), expires_at=now - timedelta(minutes=1))

    body = assert_error(redeem(api_client, coupon.code), 410, "coupon_expired")

    assert (now - timedelta(minutes=1)).date().isoformat() in body["detail"]
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


@pytest.mark.parametrize("code", ["LP-2345-6789", "nothing", "LP-%00-AAAA", "x" * 300])
def test_an_unknown_code_is_404(api_client, coupon, code):
    assert_error(redeem(api_client, code), 404, "coupon_not_found")

    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


def test_it_needs_an_api_key(client, coupon):
    response = redeem(client, coupon.code)

    assert_error(response, 401, "unauthorized")
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


def test_it_refuses_a_wrong_or_revoked_key(client, coupon):
    api_key, raw_key = api_key_create(name="Till")
    api_key_revoke(api_key=api_key)

    assert_error(redeem(client, coupon.code, HTTP_AUTHORIZATION="Bearer lp_not-a-key"), 401, "unauthorized")
    assert_error(redeem(client, coupon.code, HTTP_AUTHORIZATION=f"Bearer {raw_key}"), 401, "unauthorized")
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None


def test_a_get_is_405_and_redeems_nothing(api_client, coupon):
    response = api_client.get(f"/api/v1/coupons/{coupon.code}/redeem")

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"
    assert Coupon.objects.get(pk=coupon.pk).redeemed_at is None
