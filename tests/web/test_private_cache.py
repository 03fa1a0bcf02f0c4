"""Pages and JSON with customers' personal data may not be kept by a browser, proxy or CDN (SPEC §8.7)."""

import base64
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from surveys.models import FollowUpCase
from surveys.promoters.services import coupon_issue, referral_link_ensure

from ..factories import CustomerFactory, ResponseFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


def assert_private(response, status=200):
    assert response.status_code == status, response.content[:500]
    directives = {part.strip().lower() for part in response.get("Cache-Control", "").split(",") if part.strip()}
    assert {"private", "no-store"} <= directives, response.get("Cache-Control")
    assert "public" not in directives


@pytest.fixture
def manager_client(client, django_user_model):
    user = django_user_model.objects.create_user("morgan", "morgan@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="Managers"))
    client.force_login(user)
    return client


@pytest.fixture
def case(db):
    response = ResponseFactory(score=3, reason="Late again, Jane Doe here.")
    return FollowUpCase.objects.create(
        response=response,
        customer=response.customer,
        touchpoint=response.touchpoint,
        due_at=timezone.now() + timedelta(hours=40),
    )


def basic(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(raw_key.encode()).decode()}


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


# --- Manager pages ----------------------------------------------------------------------------


def test_the_dashboard_is_not_kept_in_any_cache(manager_client, case):
    assert_private(manager_client.get("/dashboard/"))


def test_the_dashboard_export_with_names_and_reasons_is_not_kept_in_any_cache(manager_client, case):
    response = manager_client.get("/dashboard/export.csv")

    assert "Late again" in b"".join(response.streaming_content if response.streaming else [response.content]).decode()
    assert_private(response)


def test_the_case_list_is_not_kept_in_any_cache(manager_client, case):
    assert_private(manager_client.get("/cases/"))


def test_a_case_is_not_kept_in_any_cache(manager_client, case):
    response = manager_client.get(f"/cases/{case.pk}/")

    assert "Late again" in response.content.decode()
    assert_private(response)


def test_the_case_page_after_a_change_is_not_kept_in_any_cache(manager_client, case):
    response = manager_client.post(f"/cases/{case.pk}/", {"action": "note", "text": "Called Jane back."}, follow=True)

    assert "Called Jane back." in response.content.decode()
    assert_private(response)


# --- /api/v1/ ---------------------------------------------------------------------------------


def test_a_new_invitation_with_its_survey_link_is_not_kept_in_any_cache(client, api_key):
    touchpoint = TouchpointFactory(slug="web")
    body = {"touchpoint": touchpoint.slug, "email": "ann@example.com", "name": "Ann Lee"}

    response = client.post("/api/v1/invitations", body, content_type="application/json", **bearer(api_key))

    assert "survey_url" in response.json()
    assert_private(response, 201)


def test_a_coupon_redemption_is_not_kept_in_any_cache(client, api_key):
    coupon = coupon_issue(response=ResponseFactory(score=10))

    response = client.post(f"/api/v1/coupons/{coupon.code}/redeem", content_type="application/json", **bearer(api_key))

    assert_private(response)


def test_a_referral_conversion_is_not_kept_in_any_cache(client, api_key):
    answer = ResponseFactory(score=10)
    link = referral_link_ensure(customer_id=answer.customer_id, touchpoint=answer.touchpoint, response=answer)

    response = client.post(
        f"/api/v1/referrals/{link.code}/convert",
        {"email": "friend@example.com"},
        content_type="application/json",
        **bearer(api_key),
    )

    assert_private(response, 201)


def test_api_errors_are_not_kept_in_any_cache_either(client):
    assert_private(client.post("/api/v1/invitations", {}, content_type="application/json"), 401)


# --- /v1/ (Delighted-compatible) ------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/people.json", "/v1/people", "/v1/survey_responses.json", "/v1/metrics.json"])
def test_delighted_reads_with_people_and_answers_are_not_kept_in_any_cache(client, api_key, path):
    ResponseFactory(invitation__customer=CustomerFactory(email="ann@example.com"), score=4, reason="Slow.")

    assert_private(client.get(path, **basic(api_key)))


def test_a_person_created_through_the_delighted_api_is_not_kept_in_any_cache(client, api_key):
    TouchpointFactory(slug="web", is_api_default=True)
    body = json.dumps({"email": "ann@example.com", "name": "Ann Lee", "send": False})

    response = client.post("/v1/people.json", body, content_type="application/json", **basic(api_key))

    assert response.json()["email"] == "ann@example.com"
    assert_private(response)


def test_an_erasure_through_the_delighted_api_is_not_kept_in_any_cache(client, api_key):
    person = CustomerFactory(email="ann@example.com")

    assert_private(client.delete(f"/v1/people/{person.pk}.json", **basic(api_key)), 202)


def test_delighted_errors_are_not_kept_in_any_cache_either(client, api_key):
    assert_private(client.get("/v1/people.json"), 401)
    assert_private(client.delete("/v1/people/999999.json", **basic(api_key)), 404)


def test_the_dashboard_is_not_kept_in_any_cache_under_a_url_prefix_either(manager_client, case):
    # Served under /nps/ (SCRIPT_NAME), the path the app routes is still /dashboard/.
    assert_private(manager_client.get("/dashboard/", SCRIPT_NAME="/nps"))
