"""Suppression holds (SPEC §8.2): an erased address gets no email of any kind, however it comes back."""

import base64
import io
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from surveys.customers.services import address_hash, address_is_suppressed, customer_change_email, customer_import_row
from surveys.imports import customers as imports
from surveys.invitations.services import invitations_send_batch, invitations_sweep, reminder_send
from surveys.models import Customer, Invitation, SuppressedAddress
from surveys.privacy.services import customer_erase
from surveys.promoters.services import promoter_reward
from surveys.responses.services import response_submit

from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


def basic(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{raw_key}:".encode()).decode()}


def sent_to(address: str) -> list:
    return [message for message in mail.outbox if address in message.to]


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", is_api_default=True, cooldown_days=0)


def erase(email: str) -> None:
    customer_erase(customer=CustomerFactory(email=email))


def test_an_email_change_onto_an_erased_address_sends_it_nothing(
    client, api_key, touchpoint, django_capture_on_commit_callbacks
):
    erase("bo@example.org")

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            "/v1/people.json", {"email": "carrier@example.org", "email_update": "bo@example.org"}, **basic(api_key)
        )
        invitations_sweep()

    assert answer.status_code == 200, answer.content
    assert "survey_scheduled_at" not in answer.json()
    assert answer.json()["survey_skipped"] == "unsubscribed"
    assert sent_to("bo@example.org") == []
    assert Customer.objects.get(email="bo@example.org").unsubscribed_at is not None


def test_a_pending_survey_is_cancelled_when_its_customer_moves_onto_an_erased_address(touchpoint):
    erase("bo@example.org")
    carrier = CustomerFactory(email="carrier@example.org")
    pending = InvitationFactory(customer=carrier, touchpoint=touchpoint, status="pending", sent_at=None)

    customer_change_email(customer=carrier, email="BO@example.org")
    invitations_send_batch(invitation_ids=[pending.pk])

    pending.refresh_from_db()
    assert pending.status == Invitation.Status.CANCELLED
    assert mail.outbox == []


@pytest.mark.parametrize(
    "erased, returning",
    [
        ("zoe@exämple.org", "zoe@xn--exmple-cua.org"),
        ("zoe@xn--exmple-cua.org", "Zoe@EXÄMPLE.org"),
        ("  Zoe@Example.ORG ", "zoe@example.org"),
        # The same text in decomposed Unicode (a + combining diaeresis) and composed.
        ("zoe@exa\u0308mple.org", "zoe@ex\u00e4mple.org"),
    ],
)
def test_an_erased_address_is_recognised_in_another_spelling(client, api_key, touchpoint, erased, returning):
    customer = Customer.objects.create(email=erased.strip())
    customer_erase(customer=customer)

    answer = client.post("/api/v1/invitations", {"touchpoint": "delivery", "email": returning},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")

    assert answer.status_code == 200, answer.content
    assert answer.json() == {"status": "skipped", "reason": "unsubscribed"}


def test_rotating_the_secret_key_keeps_the_list_while_the_old_key_is_a_fallback(settings, touchpoint):
    settings.SECRET_KEY = "first-secret-" + "x" * 50
    erase("bo@example.org")

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "second-secret-" + "y" * 50, ["first-secret-" + "x" * 50]
    assert address_is_suppressed("bo@example.org")
    returning, _ = customer_import_row(email="bo@example.org", name="Bo")
    assert returning.unsubscribed_at is not None

    # And only while it is one: the README says to keep the old key there (or to set NPS_HASH_KEY).
    settings.SECRET_KEY_FALLBACKS = []
    assert not address_is_suppressed("bo@example.org")


def test_with_its_own_hash_key_the_list_survives_any_secret_key_rotation(settings):
    settings.NPS_HASH_KEY = "suppression-key-" + "z" * 40
    settings.SECRET_KEY = "first-secret-" + "x" * 50
    erase("bo@example.org")

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "second-secret-" + "y" * 50, []

    assert address_is_suppressed("bo@example.org")
    assert SuppressedAddress.objects.count() == 1


def test_an_address_suppressed_after_an_invitation_was_queued_gets_no_invitation(touchpoint):
    customer = CustomerFactory(email="late@example.org")
    pending = InvitationFactory(customer=customer, touchpoint=touchpoint, status="pending", sent_at=None)
    # The address was erased elsewhere (another record of the same person, merged) after the survey was queued.
    SuppressedAddress.objects.create(address_hash=address_hash("late@example.org"))

    invitations_send_batch(invitation_ids=[pending.pk])

    pending.refresh_from_db()
    assert (pending.status, mail.outbox) == (Invitation.Status.CANCELLED, [])
    assert "suppression list" in pending.last_error
    customer.refresh_from_db()
    assert customer.unsubscribed_at is not None


def test_an_address_suppressed_after_the_invitation_went_gets_no_reminder(touchpoint):
    customer = CustomerFactory(email="late@example.org")
    sent = InvitationFactory(customer=customer, touchpoint=touchpoint, remind_after=timezone.now() - timedelta(hours=1))
    SuppressedAddress.objects.create(address_hash=address_hash("late@example.org"))

    outcome = reminder_send(invitation_id=sent.pk)

    assert (outcome, mail.outbox) == ("suppressed", [])


def test_an_address_suppressed_before_the_coupon_went_gets_no_coupon(touchpoint, django_capture_on_commit_callbacks):
    customer = CustomerFactory(email="late@example.org")
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint)
    response = response_submit(invitation=invitation, score=10)
    SuppressedAddress.objects.create(address_hash=address_hash("late@example.org"))

    outcome = promoter_reward(response_id=response.pk)

    assert (outcome, sent_to("late@example.org")) == ("unsubscribed", [])


def test_an_import_that_moves_a_customer_onto_an_erased_address_unsubscribes_them(touchpoint):
    erase("bo@example.org")
    CustomerFactory(email="carrier@example.org", external_id="crm-1")

    summary = imports.customers_import(
        binary=io.BytesIO(b"email,name,external_id\nbo@example.org,Carrier,crm-1\n"), touchpoint=touchpoint, send=True
    )

    assert (summary.updated, summary.invited, dict(summary.skipped)) == (1, 0, {"unsubscribed": 1})
    assert Customer.objects.get(external_id="crm-1").unsubscribed_at is not None


def test_erasure_suppresses_the_addresses_the_person_had_before(client, api_key, touchpoint):
    client.post("/v1/people.json", {"email": "old@example.org", "send": "false"}, **basic(api_key))
    client.post("/v1/people.json", {"email": "old@example.org", "email_update": "new@example.org", "send": "false"},
                **basic(api_key))

    customer_erase(customer=Customer.objects.get(email="new@example.org"))

    assert address_is_suppressed("old@example.org")
    assert address_is_suppressed("new@example.org")
    assert not address_is_suppressed("other@example.org")


def test_the_upgrade_stores_earlier_addresses_canonically_unless_that_would_merge_two_customers():
    from importlib import import_module

    from django.apps import apps

    mixed = Customer.objects.create(email="Ann@Example.COM")
    unicode_domain = Customer.objects.create(email="zoe@exämple.org")
    Customer.objects.create(email="bob@example.org")
    twin = Customer.objects.create(email="BOB@Example.org ")

    import_module("surveys.migrations.0013_trust").emails_canonical(apps, None)

    assert Customer.objects.get(pk=mixed.pk).email == "ann@example.com"
    assert Customer.objects.get(pk=unicode_domain.pk).email == "zoe@xn--exmple-cua.org"
    assert Customer.objects.get(pk=twin.pk).email == "BOB@Example.org "  # left for an admin to merge
