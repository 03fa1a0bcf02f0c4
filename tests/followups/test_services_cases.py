"""Detractor follow-up: a case is opened, managers are alerted, the case is worked and the customer won back."""

import email
import email.policy
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone

from surveys import tasks
from surveys.followups.services import case_alerts_sweep, case_assign, case_note_add, case_status_set
from surveys.models import CaseNote, FollowUpCase
from surveys.responses.services import response_submit

from ..factories import InvitationFactory, TouchpointFactory

RECIPIENTS = "lead@example.com, ops@example.com ,"


@pytest.fixture
def answer(django_capture_on_commit_callbacks):
    def submit(invitation, score, reason=""):
        with django_capture_on_commit_callbacks(execute=True):
            return response_submit(invitation=invitation, score=score, reason=reason)

    return submit


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery", alert_recipients=RECIPIENTS)


@pytest.fixture
def manager(db):
    return User.objects.create_user("maria", "maria@example.com", "pw")


def again(invitation):
    """Another survey for the same customer."""
    return InvitationFactory(customer=invitation.customer, touchpoint=invitation.touchpoint)


def received(smtp_server):
    return [
        (rcpts, email.message_from_bytes(raw, policy=email.policy.default))
        for _, rcpts, raw in smtp_server.handler.messages
    ]


# --- Opening a case and alerting ---------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("score", [0, 3, 6])
def test_a_detractor_answer_opens_a_case_due_in_48_hours(answer, invitation, score):
    response = answer(invitation, score, "The parcel was late.")

    case = FollowUpCase.objects.get()
    assert case.response == response
    assert case.customer == invitation.customer
    assert case.touchpoint == invitation.touchpoint
    assert case.status == "open"
    assert case.assignee is None
    assert case.due_at == response.created_at + timedelta(hours=48)
    assert not case.is_overdue


@pytest.mark.django_db
def test_the_due_time_follows_the_touchpoint(answer, customer):
    touchpoint = TouchpointFactory(case_due_hours=4)

    response = answer(InvitationFactory(customer=customer, touchpoint=touchpoint), 2)

    assert FollowUpCase.objects.get().due_at == response.created_at + timedelta(hours=4)


@pytest.mark.django_db
def test_every_alert_recipient_is_told_score_reason_customer_and_case_link(answer, invitation):
    answer(invitation, 3, 'Driver said <b>"not my job"</b> & left')

    case = FollowUpCase.objects.get()
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["lead@example.com", "ops@example.com"]
    text = message.body
    html = [content for content, mimetype in message.alternatives if mimetype == "text/html"][0]
    case_url = f"https://surveys.example.com/cases/{case.pk}/"
    for body in (text, html):
        assert "3 out of 10" in body
        assert "Jane Doe" in body
        assert "jane@example.com" in body
        assert "Home delivery" in body
        assert case_url in body
    assert 'Driver said <b>"not my job"</b> & left' in text
    assert "<b>" not in html
    assert "Driver said &lt;b&gt;&quot;not my job&quot;&lt;/b&gt; &amp; left" in html
    assert "3/10" in message.subject and "Home delivery" in message.subject
    case.refresh_from_db()
    assert case.alert_sent_at is not None


@pytest.mark.django_db
def test_the_reason_never_goes_into_a_mail_header(answer, invitation, smtp_settings):
    reason = "Awful\r\nBcc: evil@example.com\r\nSubject: hacked\nX-Evil: yes"

    answer(invitation, 1, reason)

    [(rcpts, message)] = received(smtp_settings)
    assert sorted(rcpts) == ["lead@example.com", "ops@example.com"]
    for name, value in message.items():
        assert "evil" not in f"{name}: {value}".lower()
        assert "hacked" not in str(value).lower()
        assert "awful" not in str(value).lower()
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    body = message.get_body(preferencelist=("plain",)).get_content()
    assert "Bcc: evil@example.com" in body


@pytest.mark.django_db
def test_without_recipients_no_alert_goes_out_but_the_case_is_opened(answer, customer):
    touchpoint = TouchpointFactory(alert_recipients="  ")

    answer(InvitationFactory(customer=customer, touchpoint=touchpoint), 0)

    assert mail.outbox == []
    case = FollowUpCase.objects.get()
    assert case.alert_sent_at is not None
    assert case_alerts_sweep() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("score", [7, 8, 9, 10])
def test_passives_and_promoters_get_no_case_by_default(answer, invitation, score):
    answer(invitation, score)

    assert not FollowUpCase.objects.exists()
    assert [m for m in mail.outbox if "lead@example.com" in m.to] == []


@pytest.mark.django_db
@pytest.mark.parametrize("score, opens_case", [(7, True), (8, True), (9, False)])
def test_a_touchpoint_can_open_cases_for_passives(answer, customer, score, opens_case):
    touchpoint = TouchpointFactory(open_cases_for_passives=True, alert_recipients="lead@example.com")

    answer(InvitationFactory(customer=customer, touchpoint=touchpoint), score)

    assert FollowUpCase.objects.exists() is opens_case
    alerts = [m for m in mail.outbox if m.to == ["lead@example.com"]]
    assert len(alerts) == (1 if opens_case else 0)


# --- Won back -----------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("later_score", [7, 8, 10])
def test_a_later_answer_of_7_or_more_wins_the_customer_back(answer, invitation, later_score):
    answer(invitation, 2, "Rude driver.")

    later = answer(again(invitation), later_score, "Much better this time.")

    case = FollowUpCase.objects.get(response__invitation=invitation)
    assert case.won_back_at == later.created_at
    assert case.won_back_response == later


