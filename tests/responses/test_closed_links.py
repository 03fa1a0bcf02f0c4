"""Closed links stay closed (SPEC §8.3): a cancelled or failed invitation's link shows the 410 page and takes nothing."""

import base64

import pytest
from django.core import mail

from surveys.customers.services import customer_unsubscribe
from surveys.models import FollowUpCase, Invitation, Response, WebhookDelivery, WebhookEndpoint
from surveys.privacy.services import customer_erase
from surveys.responses.services import InvitationClosed, response_submit

from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", alert_recipients="cx@acme.test")


@pytest.fixture
def listening(db):
    return WebhookEndpoint.objects.create(name="CRM", url="https://crm.example.com/hook",
                                          events=["response.created", "case.opened"])


def answered_nothing(invitation: Invitation) -> bool:
    return not Response.objects.filter(invitation=invitation).exists() and not FollowUpCase.objects.exists()


def test_a_survey_cancelled_through_the_delighted_api_takes_no_answer(
    client, api_key, touchpoint, listening, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(email="ann@example.com")
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint, status="pending", sent_at=None)
    auth = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
    cancelled = client.delete("/v1/people/ann@example.com/survey_requests/pending.json", HTTP_AUTHORIZATION=auth)
    assert cancelled.status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        shown = client.get(f"/s/{invitation.token}/?score=2")
        posted = client.post(f"/s/{invitation.token}/", {"score": "2", "reason": "Never came"})

    assert (shown.status_code, posted.status_code) == (410, 410)
    assert "This survey has closed" in shown.content.decode()
    assert answered_nothing(invitation)
    assert mail.outbox == []
    assert not WebhookDelivery.objects.exists()


def test_a_failed_invitation_takes_no_answer(client, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint, status=Invitation.Status.FAILED, sent_at=None)

    posted = client.post(f"/s/{invitation.token}/", {"score": "9"})

    assert posted.status_code == 410
    assert answered_nothing(invitation)


def test_an_answer_already_given_to_an_erased_persons_survey_is_not_shown_again(client, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint)
    response_submit(invitation=invitation, score=10, reason="Lovely")
    customer_erase(customer=invitation.customer)

    page = client.get(f"/s/{invitation.token}/")

    assert page.status_code == 410
    assert "Lovely" not in page.content.decode()


def test_the_service_refuses_an_answer_to_a_closed_invitation(touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint, status=Invitation.Status.CANCELLED)

    with pytest.raises(InvitationClosed):
        response_submit(invitation=invitation, score=3, reason="Through another door")

    assert answered_nothing(invitation)


def test_an_unsubscribed_customer_may_still_answer_the_survey_they_received(client, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint)
    customer_unsubscribe(customer=invitation.customer)

    posted = client.post(f"/s/{invitation.token}/", {"score": "8"})

    assert posted.status_code == 302
    assert Response.objects.get(invitation=invitation).score == 8
