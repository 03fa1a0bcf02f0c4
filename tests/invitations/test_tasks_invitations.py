"""invitations_send_batch_task: redelivery, SMTP retries against a real server, giving up, vanished rows."""

from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.utils import timezone

from surveys.invitations.services import invitation_request, invitations_enqueue
from surveys.models import Invitation
from surveys.tasks import invitations_send_batch_task, invitations_sweep

from ..factories import InvitationFactory


@pytest.fixture
def eager_retries():
    """Let `self.retry` re-run the task inline, as a worker would run it again later.

    With CELERY_TASK_EAGER_PROPAGATES on (the test settings), Celery raises the
    `Retry` out of the eager call instead of re-running the task, and the
    robust on-commit hook swallows it. Only for these tests, retries run inline.
    """
    from nps_app.celery import app

    previous = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = previous


def _request(customer, touchpoint, capture) -> Invitation:
    """Trigger a survey the way every entry point does; its send task runs on commit."""
    with capture(execute=True):
        outcome = invitation_request(touchpoint=touchpoint, customer=customer)
    invitation = outcome.invitation
    invitation.refresh_from_db()
    return invitation


@pytest.mark.django_db
def test_a_redelivered_task_sends_once(customer, touchpoint, django_capture_on_commit_callbacks):
    invitation = _request(customer, touchpoint, django_capture_on_commit_callbacks)

    result = invitations_send_batch_task.delay([invitation.pk])

    assert result.get() == {"not-claimed": 1}
    assert len(mail.outbox) == 1
    invitation.refresh_from_db()
    assert (invitation.status, invitation.send_attempts) == (Invitation.Status.SENT, 1)


@pytest.mark.django_db
def test_the_same_task_queued_twice_sends_once(customer, touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        invitation = invitation_request(touchpoint=touchpoint, customer=customer).invitation
        invitations_enqueue([invitation.pk])  # a duplicate message from the broker

    assert len(mail.outbox) == 1
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT


@pytest.mark.django_db
def test_it_retries_after_an_smtp_error_and_sends(
    eager_retries, smtp_settings, customer, touchpoint, django_capture_on_commit_callbacks
):
    smtp_settings.handler.fail_next = 1

    invitation = _request(customer, touchpoint, django_capture_on_commit_callbacks)

    assert invitation.status == Invitation.Status.SENT
    assert invitation.send_attempts == 2
    assert invitation.last_error == ""
    assert [rcpt for _, rcpt, _ in smtp_settings.handler.messages] == [["jane@example.com"]]


@pytest.mark.django_db
def test_it_gives_up_after_the_last_retry(
    eager_retries, settings, smtp_settings, customer, touchpoint, django_capture_on_commit_callbacks
):
    settings.NPS_SEND_MAX_RETRIES = 2
    smtp_settings.handler.fail_next = 10

    invitation = _request(customer, touchpoint, django_capture_on_commit_callbacks)

    assert invitation.status == Invitation.Status.FAILED
    assert "451" in invitation.last_error
    assert invitation.send_attempts == 3
    assert invitation.sent_at is None
    assert smtp_settings.handler.messages == []
    assert smtp_settings.handler.fail_next == 7


@pytest.mark.django_db
def test_a_failed_invitation_is_left_alone_by_the_sweep(
    eager_retries, settings, smtp_settings, customer, touchpoint, django_capture_on_commit_callbacks
):
    settings.NPS_SEND_MAX_RETRIES = 0
    smtp_settings.handler.fail_next = 1
    invitation = _request(customer, touchpoint, django_capture_on_commit_callbacks)
    assert invitation.status == Invitation.Status.FAILED

    invitations_sweep.delay().get()

    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.FAILED
    assert smtp_settings.handler.messages == []


@pytest.mark.django_db
def test_it_returns_quietly_for_a_deleted_invitation(customer, touchpoint):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING)
    invitation_id = invitation.pk
    invitation.delete()

    result = invitations_send_batch_task.delay([invitation_id])

    assert result.successful()
    assert result.get() == {"not-claimed": 1}
    assert mail.outbox == []


@pytest.mark.django_db
def test_the_sweep_does_not_resend_while_a_retry_waits_out_its_backoff(smtp_settings, customer, touchpoint):
    invitation = InvitationFactory(customer=customer, touchpoint=touchpoint, status=Invitation.Status.PENDING)
    smtp_settings.handler.fail_next = 1

    # What a worker sees: the task asks to be retried in 30 seconds.
    with pytest.raises(Retry):
        invitations_send_batch_task.delay([invitation.pk])

    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.PENDING
    assert invitation.send_after > timezone.now() + timedelta(seconds=20)
    assert invitations_sweep.delay().get() == {"reclaimed": 0, "enqueued": 0}
    assert smtp_settings.handler.messages == []
