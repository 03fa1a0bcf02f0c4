"""The unsubscribe page /u/<token>/: a confirm button, a POST, and RFC 8058 one-click."""

import pytest
from django.core import mail
from django.test import Client

from surveys.models import Customer, Invitation, SurveySkip

from ..conftest import send_invitation
from ..factories import InvitationFactory
from ..page_parsing import elements

pytestmark = pytest.mark.django_db


def url(customer: Customer) -> str:
    return f"/u/{customer.unsubscribe_token}/"


def unsubscribed(customer: Customer) -> bool:
    customer.refresh_from_db()
    return customer.unsubscribed_at is not None


def test_a_get_shows_a_confirm_button_and_does_not_unsubscribe(client, customer):
    response = client.get(url(customer))

    assert response.status_code == 200
    forms = elements(response.content, "form")
    assert [form.attrs.get("method", "").lower() for form in forms] == ["post"]
    assert forms[0].attrs.get("action") == url(customer)
    buttons = elements(response.content, "button")
    assert [button.text.strip() for button in buttons] == ["Unsubscribe"]
    assert "jane@example.com" in response.content.decode()
    assert not unsubscribed(customer)


def test_a_head_request_does_not_unsubscribe(client, customer):
    assert client.head(url(customer)).status_code == 200
    assert not unsubscribed(customer)


def test_a_post_unsubscribes_and_answers_200_without_a_redirect(client, customer):
    response = client.post(url(customer))

    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert unsubscribed(customer)


def test_the_confirm_button_works_with_csrf_checks_on(customer):
    # The form carries no CSRF token: the token in the URL is the credential.
    client = Client(enforce_csrf_checks=True)
    page = client.get(url(customer))
    form_action = elements(page.content, "form")[0].attrs["action"]

    response = client.post(form_action)

    assert response.status_code == 200
    assert unsubscribed(customer)


def test_it_accepts_an_rfc_8058_one_click_post_without_cookies_or_csrf_token(customer):
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        url(customer), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 200
    assert not response.cookies
    assert unsubscribed(customer)


def test_unsubscribing_twice_is_harmless(client, customer):
    client.post(url(customer))
    customer.refresh_from_db()
    first_time = customer.unsubscribed_at

    again = client.post(url(customer), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")

    assert again.status_code == 200
    customer.refresh_from_db()
    assert customer.unsubscribed_at == first_time


def test_an_unsubscribed_customer_sees_no_button_again(client, customer):
    client.post(url(customer))

    response = client.get(url(customer))

    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    assert not elements(response.content, "button")


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_token_answers_a_friendly_404(client, customer, method):
    response = getattr(client, method)("/u/no-such-token/")

    assert response.status_code == 404
    assert "This unsubscribe link is not valid." in response.content.decode()
    assert not unsubscribed(customer)


def test_a_post_with_a_nul_in_the_token_is_a_404(client, customer):
    assert client.post("/u/%00/").status_code == 404


def test_after_unsubscribing_the_api_skips_the_customer(client, api_client, customer, touchpoint):
    client.post(url(customer))

    response = api_client.post(
        "/api/v1/invitations",
        {"touchpoint": touchpoint.slug, "email": "JANE@example.com"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.json() == {"status": "skipped", "reason": "unsubscribed"}
    assert not Invitation.objects.exists()
    assert SurveySkip.objects.get().reason == "unsubscribed"
    assert mail.outbox == []


def test_a_pending_invitation_is_cancelled_and_never_emailed(client, customer, touchpoint):
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING, sent_at=None
    )

    client.post(url(customer))

    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.CANCELLED
    assert send_invitation(invitation.pk) == "not-claimed"
    assert mail.outbox == []


def test_a_send_racing_the_unsubscribe_emails_nothing(client, customer, touchpoint):
    # A send that finds the invitation still pending (it raced the click) must not email.
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING, sent_at=None
    )
    client.post(url(customer))
    Invitation.objects.filter(pk=invitation.pk).update(status=Invitation.Status.PENDING)

    send_invitation(invitation.pk)

    assert mail.outbox == []
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.CANCELLED
