"""A manager works a detractor's follow-up case in a real headless Chromium: from open to resolved."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User

from surveys.models import CaseNote, FollowUpCase
from surveys.responses.services import response_submit
from tests.factories import CustomerFactory, InvitationFactory, TouchpointFactory

# live_server needs committed rows; serialized_rollback restores what the
# migrations created (the Managers group) for the tests that follow.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "correct horse battery staple"
REASON = "The parcel arrived two days late & crushed."
NOTE = "Called Dana: a replacement ships tomorrow, delivery fee refunded."
SCREENSHOT = "/tmp/loyal-promoters-case-1280px.png"
MANAGER_PERMISSIONS = ["view_followupcase", "change_followupcase", "view_casenote", "add_casenote"]


def managers_group() -> Group:
    group = Group.objects.filter(name="Managers").first()
    if group is None:
        # Only if an earlier transactional test flushed what migration 0003 created.
        group = Group.objects.create(name="Managers")
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="surveys", codename__in=MANAGER_PERMISSIONS)
        )
    return group


@pytest.fixture
def detractor_case(db) -> FollowUpCase:
    """A manager, a colleague who could take the case too, and a detractor's answer of 3."""
    manager = User.objects.create_user("morgan", "morgan@example.com", PASSWORD)
    colleague = User.objects.create_user("alex", "alex@example.com", PASSWORD)
    for user in (manager, colleague):
        user.groups.add(managers_group())
    touchpoint = TouchpointFactory(name="Home delivery", slug="delivery")
    invitation = InvitationFactory(
        touchpoint=touchpoint, customer=CustomerFactory(name="Dana Fox", email="dana@example.com")
    )
    response = response_submit(invitation=invitation, score=3, reason=REASON)
    return FollowUpCase.objects.get(response=response)


def test_manager_works_a_case_from_open_to_resolved(detractor_case, live_server, new_page):
    case = detractor_case
    page = new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/cases/")
    assert page.url == f"{live_server.url}/accounts/login/?next=/cases/"
    page.get_by_label("Username").fill("morgan")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/cases/")

    # The open cases list shows the detractor's answer.
    row = page.locator("tbody tr").filter(has_text=f"#{case.pk}")
    assert page.locator("tbody tr").count() == 1
    cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
    assert cells[:6] == [f"#{case.pk}", "Dana Fox", "Home delivery", "3", REASON, "Open"]

    row.get_by_role("link", name=f"#{case.pk}").click()
    page.wait_for_url(f"{live_server.url}/cases/{case.pk}/")
    badge = page.locator("#case-status")
    notes = page.locator("#case-notes li")
    assert badge.inner_text() == "Open"
    assert "text-bg-warning" in badge.get_attribute("class")
    assert REASON in page.locator("main").inner_text()
    assert notes.all_inner_texts() == ["No notes yet."]

    # Assign it to themself.
    page.get_by_label("Assignee").select_option(label="morgan")
    page.get_by_role("button", name="Assign").click()
    page.get_by_role("status").filter(has_text="Case assigned.").wait_for()
    assert _detail(page, "Assignee") == "morgan"
    assert re.search(r"^morgan, \d{4}-\d{2}-\d{2} \d{2}:\d{2}\nAssigned to morgan\.$", notes.last.inner_text())

    # A note of what was done.
    page.get_by_label("Add a note").fill(NOTE)
    page.get_by_role("button", name="Add note").click()
    page.get_by_role("status").filter(has_text="Note added.").wait_for()
    assert notes.count() == 2
    assert notes.last.inner_text().startswith("morgan, ")
    assert notes.last.inner_text().endswith(NOTE)
    assert page.get_by_label("Add a note").input_value() == ""

    # Contacted, then resolved: the badge follows and each change is noted.
    page.get_by_label("Status").select_option(label="Contacted")
    page.get_by_role("button", name="Update status").click()
    page.get_by_role("status").filter(has_text="Case marked contacted.").wait_for()
    assert badge.inner_text() == "Contacted"
    assert page.get_by_label("Status").input_value() == "contacted"
    assert notes.last.inner_text().endswith("Status set to contacted.")

    page.get_by_label("Status").select_option(label="Resolved")
    page.get_by_role("button", name="Update status").click()
    page.get_by_role("status").filter(has_text="Case marked resolved.").wait_for()
    assert badge.inner_text() == "Resolved"
    assert "text-bg-success" in badge.get_attribute("class")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", _detail(page, "Resolved"))
    assert [text.split("\n", 1)[1] for text in notes.all_inner_texts()] == [
        "Assigned to morgan.",
        NOTE,
        "Status set to contacted.",
        "Status set to resolved.",
    ]
    page.screenshot(path=SCREENSHOT, full_page=True, animations="disabled")

    # Resolved cases leave the open list and show under "Resolved".
    page.get_by_role("link", name="All cases").click()
    page.wait_for_url(f"{live_server.url}/cases/")
    assert "No cases here." in page.locator("main").inner_text()
    page.get_by_role("link", name="Resolved", exact=True).click()
    page.wait_for_url(re.compile(r"view=resolved"))
    assert page.locator("tbody tr").filter(has_text=f"#{case.pk}").count() == 1

    case.refresh_from_db()
    manager = User.objects.get(username="morgan")
    assert case.status == FollowUpCase.Status.RESOLVED
    assert case.assignee == manager
    assert case.contacted_at is not None
    assert case.resolved_at is not None and case.resolved_at >= case.contacted_at
    assert list(CaseNote.objects.filter(case=case).order_by("created_at").values_list("author", "text")) == [
        (manager.pk, "Assigned to morgan."),
        (manager.pk, NOTE),
        (manager.pk, "Status set to contacted."),
        (manager.pk, "Status set to resolved."),
    ]
    assert errors == []


def _detail(page, term: str) -> str:
    """The value next to a term in the case's description list."""
    return page.locator(f"dt:text-is('{term}') + dd").inner_text().strip()
