"""Customers are surveyed in their language: pages and emails follow Customer.locale, whatever the browser says."""

import pytest
from django.core import mail
from django.utils import timezone, translation

from surveys.invitations.services import invitations_send_batch, reminder_send
from surveys.models import Invitation, Response, TouchpointTranslation
from surveys.promoters.services import promoter_reward

from ..factories import (
    CustomerFactory,
    InvitationFactory,
    ResponseFactory,
    TouchpointFactory,
)
from ..page_parsing import elements

pytestmark = pytest.mark.django_db

QUESTION = {
    "en": "How likely are you to recommend Acme to a friend or colleague?",
    "es": "¿Qué probabilidad hay de que recomiende Acme a un amigo o colega?",
    "de": "Wie wahrscheinlich ist es, dass Sie Acme einem Freund oder Kollegen empfehlen?",
}
PROMPT = {
    "en": "Thank you! Can you tell us the reason for your score?",
    "es": "¡Gracias! ¿Nos puede decir el motivo de su puntuación?",
    "de": "Danke! Können Sie uns den Grund für Ihre Bewertung nennen?",
}


def survey_for(locale: str, touchpoint=None, **customer) -> Invitation:
    return InvitationFactory(
        customer=CustomerFactory(locale=locale, **customer), touchpoint=touchpoint or TouchpointFactory(name="Delivery")
    )


def page_language(response) -> str:
    [html] = elements(response.content, "html")
    return html.attrs["lang"]


def legend(response) -> str:
    [legend] = elements(response.content, "legend")
    return legend.text.strip()


def reason_label(response) -> str:
    [label] = [e for e in elements(response.content, "label") if e.attrs.get("for") == "id_reason"]
    return label.text.strip().rstrip("*").strip()


def submit_label(response) -> str:
    [button] = [e for e in elements(response.content, "input") if e.attrs.get("type") == "submit"]
    return button.attrs["value"]


def visible_text(response) -> str:
    return " ".join(" ".join(e.text.split()) for e in elements(response.content, "body"))


# --- The survey page ------------------------------------------------------------------------------


