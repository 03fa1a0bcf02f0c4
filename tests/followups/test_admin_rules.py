"""Admin edits of a case and API edits of an answer follow the rules of the cases pages and of a new answer.

SPEC §8.7: a case saved in the admin gets its times, its notes and its recount
like one worked on /cases/<id>/; the assignee list holds only people who may
work cases. A score changed through the Delighted API (PUT
/v1/survey_responses/<id>) sets in motion what an answer with that score would.
"""

import base64
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core import mail
from django.utils import timezone

from surveys.dashboard import selectors as selectors_dashboard
from surveys.dashboard.services import daily_stats_rollup
from surveys.models import CaseNote, FollowUpCase, StatsDirtyDay

from ..factories import InvitationFactory, ResponseFactory, TouchpointFactory
from ..page_parsing import elements, form_values

pytestmark = pytest.mark.django_db

ALERT_RECIPIENTS = "lead@example.com, ops@example.com"


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", alert_recipients=ALERT_RECIPIENTS)


@pytest.fixture
def manager(db):
    """May work cases (the Managers group has surveys.change_followupcase)."""
    user = User.objects.create_user("maria", "maria@example.com", "pw")
    user.groups.add(Group.objects.get(name="Managers"))
    return user


@pytest.fixture
def viewer(db):
    """Staff who may read cases and add notes, but not change a case."""
    user = User.objects.create_user("victor", "victor@example.com", "pw", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_followupcase", "add_casenote", "view_casenote"])
    )
    return user


def make_case(touchpoint, *, days_ago=5, score=3, status=FollowUpCase.Status.OPEN):
    """A detractor's case opened `days_ago` days ago, as response_submit opens one."""
    opened = timezone.now() - timedelta(days=days_ago)
    response = ResponseFactory(
        invitation=InvitationFactory(touchpoint=touchpoint), score=score, reason="Late again.",
        created_at=opened, updated_at=opened,
    )
    resolved_at = timezone.now() if status == FollowUpCase.Status.RESOLVED else None
    return FollowUpCase.objects.create(
        response=response, customer=response.customer, touchpoint=touchpoint, status=status, opened_at=opened,
        due_at=opened + timedelta(hours=48), resolved_at=resolved_at,
    )


def change_url(case) -> str:
    return f"/admin/surveys/followupcase/{case.pk}/change/"


def case_form(client, case) -> dict:
    """What the admin's case form submits untouched."""
    page = client.get(change_url(case))
    assert page.status_code == 200
    return {name: values[0] for name, values in form_values(page.content, "followupcase_form").items() if values}


def save_case(client, case, **changes):
    return client.post(change_url(case), {**case_form(client, case), **changes})


def add_note(client, case, text: str):
    """Fill in one new row of the notes inline and save the case."""
    form = case_form(client, case)
    row = int(form["notes-TOTAL_FORMS"])
    form.update({"notes-TOTAL_FORMS": str(row + 1), f"notes-{row}-text": text})
    return client.post(change_url(case), form)


def notes_of(case) -> list[tuple[str, str | None]]:
    return [(note.text, note.author.get_username() if note.author else None)
            for note in CaseNote.objects.filter(case=case).order_by("pk")]


def form_errors(response) -> dict:
    return response.context["adminform"].form.errors


# --- Status: the times, the note, the recount -------------------------------------------------


def test_resolving_a_case_in_the_admin_stamps_when_it_was_resolved_and_contacted(admin_client, touchpoint):
    case = make_case(touchpoint)
    before = timezone.now()

    response = save_case(admin_client, case, status="resolved")

    assert response.status_code == 302, form_errors(response)
    case.refresh_from_db()
    assert case.status == "resolved"
    assert case.resolved_at is not None and case.resolved_at >= before
    assert case.contacted_at == case.resolved_at


def test_resolving_a_case_in_the_admin_writes_the_status_note_in_the_admins_name(admin_client, touchpoint):
    case = make_case(touchpoint)

    save_case(admin_client, case, status="resolved")

    assert notes_of(case) == [("Status set to resolved.", "admin")]


