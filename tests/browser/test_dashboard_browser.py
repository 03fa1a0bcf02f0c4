"""The manager dashboard in a real headless Chromium: log in, filter, and see the charts drawn."""

import re
from datetime import datetime, time, timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from tests.factories import ResponseFactory, TouchpointFactory

# live_server needs committed rows; serialized_rollback restores what the
# migrations created (the Managers group) for the tests that follow.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# Playwright's sync API runs an asyncio loop in this thread, so Django's ORM must
# be told that is fine: the `browser` fixture of tests/browser/conftest.py sets
# DJANGO_ALLOW_ASYNC_UNSAFE=true for its own lifetime only, and that covers the
# ORM calls made while a page is open (none here) and at teardown.

SCREENSHOT_1280 = "/tmp/loyal-promoters-dashboard-1280px.png"
SCREENSHOT_375 = "/tmp/loyal-promoters-dashboard-375px.png"
CANVASES = ("chart-trend", "chart-distribution", "chart-shares")
PASSWORD = "correct horse battery staple"

CANVAS_HAS_INK = """(id) => {
    const canvas = document.getElementById(id);
    if (!canvas || !canvas.width || !canvas.height) return false;
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) return true; }
    return false;
}"""


def managers_group() -> Group:
    group = Group.objects.filter(name="Managers").first()
    if group is None:
        # Only if an earlier transactional test flushed what migration 0003 created.
        group = Group.objects.create(name="Managers")
        group.permissions.add(Permission.objects.get(content_type__app_label="surveys", codename="view_dashboard"))
    return group


@pytest.fixture
def manager_with_data(db):
    """A manager and answers at two touchpoints.

    delivery: 10, 9, 9 yesterday; 0, 3 twenty days ago → 90 days: n 5, NPS +20; 7 days: n 3, NPS +100
    store:    0, 5, 8 two days ago; 10 forty days ago  → 90 days: n 4, NPS −25
    all, last 90 days: n 9, P 4, D 4 → NPS 0
    """
    user = User.objects.create_user("morgan", "morgan@example.com", PASSWORD)
    user.groups.add(managers_group())
    today = timezone.localdate()
    delivery = TouchpointFactory(name="Home delivery", slug="delivery")
    store = TouchpointFactory(name="Store visit", slug="store")
    answers = [
        (delivery, 1, [10, 9, 9]),
        (delivery, 20, [0, 3]),
        (store, 2, [0, 5, 8]),
        (store, 40, [10]),
    ]
    for touchpoint, days_ago, scores in answers:
        moment = timezone.make_aware(datetime.combine(today - timedelta(days=days_ago), time(12)))
        for score in scores:
            ResponseFactory(
                invitation__touchpoint=touchpoint,
                invitation__sent_at=moment - timedelta(hours=2),
                created_at=moment,
                score=score,
                reason=f"Score {score} at {touchpoint.name}",
            )
    return user


def open_logged_in(new_page, live_server, **context_options):
    """Open the dashboard, get sent to the login page, sign in, and come back; collect every JS error."""
    page = new_page(**context_options)
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/dashboard/")
    assert page.url == f"{live_server.url}/accounts/login/?next=/dashboard/"
    page.get_by_label("Username").fill("morgan")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/dashboard/")
    return page, errors


def figures(page) -> tuple[str, str]:
    return page.locator("#nps-score").inner_text().strip(), page.locator("#responses-count").inner_text().strip()


def assert_charts_drawn(page) -> None:
    page.wait_for_function("() => window.Chart && ['chart-trend', 'chart-distribution', 'chart-shares']"
                           ".every((id) => Chart.getChart(document.getElementById(id)))")
    for canvas in CANVASES:
        assert page.evaluate(CANVAS_HAS_INK, canvas), f"#{canvas} is blank"


def test_manager_logs_in_filters_and_sees_the_charts(manager_with_data, live_server, new_page):
    page, errors = open_logged_in(new_page, live_server, viewport={"width": 1280, "height": 900})
    assert figures(page) == ("0", "9")
    assert_charts_drawn(page)
    page.screenshot(path=SCREENSHOT_1280, full_page=True, animations="disabled")

    # The touchpoint filter: choose and apply; the URL carries it (and the dates shown).
    page.select_option("#f-touchpoint", "delivery")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"touchpoint=delivery"))
    assert re.search(r"[?&]from=\d{4}-\d{2}-\d{2}", page.url)
    assert re.search(r"[?&]to=\d{4}-\d{2}-\d{2}", page.url)
    assert figures(page) == ("+20", "5")
    assert page.locator("#f-touchpoint").input_value() == "delivery"
    assert_charts_drawn(page)

    # The period preset keeps the touchpoint.
    page.get_by_role("link", name="Last 7 days").click()
    page.wait_for_url(re.compile(r"range=7"))
    assert "touchpoint=delivery" in page.url
    assert figures(page) == ("+100", "3")
    assert_charts_drawn(page)

    # Back to every touchpoint: the same 7 days add the store's 0, 5, 8 → n 6, P 3, D 2 → +16.67 → +17.
    page.select_option("#f-touchpoint", "")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r"touchpoint=(&|$)"))
    assert figures(page) == ("+17", "6")
    # 30 days: n 8, P 3, passives 1, D 4 → −12.5, shown as −13 (half away from zero).
    page.get_by_role("link", name="Last 30 days").click()
    page.wait_for_url(re.compile(r"range=30"))
    assert "touchpoint=delivery" not in page.url
    assert figures(page) == ("−13", "8")
    assert_charts_drawn(page)
    assert errors == []


def test_the_dashboard_fits_a_phone(manager_with_data, live_server, new_page):
    page, errors = open_logged_in(new_page, live_server, viewport={"width": 375, "height": 800}, is_mobile=True)
    assert figures(page) == ("0", "9")
    assert_charts_drawn(page)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=SCREENSHOT_375, full_page=True, animations="disabled")
    assert scroll_width <= 375 + 1, f"the page is {scroll_width}px wide"
    assert errors == []
