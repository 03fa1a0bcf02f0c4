"""POST /api/v1/invitations (SPEC §3.1)."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from surveys.access.services import api_key_create, api_key_revoke
from surveys.customers.services import customer_unsubscribe
from surveys.models import Customer, IdempotencyRecord, Invitation, SurveySkip

from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory

URL = "/api/v1/invitations"


def post(client, body, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data, content_type="application/json", headers=headers)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert isinstance(body.get("detail"), str) and body["detail"]
    if code is not None:
        assert body["error"] == code
    return body


def assert_nothing_happened():
    assert not Invitation.objects.exists()
    assert not Customer.objects.exists()
    assert not SurveySkip.objects.exists()
    assert mail.outbox == []


# --- created ---------------------------------------------------------------------


@pytest.mark.django_db
def test_it_creates_an_invitation(api_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            api_client,
            {"touchpoint": "delivery", "email": "Ann@Example.com", "name": "Ann Lee", "external_id": "crm-7"},
        )

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "status", "survey_url"}
    invitation = Invitation.objects.get(pk=body["id"])
    assert body["status"] == "pending"
    assert body["survey_url"] == f"https://surveys.example.com/s/{invitation.token}/"
    assert invitation.touchpoint == touchpoint
    # The address in its canonical form (SPEC §8.2), the one every comparison uses.
    assert (invitation.customer.email, invitation.customer.name, invitation.customer.external_id) == (
        "ann@example.com",
        "Ann Lee",
        "crm-7",
    )


@pytest.mark.django_db
def test_the_survey_url_opens_the_survey(api_client, client, touchpoint):
    survey_url = post(api_client, {"touchpoint": "delivery", "email": "ann@example.com"}).json()["survey_url"]

    page = client.get(survey_url.removeprefix("https://surveys.example.com"))

    assert page.status_code == 200


@pytest.mark.django_db
def test_the_invitation_email_goes_out_only_after_commit(api_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, {"touchpoint": "delivery", "email": "ann@example.com"})
        assert mail.outbox == []

    assert response.status_code == 201
    assert [m.to for m in mail.outbox] == [["ann@example.com"]]
    invitation = Invitation.objects.get()
    assert invitation.token in mail.outbox[0].body
    assert invitation.status == Invitation.Status.SENT


@pytest.mark.django_db
def test_the_email_is_not_sent_when_the_transaction_does_not_commit(api_client, touchpoint):
    # Without the on-commit hooks running (the test's transaction is rolled back), nothing is sent.
    response = post(api_client, {"touchpoint": "delivery", "email": "ann@example.com"})

    assert response.status_code == 201
    assert mail.outbox == []


@pytest.mark.django_db
def test_it_reuses_an_existing_customer(api_client, customer, touchpoint):
    response = post(api_client, {"touchpoint": "delivery", "email": "JANE@example.com"})

    assert response.status_code == 201
    assert Customer.objects.count() == 1
    assert Invitation.objects.get().customer == customer


# --- skipped -----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_skips_an_unsubscribed_customer(api_client, customer, touchpoint, django_capture_on_commit_callbacks):
    customer_unsubscribe(customer=customer)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, {"touchpoint": "delivery", "email": "jane@example.com"})

    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "reason": "unsubscribed"}
    assert not Invitation.objects.exists()
    assert mail.outbox == []
    assert SurveySkip.objects.get().reason == "unsubscribed"


@pytest.mark.django_db
def test_it_skips_an_inactive_touchpoint(api_client):
    TouchpointFactory(slug="closed-store", is_active=False)

    response = post(api_client, {"touchpoint": "closed-store", "email": "ann@example.com"})

    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "reason": "inactive_touchpoint"}
    assert not Invitation.objects.exists()
    assert SurveySkip.objects.get().reason == "inactive_touchpoint"


@pytest.mark.django_db
def test_it_skips_a_customer_in_cooldown(api_client, customer, touchpoint, django_capture_on_commit_callbacks):
    InvitationFactory(customer=customer, touchpoint=TouchpointFactory(slug="store-visit"))

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, {"touchpoint": "delivery", "email": "jane@example.com"})

    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "reason": "cooldown"}
    assert Invitation.objects.count() == 1
    assert mail.outbox == []
    assert SurveySkip.objects.get().reason == "cooldown"


# --- authentication ------------------------------------------------------------------


@pytest.mark.django_db
def test_it_requires_an_api_key(client, touchpoint):
    response = post(client, {"touchpoint": "delivery", "email": "ann@example.com"})

    assert_error(response, 401)
    assert "Bearer" in response["WWW-Authenticate"]
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "authorization",
    ["Bearer lp_not-a-real-key", "Bearer ", "Bearer", "Basic dXNlcjpwYXNz", "lp_no_scheme", "Token {key}", "{key}"],
)
def test_it_rejects_a_bad_api_key(client, api_key, touchpoint, authorization):
    response = post(
        client,
        {"touchpoint": "delivery", "email": "ann@example.com"},
        Authorization=authorization.format(key=api_key),
    )

    assert_error(response, 401)
    assert_nothing_happened()


@pytest.mark.django_db
def test_it_rejects_a_revoked_api_key(client, touchpoint):
    api_key, raw_key = api_key_create(name="Old helpdesk")
    api_key_revoke(api_key=api_key)

    response = post(client, {"touchpoint": "delivery", "email": "ann@example.com"}, Authorization=f"Bearer {raw_key}")

    assert_error(response, 401)
    assert_nothing_happened()


@pytest.mark.django_db
def test_the_bearer_scheme_is_case_insensitive(client, api_key, touchpoint):
    response = post(client, {"touchpoint": "delivery", "email": "ann@example.com"}, Authorization=f"bearer {api_key}")

    assert response.status_code == 201


# --- bad requests ----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_answers_404_for_an_unknown_touchpoint(api_client, touchpoint):
    response = post(api_client, {"touchpoint": "no-such-thing", "email": "ann@example.com"})

    body = assert_error(response, 404)
    assert "no-such-thing" in body["detail"]
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize("raw", ["{not json", "", '{"touchpoint": "delivery",}', b"\xff\xfe{}"])
def test_it_rejects_malformed_json(api_client, touchpoint, raw):
    assert_error(post(api_client, raw), 400)
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [[{"touchpoint": "delivery", "email": "ann@example.com"}], "ann@example.com", 42, None]
)
def test_it_rejects_a_json_body_that_is_not_an_object(api_client, touchpoint, body):
    assert_error(post(api_client, json.dumps(body)), 400)
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, field",
    [
        ({"touchpoint": "delivery"}, "email"),
        ({"email": "ann@example.com"}, "touchpoint"),
        ({"touchpoint": "delivery", "email": ""}, "email"),
        ({"touchpoint": "delivery", "email": None}, "email"),
        ({"touchpoint": "delivery", "email": "not-an-email"}, "email"),
        ({"touchpoint": "delivery", "email": "ann@"}, "email"),
        ({"touchpoint": "delivery", "email": "ann@example.com\r\nBcc: x@y.com"}, "email"),
        ({"touchpoint": "delivery", "email": "a" * 250 + "@example.com"}, "email"),
    ],
)
def test_it_rejects_a_missing_or_invalid_field(api_client, touchpoint, body, field):
    response = post(api_client, body)

    error = assert_error(response, 400)
    assert field in error["detail"]
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {"email": 123},
        {"email": ["ann@example.com"]},
        {"touchpoint": 5},
        {"touchpoint": {"slug": "delivery"}},
        {"name": ["Ann"]},
        {"name": 7},
        {"name": True},
        {"external_id": 42},
        {"external_id": {"id": "crm-1"}},
    ],
)
def test_it_rejects_non_string_fields(api_client, touchpoint, extra):
    body = {"touchpoint": "delivery", "email": "ann@example.com", **extra}

    error = assert_error(post(api_client, body), 400)

    assert next(iter(extra)) in error["detail"]
    assert_nothing_happened()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "extra",
    [
        {"name": "Ann\r\nBcc: x@y"},
        {"name": "Ann\nBcc: x@y"},
        {"name": "Ann\x00"},
        {"external_id": "crm-1\r\nBcc: x@y"},
    ],
)
def test_it_rejects_header_injection(api_client, touchpoint, extra, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api_client, {"touchpoint": "delivery", "email": "ann@example.com", **extra})

    assert_error(response, 400)
    assert_nothing_happened()


@pytest.mark.django_db
def test_it_refuses_an_external_id_that_belongs_to_another_customer(api_client, customer, touchpoint):
    CustomerFactory(email="other@example.com", external_id="crm-2")

    response = post(
        api_client,
        {"touchpoint": "delivery", "email": "jane@example.com", "external_id": "crm-2"},
        **{"Idempotency-Key": "k1"},
    )

    assert_error(response, 409)
    assert not Invitation.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    customer.refresh_from_db()
    assert customer.external_id is None


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_it_only_accepts_post(api_client, touchpoint, method):
    response = getattr(api_client, method)(URL)

    assert_error(response, 405)
    assert response["Allow"] == "POST"


# --- idempotency ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_repeat_with_the_same_idempotency_key_replays_the_first_answer(
    api_client, touchpoint, django_capture_on_commit_callbacks
):
    body = {"touchpoint": "delivery", "email": "ann@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api_client, body, **{"Idempotency-Key": "order-1001"})
    with django_capture_on_commit_callbacks(execute=True):
        second = post(api_client, body, **{"Idempotency-Key": "order-1001"})

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert Invitation.objects.count() == 1
    assert len(mail.outbox) == 1
    assert not SurveySkip.objects.exists()


@pytest.mark.django_db
def test_a_repeated_skip_replays_the_skip_and_records_nothing_more(
    api_client, customer, touchpoint, django_capture_on_commit_callbacks
):
    customer_unsubscribe(customer=customer)
    body = {"touchpoint": "delivery", "email": "jane@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api_client, body, **{"Idempotency-Key": "ticket-55"})
        second = post(api_client, body, **{"Idempotency-Key": "ticket-55"})

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"status": "skipped", "reason": "unsubscribed"}
    assert SurveySkip.objects.count() == 1
    assert not Invitation.objects.exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_replay_stands_even_when_the_situation_changed(api_client, customer, touchpoint):
    body = {"touchpoint": "delivery", "email": "jane@example.com"}
    first = post(api_client, body, **{"Idempotency-Key": "k1"})
    customer_unsubscribe(customer=customer)

    second = post(api_client, body, **{"Idempotency-Key": "k1"})

    assert second.status_code == 201
    assert second.json() == first.json()
    assert not SurveySkip.objects.exists()


@pytest.mark.django_db
def test_a_different_idempotency_key_creates_a_new_invitation(api_client, django_capture_on_commit_callbacks):
    TouchpointFactory(slug="delivery", cooldown_days=0)
    body = {"touchpoint": "delivery", "email": "ann@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api_client, body, **{"Idempotency-Key": "order-1"})
    with django_capture_on_commit_callbacks(execute=True):
        second = post(api_client, body, **{"Idempotency-Key": "order-2"})

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    assert Invitation.objects.count() == 2
    assert len(mail.outbox) == 2


@pytest.mark.django_db
def test_the_same_idempotency_key_from_another_api_key_is_independent(
    api_client, client, django_capture_on_commit_callbacks
):
    TouchpointFactory(slug="delivery", cooldown_days=0)
    _, other_key = api_key_create(name="POS")
    body = {"touchpoint": "delivery", "email": "ann@example.com"}
    first = post(api_client, body, **{"Idempotency-Key": "same"})

    second = post(client, body, Authorization=f"Bearer {other_key}", **{"Idempotency-Key": "same"})

    assert first.status_code == second.status_code == 201
    assert Invitation.objects.count() == 2


@pytest.mark.django_db
def test_an_idempotency_key_older_than_24_hours_is_treated_as_new(api_client, django_capture_on_commit_callbacks):
    TouchpointFactory(slug="delivery", cooldown_days=0)
    body = {"touchpoint": "delivery", "email": "ann@example.com"}
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api_client, body, **{"Idempotency-Key": "order-1"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

    with django_capture_on_commit_callbacks(execute=True):
        second = post(api_client, body, **{"Idempotency-Key": "order-1"})

    assert second.status_code == 201
    assert second.json()["id"] != first.json()["id"]
    assert Invitation.objects.count() == 2
    assert len(mail.outbox) == 2
    # The key now remembers the new answer.
    with django_capture_on_commit_callbacks(execute=True):
        third = post(api_client, body, **{"Idempotency-Key": "order-1"})
    assert third.json() == second.json()
    assert Invitation.objects.count() == 2


@pytest.mark.django_db
def test_an_idempotency_key_within_24_hours_still_replays(api_client, touchpoint):
    body = {"touchpoint": "delivery", "email": "ann@example.com"}
    first = post(api_client, body, **{"Idempotency-Key": "order-1"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))

    second = post(api_client, body, **{"Idempotency-Key": "order-1"})

    assert (second.status_code, second.json()) == (201, first.json())
    assert Invitation.objects.count() == 1


@pytest.mark.django_db
def test_a_request_that_failed_validation_does_not_use_up_the_idempotency_key(api_client, touchpoint):
    bad = post(api_client, {"touchpoint": "delivery", "email": "nope"}, **{"Idempotency-Key": "order-1"})
    good = post(api_client, {"touchpoint": "delivery", "email": "ann@example.com"}, **{"Idempotency-Key": "order-1"})

    assert_error(bad, 400)
    assert good.status_code == 201
    assert Invitation.objects.count() == 1


@pytest.mark.django_db
def test_it_rejects_an_overlong_idempotency_key(api_client, touchpoint):
    response = post(
        api_client, {"touchpoint": "delivery", "email": "ann@example.com"}, **{"Idempotency-Key": "k" * 256}
    )

    assert_error(response, 400)
    assert_nothing_happened()