def test_a_spanish_customer_sees_the_survey_in_spanish(client):
    invitation = survey_for("es")

    response = client.get(f"/s/{invitation.token}/", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert page_language(response) == "es"
    assert legend(response) == QUESTION["es"]
    assert reason_label(response) == PROMPT["es"]
    assert submit_label(response) == "Enviar mi respuesta"
    text = visible_text(response)
    assert "0 = Nada probable" in text
    assert "10 = Muy probable" in text
    assert "Encuestas de Loyal Promoters" in text
    assert "likely" not in text


@pytest.mark.parametrize("locale", ["de", "de-DE", "de_AT", "DE"])
def test_a_german_customer_sees_the_survey_in_german(client, locale):
    invitation = survey_for(locale)

    response = client.get(f"/s/{invitation.token}/", HTTP_ACCEPT_LANGUAGE="es")

    assert page_language(response) == "de"
    assert legend(response) == QUESTION["de"]
    assert submit_label(response) == "Antwort senden"
    assert "0 = Überhaupt nicht wahrscheinlich" in visible_text(response)


@pytest.mark.parametrize("locale", ["es-MX", "es_AR"])
def test_a_regional_spanish_locale_gets_spanish(client, locale):
    response = client.get(f"/s/{survey_for(locale).token}/")

    assert page_language(response) == "es"
    assert legend(response) == QUESTION["es"]


@pytest.mark.parametrize("locale", ["fr", "xx", "", "en-GB", "zh-hans"])
def test_a_language_we_do_not_ship_falls_back_to_english(client, locale):
    response = client.get(f"/s/{survey_for(locale).token}/", HTTP_ACCEPT_LANGUAGE="de")

    assert page_language(response) == "en"
    assert legend(response) == QUESTION["en"]
    assert submit_label(response) == "Send my answer"
    assert "0 = Not at all likely" in visible_text(response)


def test_an_english_customer_gets_english_whatever_the_browser_says(client):
    response = client.get(f"/s/{survey_for('en').token}/", HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9")

    assert page_language(response) == "en"
    assert legend(response) == QUESTION["en"]


def test_an_invalid_answer_is_refused_in_the_customers_language(client):
    invitation = survey_for("es")

    response = client.post(f"/s/{invitation.token}/", {"score": "11", "reason": "Bien"})

    assert response.status_code == 200
    assert page_language(response) == "es"
    [error] = [e for e in elements(response.content) if e.attrs.get("role") == "alert"]
    assert error.text.strip() == "Elija una puntuación del 0 al 10."
    assert legend(response) == QUESTION["es"]
    assert not Response.objects.exists()


def test_an_overlong_reason_is_refused_in_the_customers_language(client):
    invitation = survey_for("de")

    response = client.post(f"/s/{invitation.token}/", {"score": "5", "reason": "x" * 2001})

    assert response.status_code == 200
    assert "höchstens 2000 Zeichen" in response.content.decode()
    assert not Response.objects.exists()


def test_the_thank_you_page_is_in_the_customers_language(client):
    invitation = survey_for("es", email="ana@example.com")

    response = client.post(f"/s/{invitation.token}/", {"score": "10", "reason": "Perfecto"}, follow=True)

    assert page_language(response) == "es"
    text = visible_text(response)
    assert "¡Gracias por su respuesta!" in text
    assert "Nos ha dado 10 de 10." in text
    assert "su cupón está en camino a ana@example.com" in text


def test_the_closed_page_is_in_the_customers_language(client):
    invitation = survey_for("de")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())

    response = client.get(f"/s/{invitation.token}/")

    assert response.status_code == 410
    assert page_language(response) == "de"
    assert "Diese Umfrage ist geschlossen" in visible_text(response)


def test_a_touchpoint_wording_given_in_spanish_replaces_the_question_and_prompt(client):
    touchpoint = TouchpointFactory(name="Tienda")
    TouchpointTranslation.objects.create(
        touchpoint=touchpoint,
        language="es",
        question="¿Recomendaría nuestra tienda {company} a un amigo?",
        reason_prompt="¿Qué fue lo que más le gustó?",
    )
    spanish, english, german = survey_for("es", touchpoint), survey_for("en", touchpoint), survey_for("de", touchpoint)

    es_page = client.get(f"/s/{spanish.token}/?score=10")
    en_page = client.get(f"/s/{english.token}/")
    de_page = client.get(f"/s/{german.token}/")

    assert legend(es_page) == "¿Recomendaría nuestra tienda Acme a un amigo?"
    assert reason_label(es_page) == "¿Qué fue lo que más le gustó?"
    assert legend(en_page) == QUESTION["en"]
    assert legend(de_page) == QUESTION["de"]
    assert reason_label(de_page) == PROMPT["de"]


def test_a_translation_without_a_prompt_keeps_the_shipped_prompt(client):
    touchpoint = TouchpointFactory()
    TouchpointTranslation.objects.create(touchpoint=touchpoint, language="es", question="¿Nos recomendaría?")

    response = client.get(f"/s/{survey_for('es', touchpoint).token}/")

    assert legend(response) == "¿Nos recomendaría?"
    assert reason_label(response) == PROMPT["es"]


def test_a_custom_question_without_a_translation_is_shown_as_written(client):
    touchpoint = TouchpointFactory(question="Would you recommend {company}'s repair service?")

    response = client.get(f"/s/{survey_for('es', touchpoint).token}/")

    assert legend(response) == "Would you recommend Acme's repair service?"
    assert page_language(response) == "es"


def test_translations_are_edited_on_the_touchpoint_admin_page(admin_client, touchpoint):
    page = admin_client.get(f"/admin/surveys/touchpoint/{touchpoint.pk}/change/")

    names = {e.attrs.get("name") for e in elements(page.content) if e.attrs.get("name")}
    assert {"translations-TOTAL_FORMS", "translations-__prefix__-language"} <= names
    options = [e.attrs.get("value") for e in elements(page.content, "option")]
    assert {"es", "de"} <= set(options)


@pytest.fixture
def admin_client(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests"))
    return client


# --- Emails -----------------------------------------------------------------------------------------


def _send(invitation) -> mail.EmailMessage:
    invitations_send_batch(invitation_ids=[invitation.pk])
    return mail.outbox[-1]


def _html(message) -> str:
    [(html, _)] = message.alternatives
    return html


def test_a_spanish_customer_gets_the_invitation_in_spanish(touchpoint):
    invitation = survey_for("es", touchpoint, name="Ana")
    invitation.status = Invitation.Status.PENDING
    invitation.save()

    message = _send(invitation)

    assert message.subject == "Ana, ¿qué tal lo hicimos?"
    assert message.body.startswith("Hola, Ana:")
    assert QUESTION["es"] in message.body
    assert "Gracias por su reciente visita: Home delivery." in message.body
    assert "Darse de baja:" in message.body
    html = _html(message)
    assert '<html lang="es">' in html
    assert "Nada probable" in html and "Muy probable" in html
    assert QUESTION["es"] in html


def test_a_german_customer_gets_the_invitation_in_german(touchpoint):
    invitation = survey_for("de-DE", touchpoint, name="Jonas")
    Invitation.objects.filter(pk=invitation.pk).update(status=Invitation.Status.PENDING)

    message = _send(invitation)

    assert message.subject == "Jonas, wie waren wir?"
    assert message.body.startswith("Hallo Jonas,")
    assert QUESTION["de"] in message.body
    assert '<html lang="de">' in _html(message)


def test_an_unknown_locale_gets_the_invitation_in_english(touchpoint):
    invitation = survey_for("pt-BR", touchpoint, name="João")
    Invitation.objects.filter(pk=invitation.pk).update(status=Invitation.Status.PENDING)

    message = _send(invitation)

    assert message.subject == "João, how did we do?"
    assert QUESTION["en"] in message.body


def test_the_invitation_email_uses_the_touchpoints_spanish_wording(touchpoint):
    TouchpointTranslation.objects.create(touchpoint=touchpoint, language="es", question="¿Recomendaría {company}?")
    invitation = survey_for("es", touchpoint)
    Invitation.objects.filter(pk=invitation.pk).update(status=Invitation.Status.PENDING)

    message = _send(invitation)

    assert "¿Recomendaría Acme?" in message.body
    assert "¿Recomendaría Acme?" in _html(message)


def test_a_batch_writes_to_each_customer_in_their_own_language(touchpoint):
    customers = {"es": "ana@example.com", "en": "bob@example.com", "de": "jonas@example.com"}
    invitations = [
        InvitationFactory(
            customer=CustomerFactory(locale=locale, email=email, name=""),
            touchpoint=touchpoint,
            status=Invitation.Status.PENDING,
            sent_at=None,
        )
        for locale, email in customers.items()
    ]

    invitations_send_batch(invitation_ids=[i.pk for i in invitations])

    subjects = {message.to[0]: message.subject for message in mail.outbox}
    assert subjects == {
        "ana@example.com": "¿Qué tal lo hicimos?",
        "bob@example.com": "How did we do?",
        "jonas@example.com": "Wie waren wir?",
    }
    assert translation.get_language() == "en"


def test_a_spanish_customer_gets_the_reminder_in_spanish(touchpoint):
    invitation = survey_for("es", touchpoint, name="Ana")

    assert reminder_send(invitation_id=invitation.pk) == "sent"

    [message] = mail.outbox
    assert message.subject == "Ana, un recordatorio: ¿qué tal lo hicimos?"
    assert "Es nuestro único recordatorio." in message.body
    assert QUESTION["es"] in message.body


def test_a_german_customer_gets_the_reminder_in_german(touchpoint):
    invitation = survey_for("de", touchpoint, name="")

    reminder_send(invitation_id=invitation.pk)

    [message] = mail.outbox
    assert message.subject == "Eine Erinnerung: Wie waren wir?"
    assert "Dies ist unsere einzige Erinnerung." in message.body


def test_a_spanish_promoter_gets_the_coupon_email_in_spanish(touchpoint):
    response = ResponseFactory(
        invitation=survey_for("es", touchpoint, name="Ana"), score=10, created_at=timezone.now()
    )

    assert promoter_reward(response_id=response.pk) == "sent"

    [message] = mail.outbox
    coupon = response.coupon
    assert message.subject == f"Un regalo de Acme: su cupón {coupon.code}"
    assert message.body.startswith("Hola, Ana:")
    assert "¡Gracias por recomendarnos!" in message.body
    assert f"Válido hasta: {timezone.localdate(coupon.expires_at).isoformat()}" in message.body
    assert '<html lang="es">' in _html(message)


def test_a_german_promoter_gets_the_coupon_email_in_german(touchpoint):
    response = ResponseFactory(invitation=survey_for("de", touchpoint), score=9, created_at=timezone.now())

    promoter_reward(response_id=response.pk)

    [message] = mail.outbox
    assert message.subject.startswith("Ein Dankeschön von Acme: Ihr Gutschein LP-")
    assert "Gültig bis:" in message.body


def test_the_alert_to_the_team_stays_in_english_for_a_spanish_detractor(client, django_capture_on_commit_callbacks):
    touchpoint = TouchpointFactory(alert_recipients="team@example.com")
    invitation = survey_for("es", touchpoint)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/s/{invitation.token}/", {"score": "2", "reason": "Muy tarde"})

    [alert] = [message for message in mail.outbox if message.to == ["team@example.com"]]
    assert alert.subject.startswith("Detractor alert: 2/10")
    assert "Muy tarde" in alert.body


# --- Unsubscribe pages ------------------------------------------------------------------------------


def test_the_unsubscribe_page_is_in_the_customers_language(client):
    customer = CustomerFactory(locale="es", email="ana@example.com")

    page = client.get(f"/u/{customer.unsubscribe_token}/", HTTP_ACCEPT_LANGUAGE="en")

    assert page_language(page) == "es"
    text = visible_text(page)
    assert "¿Darse de baja de nuestros correos?" in text
    assert "Dejaremos de enviar encuestas y ofertas a ana@example.com." in text
    [button] = elements(page.content, "button")
    assert button.text.strip() == "Darse de baja"


def test_unsubscribing_confirms_in_the_customers_language(client):
    customer = CustomerFactory(locale="de", email="jonas@example.com")

    done = client.post(f"/u/{customer.unsubscribe_token}/")
    again = client.get(f"/u/{customer.unsubscribe_token}/")

    assert done.status_code == 200
    assert page_language(done) == "de"
    assert "Sie sind abgemeldet" in visible_text(done)
    assert "Wir werden jonas@example.com keine E-Mails mehr senden. Schade, dass Sie gehen." in visible_text(done)
    assert "Sie sind abgemeldet" in visible_text(again)
    customer.refresh_from_db()
    assert customer.unsubscribed_at is not None


def test_the_unsubscribe_page_falls_back_to_english(client):
    customer = CustomerFactory(locale="it")

    page = client.get(f"/u/{customer.unsubscribe_token}/", HTTP_ACCEPT_LANGUAGE="es")

    assert page_language(page) == "en"
    assert "Unsubscribe from our emails?" in visible_text(page)
