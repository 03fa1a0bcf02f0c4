"""/cases/ and /cases/<id>/: managers list, filter, assign, annotate and resolve follow-up cases."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from surveys.models import CaseNote, FollowUpCase

from ..factories import ResponseFactory, TouchpointFactory

SCRIPT = "<script>alert('pwned')</script>"


def make_case(*, score=3, reason="Late again.", due_in=timedelta(hours=40), status="open", assignee=None, **fields):
    response = ResponseFactory(score=score, reason=reason, invitation__touchpoint=TouchpointFactory(name="Home delivery"))
    now = timezone.now()
    return FollowUpCase.objects.create(
        response=response,
        customer=response.customer,
        touchpoint=response.touchpoint,
        status=status,
        assignee=assignee,
        due_at=now + due_in,
        resolved_at=now if status == "resolved" else None,
        **fields,
    )


def case_ids(page) -> list[int]:
    return [int(pk) for pk in re.findall(r'href="/cases/(\d+)/"', page.content.decode())]


@pytest.fixture
def manager(db):
    user = User.objects.create_user("maria", "maria@example.com", "pw")
    user.groups.add(Group.objects.get(name="Managers"))
    return user


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.fixture
def viewer(db):
    """May read cases and add notes, but not change a case."""
    user = User.objects.create_user("victor", "victor@example.com", "pw")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_followupcase", "add_casenote", "view_casenote"])
    )
    return user


# --- Who may see the cases ----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/cases/", "/cases/{pk}/"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, path):
    path = path.format(pk=make_case().pk)

    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/cases/", "/cases/{pk}/"])
def test_a_user_without_permission_gets_403(client, path):
    case = make_case(reason="Secret complaint")
    client.force_login(User.objects.create_user("customer", "c@example.com", "pw"))

    response = client.get(path.format(pk=case.pk))

    assert response.status_code == 403
    assert "Secret complaint" not in response.content.decode()


@pytest.mark.django_db
def test_a_user_without_permission_cannot_change_a_case(client):
    case = make_case()
    client.force_login(User.objects.create_user("customer", "c@example.com", "pw"))

    response = client.post(f"/cases/{case.pk}/", {"action": "status", "status": "resolved"})

    assert response.status_code == 403
    assert FollowUpCase.objects.get(pk=case.pk).status == "open"


@pytest.mark.django_db
def test_the_managers_group_exists_with_case_permissions():
    group = Group.objects.get(name="Managers")

    codenames = set(group.permissions.values_list("codename", flat=True))

    assert {"view_followupcase", "change_followupcase", "add_casenote", "view_dashboard"} <= codenames


@pytest.mark.django_db
def test_a_manager_sees_the_open_cases(manager_client):
    case = make_case(reason="The parcel was damaged.")

    response = manager_client.get("/cases/")

    assert response.status_code == 200
    content = response.content.decode()
    assert case_ids(response) == [case.pk]
    assert "The parcel was damaged." in content
    assert case.customer.name in content
    assert "Home delivery" in content


@pytest.mark.django_db
def test_an_admin_sees_the_cases(admin_client):
    case = make_case()

    response = admin_client.get("/cases/")

    assert response.status_code == 200
    assert case_ids(response) == [case.pk]
    assert admin_client.get(f"/cases/{case.pk}/").status_code == 200


# --- Filters ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_filters_show_open_mine_overdue_and_resolved_cases(manager_client, manager):
    colleague = User.objects.create_user("carl")
    overdue = make_case(due_in=-timedelta(hours=1))
    mine = make_case(assignee=manager, status="contacted")
    theirs = make_case(assignee=colleague)
    resolved_late = make_case(status="resolved", due_in=-timedelta(days=3), assignee=manager)

    def shown(view):
        response = manager_client.get(f"/cases/?view={view}")
        assert response.status_code == 200
        return set(case_ids(response))

    assert set(case_ids(manager_client.get("/cases/"))) == {overdue.pk, mine.pk, theirs.pk}
    assert shown("open") == {overdue.pk, mine.pk, theirs.pk}
    assert shown("mine") == {mine.pk}
    assert shown("overdue") == {overdue.pk}
    assert shown("resolved") == {resolved_late.pk}
    assert shown("all") == {overdue.pk, mine.pk, theirs.pk, resolved_late.pk}


@pytest.mark.django_db
def test_overdue_cases_stand_out(manager_client):
    overdue = make_case(due_in=-timedelta(minutes=5))
    make_case()

    content = manager_client.get("/cases/").content.decode()

    rows = re.findall(r"<tr[^>]*>.*?</tr>", content, flags=re.S)
    flagged = [row for row in rows if "overdue" in row]
    assert len(flagged) == 1
    assert f'href="/cases/{overdue.pk}/"' in flagged[0]


@pytest.mark.django_db
def test_an_unknown_filter_shows_the_open_cases(manager_client):
    open_case = make_case()
    make_case(status="resolved")

    assert case_ids(manager_client.get("/cases/?view=<nonsense>")) == [open_case.pk]


# --- Working a case on its page ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_manager_works_a_case_from_open_to_resolved(manager_client, manager):
    case = make_case(reason="Nobody called me back.")
    url = f"/cases/{case.pk}/"
    page = manager_client.get(url)
    assert page.status_code == 200
    assert "Nobody called me back." in page.content.decode()
    assert re.search(r'id="case-status">\s*Open\s*<', page.content.decode())

    response = manager_client.post(url, {"action": "assign", "assignee": manager.pk})
    assert response.status_code == 302 and response["Location"] == url
    page = manager_client.get(url).content.decode()
    assert re.search(r"Assignee</dt><dd[^>]*>maria<", page)
    assert "Assigned to maria." in page

    manager_client.post(url, {"action": "note", "text": "Called, she wants a refund."})
    page = manager_client.get(url).content.decode()
    notes = page[page.index('id="case-notes"'):]
    assert "Called, she wants a refund." in notes
    assert "maria," in notes

    manager_client.post(url, {"action": "status", "status": "contacted"})
    page = manager_client.get(url).content.decode()
    assert re.search(r'id="case-status">\s*Contacted\s*<', page)

    manager_client.post(url, {"action": "status", "status": "resolved"})
    page = manager_client.get(url).content.decode()
    assert re.search(r'id="case-status">\s*Resolved\s*<', page)
    assert "Resolved</dt>" in page

    case.refresh_from_db()
    assert (case.status, case.assignee) == ("resolved", manager)
    assert case.contacted_at is not None and case.resolved_at is not None
    assert CaseNote.objects.filter(case=case, author=manager).count() == 4
    assert case.pk not in case_ids(manager_client.get("/cases/"))
    assert case.pk in case_ids(manager_client.get("/cases/?view=resolved"))


@pytest.mark.django_db
def test_an_empty_note_is_refused_on_the_page(manager_client):
    case = make_case()

    response = manager_client.post(f"/cases/{case.pk}/", {"action": "note", "text": "   "})

    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not CaseNote.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("data", [{"action": "status", "status": "closed"}, {"action": "assign", "assignee": 999999}])
def test_a_bad_change_is_refused_on_the_page(manager_client, data):
    case = make_case()

    response = manager_client.post(f"/cases/{case.pk}/", data)

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    case.refresh_from_db()
    assert (case.status, case.assignee) == ("open", None)
    assert not CaseNote.objects.exists()


@pytest.mark.django_db
def test_a_won_back_customer_is_shown_on_the_case(manager_client):
    case = make_case()
    later = ResponseFactory(score=9, invitation__customer=case.customer)
    FollowUpCase.objects.filter(pk=case.pk).update(won_back_at=timezone.now(), won_back_response=later)

    assert "Won back" in manager_client.get(f"/cases/{case.pk}/").content.decode()
    assert "won back" in manager_client.get("/cases/").content.decode()


@pytest.mark.django_db
def test_a_reason_with_a_script_is_escaped_on_the_list_and_the_case(manager_client):
    case = make_case(reason=SCRIPT)

    for path in ("/cases/", f"/cases/{case.pk}/"):
        content = manager_client.get(path).content.decode()
        assert SCRIPT not in content
        assert "&lt;script&gt;" in content


@pytest.mark.django_db
def test_a_reader_without_change_permission_cannot_change_status_or_assignee(client, viewer, manager):
    case = make_case()
    client.force_login(viewer)
    url = f"/cases/{case.pk}/"

    assert client.get(url).status_code == 200
    assert client.post(url, {"action": "status", "status": "resolved"}).status_code == 403
    assert client.post(url, {"action": "assign", "assignee": manager.pk}).status_code == 403
    assert client.post(url, {"action": "note", "text": "Left a voicemail."}).status_code == 302

    case.refresh_from_db()
    assert (case.status, case.resolved_at, case.assignee) == ("open", None, None)
    assert list(CaseNote.objects.values_list("text", flat=True)) == ["Left a voicemail."]
    assert 'value="status"' not in client.get(url).content.decode()


@pytest.mark.django_db
def test_an_unknown_case_is_404(manager_client):
    make_case()

    assert manager_client.get("/cases/999999/").status_code == 404
    assert manager_client.post("/cases/999999/", {"action": "status", "status": "resolved"}).status_code == 404


def test_a_forged_cross_site_post_cannot_change_a_case_with_the_managers_session(manager):
    # CSRF guards every view a session cookie opens (the survey has no session and needs none).
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    case = make_case()

    forged = client.post(f"/cases/{case.pk}/", {"action": "status", "status": "resolved"})

    assert forged.status_code == 403
    case.refresh_from_db()
    assert case.status == "open"
    page = client.get(f"/cases/{case.pk}/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    done = client.post(f"/cases/{case.pk}/", {"action": "status", "status": "resolved", "csrfmiddlewaretoken": token})
    assert done.status_code == 302
    case.refresh_from_db()
    assert case.status == "resolved"
