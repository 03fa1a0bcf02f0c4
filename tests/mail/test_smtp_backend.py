"""The SMTP backend used when EMAIL_HOST is set: Django's, with a quicker envelope, over a real SMTP server."""

import email
import email.policy

import pytest
from django.core.mail import EmailMessage, get_connection
from django.core.mail.message import sanitize_address
from hypothesis import given
from hypothesis import strategies as st

from surveys.mail.smtp import _PLAIN_ADDRESS, envelope_address


@given(st.from_regex(_PLAIN_ADDRESS, fullmatch=True))
def test_a_plain_address_goes_as_django_would_send_it(address):
    assert envelope_address(address, "utf-8") == sanitize_address(address, "utf-8")


@given(st.text(max_size=60))
def test_any_other_text_is_treated_as_django_treats_it(text):
    try:
        expected = sanitize_address(text, "utf-8")
    except Exception as exc:  # noqa: BLE001 - whatever Django raises (even the IndexError of a lone '"'), so do we
        with pytest.raises(type(exc)):
            envelope_address(text, "utf-8")
    else:
        assert envelope_address(text, "utf-8") == expected


@pytest.fixture
def smtp_backend(settings, smtp_server):
    settings.EMAIL_BACKEND = "surveys.mail.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = False
    return smtp_server


def test_messages_reach_their_recipients_from_the_configured_sender(smtp_backend):
    connection = get_connection()
    messages = [
        EmailMessage("Hello", "Body", "Loyal Promoters <surveys@example.com>", [to], connection=connection)
        for to in ["jane@example.com", "Jörg Müller <jörg@exämple.com>", "O'Brien.x@sub-domain.example.org"]
    ]

    assert connection.send_messages(messages) == 3

    received = smtp_backend.handler.messages
    assert [(sender, recipients) for sender, recipients, _ in received] == [
        ("surveys@example.com", ["jane@example.com"]),
        ("surveys@example.com", ["jörg@xn--exmple-cua.com"]),
        ("surveys@example.com", ["O'Brien.x@sub-domain.example.org"]),
    ]
    first = email.message_from_bytes(received[0][2], policy=email.policy.default)
    assert (first["From"], first["To"], first["Subject"]) == ("Loyal Promoters <surveys@example.com>", "jane@example.com", "Hello")


def test_a_line_break_in_a_recipient_is_refused(smtp_backend):
    message = EmailMessage("Hello", "Body", "surveys@example.com", ["jane@example.com\r\nRCPT TO:<x@example.com>"])

    with pytest.raises(ValueError):
        message.send()

    assert smtp_backend.handler.messages == []
