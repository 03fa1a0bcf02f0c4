"""Security headers, rate limits, login lockout and request size caps."""

import base64

import pytest
from django.contrib.auth.models import User

from surveys.models import Response

pytestmark = pytest.mark.django_db


def _directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


def test_pages_carry_a_content_security_policy_without_inline_scripts(client, invitation):
    response = client.get(f"/s/{invitation.token}/")

    policy = _directives(response["Content-Security-Policy"])
    assert policy["script-src"] == ["'self'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]


def test_survey_urls_do_not_leak_through_the_referer_and_pages_cannot_be_framed(client, invitation):
    response = client.get(f"/s/{invitation.token}/")

    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_no_page_of_ours_has_an_inline_script(client, invitation, admin_client):
    pages = [client.get(f"/s/{invitation.token}/"), admin_client.get("/dashboard/"), admin_client.get("/cases/")]
    for page in pages:
        html = page.content.decode()
        for chunk in html.split("<script")[1:]:
            tag = chunk.split(">", 1)[0]
            # Only external scripts, or JSON data that browsers never run.
            assert "src=" in tag or 'type="application/json"' in tag, tag


def test_too_many_answers_for_one_survey_get_a_friendly_429(client, invitation, settings):
    settings.NPS_RATE_SURVEY_PER_TOKEN = "3/m"
    for _ in range(3):
        client.post(f"/s/{invitation.token}/", {"score": "11"})  # invalid: nothing recorded

    response = client.post(f"/s/{invitation.token}/", {"score": "9"})

    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    assert "Please wait a moment" in response.content.decode()
    assert not Response.objects.exists()


def test_too_many_answers_from_one_address_are_limited_across_surveys(client, settings):
    from ..factories import InvitationFactory

    settings.NPS_RATE_SURVEY_PER_IP = "2/m"
    invitations = InvitationFactory.create_batch(3)
    answers = [client.post(f"/s/{item.token}/", {"score": "8"}) for item in invitations]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    assert Response.objects.count() == 2


def test_the_api_answers_429_with_retry_after_when_a_key_is_over_its_limit(api_client, touchpoint, settings):
    settings.NPS_RATE_API_PER_KEY = "2/m"
    body = {"touchpoint": touchpoint.slug, "email": "a@example.com"}
    for _ in range(2):
        api_client.post("/api/v1/invitations", body, content_type="application/json")

    response = api_client.post("/api/v1/invitations", body, content_type="application/json")

    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert response["Retry-After"] == "60"


def test_the_delighted_api_answers_429_as_its_clients_expect(client, api_key, settings):
    settings.NPS_RATE_API_PER_KEY = "1/m"
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(api_key.encode()).decode()}
    assert client.get("/v1/metrics.json", **auth).status_code == 200

    response = client.get("/v1/metrics.json", **auth)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert response.json()["status"] == 429


def test_repeated_wrong_passwords_lock_the_login_with_a_429(client, settings):
    User.objects.create_user("manager", "m@example.com", "the-right-passphrase")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "manager", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "manager", "password": "the-right-passphrase"})

    assert response.status_code == 429
    assert "Too many sign-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_right_password_after_a_few_mistakes_still_signs_in(client):
    User.objects.create_user("manager", "m@example.com", "the-right-passphrase")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "manager", "password": "wrong"})

    response = client.post("/accounts/login/", {"username": "manager", "password": "the-right-passphrase"})

    assert response.status_code == 302


def test_an_oversized_api_body_gets_a_json_error_not_a_crash(api_client, touchpoint):
    body = '{"touchpoint": "%s", "email": "a@example.com", "name": "%s"}' % (touchpoint.slug, "x" * 2_000_000)

    response = api_client.post("/api/v1/invitations", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


def test_an_oversized_delighted_body_gets_a_json_error(client, api_key):
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(api_key.encode()).decode()}

    response = client.post("/v1/people.json", '{"email": "%s"}' % ("x" * 2_000_000), content_type="application/json", **auth)

    assert response.status_code == 413
    assert response.json()["status"] == 413