@pytest.mark.django_db
def test_a_later_answer_of_6_does_not(answer, invitation):
    answer(invitation, 2)

    answer(again(invitation), 6)

    first = FollowUpCase.objects.get(response__invitation=invitation)
    assert first.won_back_at is None
    assert first.won_back_response is None
    assert FollowUpCase.objects.count() == 2


@pytest.mark.django_db
def test_another_customers_answer_wins_nobody_back(answer, invitation, touchpoint):
    answer(invitation, 2)

    answer(InvitationFactory(touchpoint=touchpoint), 10)

    assert FollowUpCase.objects.get().won_back_at is None


# --- Working a case ---------------------------------------------------------------------


@pytest.fixture
def case(answer, invitation):
    answer(invitation, 4, "Slow.")
    return FollowUpCase.objects.get()


@pytest.mark.django_db
def test_assigning_records_who_did_it_and_when(case, manager):
    boss = User.objects.create_user("boss")

    case_assign(case=case, assignee=manager, by=boss)

    case.refresh_from_db()
    assert case.assignee == manager
    note = CaseNote.objects.get(case=case)
    assert note.author == boss
    assert "maria" in note.text
    assert abs(note.created_at - timezone.now()) < timedelta(seconds=10)


@pytest.mark.django_db
def test_notes_keep_their_author_and_time_in_order(case, manager):
    case_note_add(case=case, author=manager, text="  Called, no answer.  ")
    case_note_add(case=case, author=manager, text="Called again, apologised, refunded delivery.")

    notes = list(CaseNote.objects.filter(case=case).order_by("created_at", "pk"))
    assert [n.text for n in notes] == ["Called, no answer.", "Called again, apologised, refunded delivery."]
    assert all(n.author == manager and n.created_at is not None for n in notes)


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["", "   \n "])
def test_an_empty_note_is_refused(case, manager, text):
    with pytest.raises(ValidationError):
        case_note_add(case=case, author=manager, text=text)

    assert not CaseNote.objects.exists()


@pytest.mark.django_db
def test_contacted_then_resolved_records_times_and_notes(case, manager):
    case_status_set(case=case, status="contacted", by=manager)
    case.refresh_from_db()
    assert case.status == "contacted"
    assert case.contacted_at is not None
    assert case.resolved_at is None

    case_status_set(case=case, status="resolved", by=manager)

    contacted_at = case.contacted_at
    case.refresh_from_db()
    assert case.status == "resolved"
    assert case.resolved_at is not None
    assert case.contacted_at == contacted_at
    assert not case.is_overdue
    notes = list(CaseNote.objects.filter(case=case).order_by("created_at", "pk"))
    assert [n.text for n in notes] == ["Status set to contacted.", "Status set to resolved."]
    assert all(n.author == manager for n in notes)


@pytest.mark.django_db
def test_reopening_a_resolved_case_clears_its_resolved_time(case, manager):
    case_status_set(case=case, status="resolved", by=manager)

    case_status_set(case=case, status="open", by=manager)

    case.refresh_from_db()
    assert case.status == "open"
    assert case.resolved_at is None


@pytest.mark.django_db
def test_an_unknown_status_is_refused(case, manager):
    with pytest.raises(ValidationError):
        case_status_set(case=case, status="closed", by=manager)

    case.refresh_from_db()
    assert case.status == "open"
    assert not CaseNote.objects.exists()


@pytest.mark.django_db
def test_a_case_past_its_due_time_and_unresolved_is_overdue(case, manager):
    FollowUpCase.objects.filter(pk=case.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    case.refresh_from_db()
    assert case.is_overdue

    case_status_set(case=case, status="resolved", by=manager)

    case.refresh_from_db()
    assert not case.is_overdue


# --- Alert delivery -------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_alert_that_failed_is_sent_once_by_the_sweep(answer, invitation, smtp_settings):
    smtp_settings.handler.fail_next = 1000

    answer(invitation, 3, "Never again.")

    case = FollowUpCase.objects.get()
    assert case.alert_sent_at is None
    assert received(smtp_settings) == []

    smtp_settings.handler.fail_next = 0
    FollowUpCase.objects.filter(pk=case.pk).update(opened_at=timezone.now() - timedelta(minutes=5))
    assert case_alerts_sweep() == 1
    assert case_alerts_sweep() == 0
    assert tasks.case_alert_task.delay(case.pk).get() == "not-claimed"

    messages = received(smtp_settings)
    assert len(messages) == 1
    rcpts, message = messages[0]
    assert sorted(rcpts) == ["lead@example.com", "ops@example.com"]
    assert f"/cases/{case.pk}/" in message.get_body(preferencelist=("plain",)).get_content()
    case.refresh_from_db()
    assert case.alert_sent_at is not None


@pytest.mark.django_db
def test_the_alert_task_retries_a_passing_smtp_failure_once(answer, invitation, smtp_settings):
    smtp_settings.handler.fail_next = 1
    answer(invitation, 3)  # the first delivery fails and asks Celery for a retry
    case = FollowUpCase.objects.get()
    assert case.alert_sent_at is None

    assert tasks.case_alert_task.apply(args=[case.pk], retries=1).get() == "sent"
    assert tasks.case_alert_task.apply(args=[case.pk], retries=2).get() == "not-claimed"

    assert len(received(smtp_settings)) == 1