def test_resolving_a_case_in_the_admin_has_its_opened_day_recounted(admin_client, touchpoint):
    case = make_case(touchpoint, days_ago=5)

    save_case(admin_client, case, status="resolved")

    assert StatsDirtyDay.objects.filter(day=timezone.localdate(case.opened_at)).exists()


def test_a_case_resolved_in_the_admin_counts_as_closed_on_the_dashboard(admin_client, touchpoint):
    case = make_case(touchpoint, days_ago=5)
    daily_stats_rollup()  # the day the case opened is rolled up, with the case still open
    today = timezone.localdate()

    def closed() -> int:
        return selectors_dashboard.follow_up_summary(start=today - timedelta(days=9), end=today, touchpoint=None)[
            "closed"
        ]

    assert closed() == 0

    save_case(admin_client, case, status="resolved")
    daily_stats_rollup()

    assert closed() == 1


def test_marking_a_case_contacted_then_resolved_keeps_the_first_contact_time(admin_client, touchpoint):
    case = make_case(touchpoint)
    save_case(admin_client, case, status="contacted")
    case.refresh_from_db()
    contacted_at = case.contacted_at

    save_case(admin_client, case, status="resolved")

    case.refresh_from_db()
    assert contacted_at is not None
    assert case.contacted_at == contacted_at
    assert case.resolved_at > contacted_at
    assert [text for text, _ in notes_of(case)] == ["Status set to contacted.", "Status set to resolved."]


def test_reopening_a_resolved_case_in_the_admin_clears_its_resolved_time(admin_client, touchpoint):
    case = make_case(touchpoint, status=FollowUpCase.Status.RESOLVED)

    response = save_case(admin_client, case, status="open")

    assert response.status_code == 302, form_errors(response)
    case.refresh_from_db()
    assert (case.status, case.resolved_at) == ("open", None)
    assert notes_of(case) == [("Status set to open.", "admin")]


def test_saving_a_case_unchanged_writes_no_note(admin_client, touchpoint):
    case = make_case(touchpoint)

    response = save_case(admin_client, case)

    assert response.status_code == 302, form_errors(response)
    assert notes_of(case) == []


def test_the_due_time_cannot_be_typed_in_the_admin(admin_client, touchpoint):
    case = make_case(touchpoint)
    due_at = case.due_at

    save_case(admin_client, case, due_at_0="2099-01-01", due_at_1="00:00:00")

    case.refresh_from_db()
    assert case.due_at == due_at


# --- Assignee: only people who may work cases --------------------------------------------------


def test_assigning_a_case_in_the_admin_writes_who_it_went_to(admin_client, touchpoint, manager):
    case = make_case(touchpoint)

    response = save_case(admin_client, case, assignee=str(manager.pk))

    assert response.status_code == 302, form_errors(response)
    case.refresh_from_db()
    assert case.assignee == manager
    assert notes_of(case) == [("Assigned to maria.", "admin")]


def test_the_assignee_list_offers_only_people_who_may_work_cases(admin_client, touchpoint, manager, viewer):
    case = make_case(touchpoint)
    User.objects.create_user("gone", "gone@example.com", "pw", is_active=False).groups.add(
        Group.objects.get(name="Managers")
    )

    page = admin_client.get(change_url(case))

    options = {option.text.strip() for option in elements(page.content, "option") if option.attrs.get("value")}
    assert options & {"admin", "maria", "victor", "gone"} == {"admin", "maria"}


def test_someone_who_may_not_work_cases_cannot_be_made_assignee(admin_client, touchpoint, viewer):
    case = make_case(touchpoint)

    response = save_case(admin_client, case, assignee=str(viewer.pk))

    assert response.status_code == 200
    assert "assignee" in form_errors(response)
    case.refresh_from_db()
    assert case.assignee is None
    assert notes_of(case) == []


# --- Notes added in the inline -----------------------------------------------------------------


def test_a_note_added_in_the_admin_is_signed_by_the_admin(admin_client, touchpoint):
    case = make_case(touchpoint)

    response = add_note(admin_client, case, "  Called her back, parcel re-sent.  ")

    assert response.status_code == 302, form_errors(response)
    assert notes_of(case) == [("Called her back, parcel re-sent.", "admin")]


