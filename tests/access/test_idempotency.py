"""Idempotency-Key on POST /api/v1/invitations (SPEC §3.1, §8.6): a retry replays, another request is refused.

The same key with the same request within 24 hours answers the first answer
again (`Idempotent-Replayed: true`) and creates or sends nothing. The same key
with another body (or for another path or method) answers 422
`idempotency_key_reused`: replaying would hand one customer's survey link to
another.
"""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from surveys.access.services import api_key_create, idempotency_claim, idempotency_complete, idempotency_request_hash
from surveys.customers.services import customer_unsubscribe, customer_upsert
from surveys.models import ApiKey, Customer, IdempotencyRecord, Invitation

pytestmark = pytest.mark.django_db

URL = "/api/v1/invitations"
ANN = {"touchpoint": "delivery", "email": "ann@example.com", "name": "Ann Lee"}
BOB = {"touchpoint": "delivery", "email": "bob@example.com", "name": "Bob Stone"}


def post(client, body: dict | bytes, key: str = "order-1001", **headers):
    data = body if isinstance(body, bytes) else json.dumps(body)
    return client.post(URL, data, content_type="application/json", headers={"Idempotency-Key": key, **headers})


def emails() -> list[str]:
    return sorted(Customer.objects.values_list("email", flat=True))


# --- The same request again: the first answer, nothing new ----------------------------------------


def test_the_same_key_and_body_replay_the_first_answer(api_client, touchpoint):
    first = post(api_client, ANN)

    again = post(api_client, ANN)

    assert first.status_code == 201, first.content
    assert (again.status_code, again.json()) == (201, first.json())
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first


def test_a_replay_creates_and_sends_nothing(api_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, ANN)
    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, ANN)

    assert Invitation.objects.count() == 1
    assert [message.to for message in mail.outbox] == [["ann@example.com"]]


def test_a_skipped_answer_is_replayed_as_it_was(api_client, touchpoint):
    customer_unsubscribe(customer=customer_upsert(email="ann@example.com"))
    first = post(api_client, ANN)

    again = post(api_client, ANN)

    assert first.json() == {"status": "skipped", "reason": "unsubscribed"}
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (200, first.json(), "true")


# --- The same key with another request: refused ---------------------------------------------------


def test_the_same_key_with_another_body_is_refused_with_422(api_client, touchpoint):
    first = post(api_client, ANN)

    reused = post(api_client, BOB)

    assert reused.status_code == 422, reused.content
    body = reused.json()
    assert body["error"] == "idempotency_key_reused"
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Idempotent-Replayed" not in reused
    # Above all, not Ann's answer: her survey link goes to no one else.
    assert first.json()["survey_url"] not in reused.content.decode()


def test_a_refused_body_creates_no_customer_and_no_invitation(
    api_client, touchpoint, django_capture_on_commit_callbacks
):
    post(api_client, ANN)

    with django_capture_on_commit_callbacks(execute=True):
        post(api_client, BOB)

    assert emails() == ["ann@example.com"]
    assert list(Invitation.objects.values_list("customer__email", flat=True)) == ["ann@example.com"]
    assert all(message.to != ["bob@example.com"] for message in mail.outbox)


def test_the_first_request_still_replays_after_a_refused_reuse(api_client, touchpoint):
    first = post(api_client, ANN)
    post(api_client, BOB)

    again = post(api_client, ANN)

    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (201, first.json(), "true")
    assert Invitation.objects.count() == 1


def test_the_same_fields_sent_in_another_order_count_as_another_body(api_client, touchpoint):
    post(api_client, json.dumps(ANN).encode())

    reordered = post(api_client, json.dumps(dict(reversed(ANN.items()))).encode())

    assert (reordered.status_code, reordered.json()["error"]) == (422, "idempotency_key_reused")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/coupons/SAVE10/redeem"), ("PUT", URL)],
    ids=["another-path", "another-method"],
)
def test_a_key_first_used_for_another_path_or_method_is_refused(api_client, api_key, touchpoint, method, path):
    # The integrator used the key before for another request with the very same body.
    body = json.dumps(ANN).encode()
    owner = ApiKey.objects.get(prefix=api_key[:11])
    earlier = idempotency_request_hash(method=method, path=path, body=body)
    assert idempotency_claim(api_key=owner, key="order-1001", request_hash=earlier) is None
    idempotency_complete(api_key=owner, key="order-1001", status_code=200, body={"code": "SAVE10"})

    response = post(api_client, body)

    assert (response.status_code, response.json()["error"]) == (422, "idempotency_key_reused")
    assert not Invitation.objects.exists()


# --- Whose key, and for how long ---------------------------------------------------------------------


def test_another_integrator_may_use_the_same_key_for_its_own_request(api_client, touchpoint):
    first = post(api_client, ANN)
    _, other_key = api_key_create(name="Other CRM")

    other = post(api_client, BOB, Authorization=f"Bearer {other_key}")

    assert other.status_code == 201, other.content
    assert "Idempotent-Replayed" not in other
    assert other.json()["survey_url"] != first.json()["survey_url"]
    assert emails() == ["ann@example.com", "bob@example.com"]


def test_after_24_hours_the_key_is_free_again(api_client, touchpoint):
    post(api_client, ANN)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    later = post(api_client, BOB)

    assert later.status_code == 201, later.content
    assert "Idempotent-Replayed" not in later
    assert emails() == ["ann@example.com", "bob@example.com"]
