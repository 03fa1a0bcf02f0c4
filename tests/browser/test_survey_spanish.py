"""A Spanish-speaking customer answers from their Spanish invitation email, in a real headless Chromium."""

import pytest
from django.core import mail

from surveys.invitations.services import invitation_request
from surveys.models import Response
from tests.factories import CustomerFactory, TouchpointFactory

# live_server needs committed rows (see test_survey_browser.py for serialized_rollback).
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

QUESTION_ES = "¿Qué probabilidad hay de que recomiende Acme a un amigo o colega?"
REASON_PROMPT_ES = "¡Gracias! ¿Nos puede decir el motivo de su puntuación?"


@pytest.fixture
def spanish_email(live_server, settings, django_capture_on_commit_callbacks):
    """The invitation a customer with locale "es" receives, its links pointing at the live server."""
    settings.SITE_URL = live_server.url
    touchpoint = TouchpointFactory(name="Entrega a domicilio", slug="delivery")
    customer = CustomerFactory(email="lucia@example.com", name="Lucía Fernández", locale="es")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = invitation_request(touchpoint=touchpoint, customer=customer)
    assert not outcome.skipped
    [message] = [m for m in mail.outbox if f"/s/{outcome.invitation.token}/" in m.body]
    return message


def test_spanish_customer_answers_from_the_email_and_is_thanked_in_spanish(spanish_email, new_page):
    assert spanish_email.subject == "Lucía Fernández, ¿qué tal lo hicimos?"
    assert "Hola, Lucía Fernández:" in spanish_email.body
    assert QUESTION_ES in spanish_email.body
    [(html, mimetype)] = spanish_email.alternatives
    assert mimetype == "text/html"

    # The browser asks for English: the survey follows the customer's locale, like their emails.
    page = new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    page.set_content(html)  # the email as the customer's mail client shows it
    assert page.locator("html").get_attribute("lang") == "es"
    page.get_by_role("link", name="8 de 10", exact=True).click()

    page.wait_for_url("**/s/*/?score=8")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.title().startswith("Su opinión")
    assert page.locator("legend.survey-question").inner_text().strip() == QUESTION_ES
    anchors = page.locator(".score-anchors").inner_text()
    assert "0 = Nada probable" in anchors and "10 = Muy probable" in anchors
    assert page.get_by_role("radio", name="8", exact=True).is_checked()  # preselected, nothing recorded yet
    assert Response.objects.count() == 0
    reason = page.get_by_label(REASON_PROMPT_ES)
    assert reason.is_visible()

    page.locator(".score-scale label").filter(has_text="9").click()
    reason.fill("El repartidor fue muy amable y llegó a la hora.")
    page.get_by_role("button", name="Enviar mi respuesta").click()

    page.get_by_role("heading", name="¡Gracias por su respuesta!").wait_for()
    main = page.locator("main").inner_text()
    assert "Nos ha dado 9 de 10." in main
    assert "El repartidor fue muy amable y llegó a la hora." in main
    # A promoter hears about the coupon and the share link, in Spanish too.
    assert "Como agradecimiento, su cupón está en camino a lucia@example.com." in main
    assert "¡Cuénteselo a un amigo! Comparta su enlace personal:" in main
    assert "Thank you" not in main and "coupon" not in main
    response = Response.objects.get()
    assert (response.score, response.reason) == (9, "El repartidor fue muy amable y llegó a la hora.")