def test_a_blank_note_in_the_admin_is_not_stored(admin_client, touchpoint):
    case = make_case(touchpoint)

    add_note(admin_client, case, "   \n  ")

    assert notes_of(case) == []


def test_a_note_and_a_status_change_saved_together_both_reach_the_case(admin_client, touchpoint):
    case = make_case(touchpoint)
    form = case_form(admin_client, case)
    form.update({"status": "resolved", "notes-TOTAL_FORMS": "1", "notes-0-text": "Refunded."})

    response = admin_client.post(change_url(case), form)

    assert response.status_code == 302, form_errors(response)
    case.refresh_from_db()
    assert case.resolved_at is not None
    assert sorted(notes_of(case)) == [("Refunded.", "admin"), ("Status set to resolved.", "admin")]


# --- A score changed through the Delighted API ---------------------------------------------------


@pytest.fixture
def auth(api_key) -> dict:
    """The key as the HTTP Basic user name, as the official Delighted client sends it."""
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(api_key.encode()).decode()}


def put_score(client, auth, response, score: int):
    return client.put(
        f"/v1/survey_responses/{response.pk}", json.dumps({"score": score}), content_type="application/json", **auth
    )


def test_a_detractor_whose_score_is_raised_to_9_is_won_back(client, auth, touchpoint):
    earlier_case = make_case(touchpoint, days_ago=10, score=2)
    later = ResponseFactory(
        invitation=InvitationFactory(touchpoint=touchpoint, customer=earlier_case.customer), score=3,
        created_at=timezone.now() - timedelta(days=1),
    )

    answer = put_score(client, auth, later, 9)

    assert answer.status_code == 200, answer.content
    assert answer.json()["score"] == 9
    earlier_case.refresh_from_db()
    assert earlier_case.won_back_at is not None
    assert earlier_case.won_back_response_id == later.pk


def test_raising_an_old_answer_does_not_win_back_a_case_opened_after_it(client, auth, touchpoint):
    old_case = make_case(touchpoint, days_ago=10, score=3)
    newer = ResponseFactory(
        invitation=InvitationFactory(touchpoint=touchpoint, customer=old_case.customer), score=2,
        created_at=timezone.now() - timedelta(days=5),
    )
    newer_case = FollowUpCase.objects.create(
        response=newer, customer=newer.customer, touchpoint=touchpoint, opened_at=newer.created_at,
        due_at=newer.created_at + timedelta(hours=48),
    )

    put_score(client, auth, old_case.response, 9)

    # The customer's latest word is still the 2 given after it: nobody was won back.
    newer_case.refresh_from_db()
    assert newer_case.won_back_at is None


def test_a_promoter_whose_score_is_lowered_to_2_gets_a_follow_up_case(client, auth, touchpoint):
    promoter = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=9)

    answer = put_score(client, auth, promoter, 2)

    assert answer.status_code == 200, answer.content
    case = FollowUpCase.objects.get(response=promoter)
    assert (case.status, case.customer_id, case.touchpoint) == ("open", promoter.customer_id, touchpoint)
    assert case.due_at == case.opened_at + timedelta(hours=touchpoint.case_due_hours)


def test_a_score_lowered_to_2_alerts_the_touchpoints_alert_recipients(
    client, auth, touchpoint, django_capture_on_commit_callbacks
):
    promoter = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=9, reason="Great")

    with django_capture_on_commit_callbacks(execute=True):
        put_score(client, auth, promoter, 2)

    assert [sorted(message.to) for message in mail.outbox] == [["lead@example.com", "ops@example.com"]]
    assert FollowUpCase.objects.get(response=promoter).alert_sent_at is not None


def test_a_passive_score_changed_to_another_passive_score_opens_nothing(
    client, auth, touchpoint, django_capture_on_commit_callbacks
):
    passive = ResponseFactory(invitation=InvitationFactory(touchpoint=touchpoint), score=7)

    with django_capture_on_commit_callbacks(execute=True):
        answer = put_score(client, auth, passive, 8)

    assert answer.status_code == 200, answer.content
    passive.refresh_from_db()
    assert (passive.score, passive.category) == (8, "passive")
    assert not FollowUpCase.objects.exists()
    assert mail.outbox == []
