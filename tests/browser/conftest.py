"""Fixtures for the browser tests: Debian's headless Chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium.
"""

import os

import pytest
from django.db import connections

from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"]


@pytest.fixture
def new_page(live_server):
    """Open pages in headless Chromium, each in a fresh browser context; the browser lives for one test.

    Playwright's sync API keeps an asyncio loop running in this thread while
    it is started. Django then refuses ORM calls unless told it is fine, and
    hands them a database connection of their own (asgiref's Local switches to
    per-context storage). So the browser starts after the test database is set
    up and stops, closing that extra connection, before the database is
    flushed: the flush then runs on the usual connection, as in any other test.
    """
    if not os.access(CHROMIUM, os.X_OK):
        message = f"Browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)."
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)

            def open_page(**context_options):
                context = browser.new_context(**context_options)
                context.set_default_timeout(10_000)
                return context.new_page()

            try:
                yield open_page
            finally:
                browser.close()
                connections.close_all()
