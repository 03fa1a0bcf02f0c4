"""The invitation email: parts, one-click score links, unsubscribe headers and link, escaping."""

import email
import email.policy
import re

import pytest
from django.core import mail

from surveys.models import Invitation

from ..conftest import send_invitation
from ..factories import CustomerFactory, InvitationFactory

SITE = "https://surveys.example.com"


def _send(invitation: Invitation):
    assert send_invitation(invitation.pk) == "sent"
    [message] = mail.outbox
    return message


def _html(message) -> str:
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


@pytest.fixture
def pending(customer, touchpoint):
    return InvitationFactory(customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING, sent_at=None)


@pytest.mark.django_db
def test_it_has_a_subject_a_text_part_and_an_html_part(pending):
    message = _send(pending)

    assert message.to == ["jane@example.com"]
    assert message.subject.strip()
    assert "\n" not in message.subject
    assert "How likely are you to recommend Acme to a friend or colleague?" in message.body
    assert "How likely are you to recommend Acme to a friend or colleague?" in _html(message)
    assert "<html" in _html(message) and "<html" not in message.body


@pytest.mark.django_db
def test_it_has_eleven_one_click_score_links_in_both_parts(pending):
    message = _send(pending)

    survey = f"{SITE}/s/{pending.token}/"
    for part in (message.body, _html(message)):
        scores = re.findall(re.escape(survey) + r"\?score=(\d+)", part)
        assert sorted(set(scores), key=int) == [str(n) for n in range(11)]
    html_scores = re.findall(r'href="' + re.escape(survey) + r'\?score=(\d+)"', _html(message))
    assert html_scores == [str(n) for n in range(11)]


@pytest.mark.django_db
def test_every_link_is_absolute_from_the_site_url(pending):
    message = _send(pending)

    hrefs = re.findall(r'href="([^"]*)"', _html(message))
    assert len(hrefs) >= 12
    assert all(href.startswith(f"{SITE}/") for href in hrefs), hrefs
    text_urls = re.findall(r"https?://\S+", message.body)
    assert len(text_urls) >= 12
    assert all(url.startswith(f"{SITE}/") for url in text_urls), text_urls


@pytest.mark.django_db
def test_it_carries_one_click_unsubscribe_headers(pending, customer):
    message = _send(pending)

    headers = message.message()
    assert headers["List-Unsubscribe"] == f"<{SITE}/u/{customer.unsubscribe_token}/>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.django_db
def test_it_has_a_visible_unsubscribe_link_in_both_parts(pending, customer):
    message = _send(pending)

    unsubscribe = f"{SITE}/u/{customer.unsubscribe_token}/"
    assert unsubscribe in message.body
    assert re.search(r'<a href="' + re.escape(unsubscribe) + r'"[^>]*>\s*Unsubscribe\s*</a>', _html(message))


@pytest.mark.django_db
def test_the_unsubscribe_link_in_the_email_unsubscribes(pending, customer, client):
    message = _send(pending)
    unsubscribe = message.message()["List-Unsubscribe"].strip("<>")

    # The RFC 8058 one-click POST a mail provider makes.
    response = client.post(unsubscribe.removeprefix(SITE), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    customer.refresh_from_db()
    assert customer.unsubscribed_at is not None


@pytest.mark.django_db
def test_it_escapes_html_in_the_customer_name(touchpoint):
    customer = CustomerFactory(name='<script>alert("x")</script> Bob')
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING, sent_at=None
    )

    message = _send(invitation)

    html = _html(message)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    # The plain-text part shows the name as typed.
    assert '<script>alert("x")</script> Bob' in message.body


@pytest.mark.django_db
def test_a_line_break_in_the_customer_name_cannot_add_a_header(touchpoint, smtp_settings):
    customer = CustomerFactory(name="Bob\r\nBcc: victim@example.com")
    invitation = InvitationFactory(
        customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING, sent_at=None
    )

    assert send_invitation(invitation.pk) == "sent"

    [(_, recipients, raw)] = smtp_settings.handler.messages
    assert recipients == [customer.email]
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert received["Bcc"] is None
    assert "\n" not in str(received["Subject"])


@pytest.mark.django_db
def test_the_headers_arrive_intact_over_smtp(pending, customer, smtp_settings):
    assert send_invitation(pending.pk) == "sent"

    [(_, recipients, raw)] = smtp_settings.handler.messages
    received = email.message_from_bytes(raw, policy=email.policy.default)
    assert recipients == ["jane@example.com"]
    # A long header may be folded onto a continuation line; unfolded, it is the same URL.
    assert received["List-Unsubscribe"].strip() == f"<{SITE}/u/{customer.unsubscribe_token}/>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = {part.get_content_type(): part.get_content() for part in received.walk() if not part.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    for content in parts.values():
        assert f"{SITE}/s/{pending.token}/?score=10" in content


# --- A batch's emails: rendered once per language, the same as one by one -----------------------------

