import pytest
from django.core import mail


@pytest.mark.django_db
def test_api_creates_invitation_and_email_goes_out(api_client, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            "/api/v1/invitations", {"touchpoint": "delivery", "email": "a@example.com"}, content_type="application/json"
        )
    assert response.status_code == 201, response.content
    assert len(mail.outbox) == 1
    assert "?score=10" in mail.outbox[0].body


def test_smtp_fixture_receives(smtp_settings, db):
    from django.core.mail import send_mail

    send_mail("hi", "body", "a@example.com", ["b@example.com"])
    assert smtp_settings.handler.messages[0][1] == ["b@example.com"]
