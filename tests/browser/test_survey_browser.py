"""The survey page in a real headless Chromium: mouse, keyboard and a phone-sized screen."""

import re

import pytest
from django.core import mail

from surveys.invitations.services import invitation_request
from surveys.models import Response
from tests.factories import CustomerFactory, TouchpointFactory

# live_server needs committed rows. With serialized_rollback the flush after each
# test leaves the tables empty (no post_migrate), so the serialized_rollback tests
# that follow can restore content types and permissions under their original ids.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCREENSHOT_375 = "/tmp/loyal-promoters-survey-375px.png"
SCREENSHOT_1280 = "/tmp/loyal-promoters-survey-1280px.png"


@pytest.fixture
def survey_email(live_server, settings, django_capture_on_commit_callbacks):
    """Trigger a survey the way an integration does and return the email it sent (to the live server's URL)."""
    settings.SITE_URL = live_server.url
    touchpoint = TouchpointFactory(name="Store visit", slug="store-visit")
    customer = CustomerFactory(email="sam@example.com", name="Sam Lee")
    with django_capture_on_commit_callbacks(execute=True):
        outcome = invitation_request(touchpoint=touchpoint, customer=customer)
    assert not outcome.skipped
    [message] = [m for m in mail.outbox if f"/s/{outcome.invitation.token}/" in m.body]
    return message


def _score_link(message, score: int) -> str:
    match = re.search(rf"(http://\S+/s/[\w-]+/\?score={score})\b", message.body)
    assert match, message.body
    return match.group(1)


def _radio(page, score: int):
    return page.get_by_role("radio", name=str(score), exact=True)


def _label(page, score: int):
    return page.locator(".score-scale label").filter(has_text=re.compile(rf"^\s*{score}\s*$"))


def test_customer_answers_with_mouse_and_keyboard(survey_email, new_page):
    page = new_page(viewport={"width": 1280, "height": 900})
    page.goto(_score_link(survey_email, 6))

    assert page.get_by_text("How likely are you to recommend Acme to a friend or colleague?").is_visible()
    anchors = page.locator(".score-anchors")
    assert anchors.is_visible()
    assert re.search(r"Not at all likely.*Extremely likely", anchors.inner_text(), re.DOTALL)
    assert _radio(page, 6).is_checked()  # preselected by the link, nothing recorded yet
    assert Response.objects.count() == 0

    # Mouse: click the "3" button.
    _label(page, 3).click()
    assert _radio(page, 3).is_checked()
    assert not _radio(page, 6).is_checked()

    # Keyboard from a fresh load: Tab reaches the chosen radio, arrow keys move the choice.
    page.reload()
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.name, document.activeElement.value]")
    assert focused == ["score", "6"]
    page.keyboard.press("ArrowRight")
    assert _radio(page, 7).is_checked()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert _radio(page, 9).is_checked()
    page.keyboard.press("ArrowLeft")
    assert _radio(page, 8).is_checked()
    page.keyboard.press("ArrowRight")
    assert _radio(page, 9).is_checked()
    assert [score for score in range(11) if _radio(page, score).is_checked()] == [9]
    page.screenshot(path=SCREENSHOT_1280, full_page=True, animations="disabled")

    # Tab on to the reason box, type, Tab to the button and press Enter.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "reason"
    page.keyboard.type("Helpful staff & short queue.")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent.trim() || document.activeElement.value") == (
        "Send my answer"
    )
    page.keyboard.press("Enter")

    page.get_by_role("heading", name="Thank you for your answer!").wait_for()
    assert "You gave us 9 out of 10." in page.locator("main").inner_text()
    assert "Helpful staff & short queue." in page.locator("main").inner_text()
    response = Response.objects.get()
    assert (response.score, response.reason) == (9, "Helpful staff & short queue.")


def test_score_buttons_fit_a_phone_screen(survey_email, new_page):
    page = new_page(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True, has_touch=True)
    page.goto(_score_link(survey_email, 10).replace("?score=10", ""))

    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    labels = page.locator(".score-scale label")
    assert labels.count() == 11
    for index in range(11):
        label = labels.nth(index)
        assert label.inner_text().strip() == str(index)
        assert label.is_visible()
        box = label.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (index, box)
        assert box["height"] >= 40 and box["width"] >= 40, (index, box)
    page.screenshot(path=SCREENSHOT_375, full_page=True, animations="disabled")

    # A finger tap on a button picks that score.
    _label(page, 10).tap()
    assert _radio(page, 10).is_checked()