HOSTILE_NAMES = [
    "Jane Doe",
    "",
    '<script>alert("x")</script> & Bob\'s',
    "José Núñez",
    "Bob\r\nBcc: victim@example.com",
    "  spaced   out  ",
    "100% {{ name }} %(name)s {% if %}",
]


def _rendered_alone(invitation: Invitation, reminder: bool) -> tuple[str, str, str]:
    """The invitation's subject, text and HTML rendered from the templates for this one customer."""
    from django.template.loader import render_to_string
    from django.utils import translation

    from surveys.mail.messages import absolute_url, question_text
    from surveys.touchpoints.selectors import customer_language

    customer = invitation.customer
    language = customer_language(customer=customer)
    url = f"{SITE}/s/{invitation.token}/"
    context = {
        "invitation": invitation,
        "reminder": reminder,
        "touchpoint": invitation.touchpoint,
        "question": question_text(
            invitation.touchpoint, language, product=(invitation.properties or {}).get("question_product_name")
        ),
        "survey_url": url,
        "score_links": [(score, f"{url}?score={score}") for score in range(11)],
        "customer": customer,
        "company": "Acme",
        "unsubscribe_url": absolute_url(f"/u/{customer.unsubscribe_token}/"),
    }
    with translation.override(language):
        subject, text, html = (
            render_to_string(f"emails/invitation_{part}", context) for part in ("subject.txt", "body.txt", "body.html")
        )
    return " ".join(subject.split()), text, html


@pytest.mark.parametrize("reminder", [False, True])
@pytest.mark.django_db
def test_emails_rendered_for_a_whole_batch_are_the_ones_each_customer_would_get_alone(reminder):
    from surveys.mail.messages import invitation_messages
    from surveys.models import TouchpointTranslation

    from ..factories import TouchpointFactory

    plain = TouchpointFactory(name="Home delivery")
    translated = TouchpointFactory(name="Store <visit> & \"more\"", question="Would you recommend {company}?")
    TouchpointTranslation.objects.create(touchpoint=translated, language="es", question="¿Recomendaría {company}?")
    invitations = []
    for index, (name, locale) in enumerate(
        (name, locale) for name in HOSTILE_NAMES for locale in ("", "es", "es_MX", "de", "xx")
    ):
        properties = {"question_product_name": "the <b>Widget</b>"} if index % 4 == 0 else {}
        invitations.append(
            InvitationFactory(
                customer=CustomerFactory(name=name, locale=locale),
                touchpoint=translated if index % 3 else plain,
                properties=properties,
                status=Invitation.Status.PENDING,
                sent_at=None,
            )
        )

    messages = invitation_messages(invitations, reminder=reminder)

    assert len(messages) == len(invitations)
    for invitation, message in zip(invitations, messages):
        subject, text, html = _rendered_alone(invitation, reminder)
        assert (message.subject, message.body, _html(message)) == (subject, text, html), invitation.customer.name
        assert message.to == [invitation.customer.email]
        assert message.extra_headers["List-Unsubscribe"] == f"<{SITE}/u/{invitation.customer.unsubscribe_token}/>"


@pytest.mark.django_db
def test_a_batch_in_three_languages_reads_each_translation_once(touchpoint, django_assert_num_queries):
    from surveys.mail.messages import invitation_messages
    from surveys.models import TouchpointTranslation

    TouchpointTranslation.objects.create(touchpoint=touchpoint, language="es", question="¿Recomendaría {company}?")
    invitations = [
        InvitationFactory(customer=CustomerFactory(locale=locale), touchpoint=touchpoint)
        for locale in ["en", "es", "de"] * 10
    ]
    for invitation in invitations:
        invitation.refresh_from_db()  # as a batch loads them: customer and touchpoint at hand
        invitation.customer, invitation.touchpoint  # noqa: B018 - loaded before counting

    with django_assert_num_queries(2):  # Spanish and German; English is the touchpoint's own text
        messages = invitation_messages(invitations)

    spanish = [message for message in messages if "¿Recomendaría Acme?" in message.body]
    assert len(spanish) == 10


@pytest.mark.django_db
def test_a_touchpoint_or_company_renamed_between_batches_shows_in_the_next_batch(touchpoint, settings):
    from surveys.mail.messages import invitation_messages

    invitations = [InvitationFactory(customer=CustomerFactory(locale=locale), touchpoint=touchpoint) for locale in ("en", "es")]
    before = invitation_messages(invitations)

    touchpoint.name = "Curbside pickup"
    touchpoint.save()
    for invitation in invitations:
        invitation.refresh_from_db()
    renamed = invitation_messages(invitations)
    settings.NPS_COMPANY_NAME = "Globex"
    rebranded = invitation_messages(invitations)

    assert all("Home delivery" in message.body and "Acme" in message.body for message in before)
    assert all("Curbside pickup" in message.body and "Home delivery" not in message.body for message in renamed)
    assert all("Globex" in message.body and "Acme" not in _html(message) for message in rebranded)
