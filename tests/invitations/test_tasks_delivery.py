"""The batch sending tasks: rate-capped deferral, SMTP retries of what is left, giving up, reminders."""

from datetime import datetime, timedelta

import pytest
from celery.exceptions import Retry
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone

from surveys.models import Invitation
from surveys.tasks import (
    invitations_expire,
    invitations_send_batch_task,
    invitations_sweep,
    reminders_send_batch_task,
    reminders_sweep,
    retry_delay,
)

from ..conftest import _free_port
from ..factories import CustomerFactory, InvitationFactory
from ..page_parsing import elements
from .test_services_delivery import (
    away_from_a_minute_boundary,
    counting_smtp_server,
    ids,
    in_memory_broker,
    pending,
    statuses,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def smtp(settings):
    """A real SMTP server that counts the connections it is given."""
    yield from counting_smtp_server(settings)


@pytest.fixture
def broker_messages():
    """What the code publishes to the broker, instead of running it inline."""
    yield from in_memory_broker()


@pytest.fixture
def eager_retries():
    """Let `self.retry` re-run the task inline, as a worker would run it again later.

    With CELERY_TASK_EAGER_PROPAGATES on (the test settings), Celery raises the
    `Retry` out of the eager call instead of re-running the task.
    """
    from nps_app.celery import app

    previous = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    yield
    app.conf.task_eager_propagates = previous


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests"))
    return client


# --- Sending ------------------------------------------------------------------------------------


def test_the_batch_task_sends_every_invitation_over_one_connection(smtp):
    invitations = pending(4)

    result = invitations_send_batch_task.delay(ids(invitations))

    assert result.get() == {"sent": 4}
    assert smtp.connections == 1
    assert sorted(smtp.recipients) == [f"c{i}@example.com" for i in range(4)]


def test_a_redelivered_batch_sends_nothing_again(smtp):
    invitations = pending(3)
    invitations_send_batch_task.delay(ids(invitations))

    result = invitations_send_batch_task.delay(ids(invitations))

    assert result.get() == {"not-claimed": 3}
    assert len(smtp.messages) == 3


def test_a_batch_of_deleted_invitations_succeeds_quietly(smtp):
    invitations = pending(2)
    gone = ids(invitations)
    Invitation.objects.all().delete()

    result = invitations_send_batch_task.delay(gone)

    assert result.successful()
    assert smtp.messages == []


def test_invitations_deferred_by_the_rate_cap_are_enqueued_for_the_next_minute(settings, smtp, broker_messages):
    settings.NPS_SEND_RATE_PER_MINUTE = 2
    invitations = pending(5)
    away_from_a_minute_boundary()

    result = invitations_send_batch_task.apply(args=[ids(invitations)])

    assert result.get() == {"sent": 2}
    [(task, args, headers)] = broker_messages
    assert (task, args) == ("surveys.tasks.invitations_send_batch_task", [ids(invitations)[2:]])
    eta = datetime.fromisoformat(headers["eta"])
    next_minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    assert next_minute <= eta <= next_minute + timedelta(seconds=2)
    assert statuses(invitations) == ["sent", "sent", "pending", "pending", "pending"]
    assert len(smtp.messages) == 2


def test_after_an_smtp_failure_only_the_invitations_left_are_retried(eager_retries, smtp):
    invitations = pending(4)
    smtp.defer_once.add("c1@example.com")

    invitations_send_batch_task.delay(ids(invitations))

    assert sorted(smtp.recipients) == [f"c{i}@example.com" for i in range(4)]
    assert statuses(invitations) == ["sent"] * 4
    attempts = dict(Invitation.objects.values_list("customer__email", "send_attempts"))
    assert attempts["c0@example.com"] == 1
    assert attempts["c1@example.com"] == 2
    assert smtp.connections == 2
    assert all(invitation.last_error == "" for invitation in Invitation.objects.all())


def test_a_retry_waits_out_its_backoff_and_the_sweep_leaves_it_alone(smtp):
    invitations = pending(3)
    smtp.defer_once.add("c1@example.com")

    # What a worker sees: the task asks to be run again, for the rest, in 30 seconds.
    with pytest.raises(Retry) as retry:
        invitations_send_batch_task.delay(ids(invitations))

    assert retry.value.when == retry_delay(0) == 30
    assert statuses(invitations) == ["sent", "pending", "pending"]
    later = Invitation.objects.filter(pk__in=ids(invitations)[1:])
    assert all(invitation.send_after > timezone.now() + timedelta(seconds=20) for invitation in later)
    assert invitations_sweep.delay().get() == {"reclaimed": 0, "enqueued": 0}
    assert smtp.recipients == ["c0@example.com"]


def test_the_backoff_grows_with_each_retry():
    assert [retry_delay(attempt) for attempt in range(8)] == [30, 60, 120, 240, 480, 960, 1800, 1800]


def test_after_the_last_retry_the_invitations_left_are_marked_failed_with_the_error(eager_retries, settings, smtp):
    settings.NPS_SEND_MAX_RETRIES = 2
    smtp.fail_next = 100
    invitations = pending(3)

    invitations_send_batch_task.delay(ids(invitations))

    assert statuses(invitations) == ["failed"] * 3
    assert smtp.messages == []
    assert smtp.fail_next == 97  # three tries of the first one, then it gave up
    for invitation in Invitation.objects.all():
        assert "451" in invitation.last_error, invitation.customer.email
        assert invitation.sent_at is None


def test_an_unreachable_smtp_server_is_retried_then_the_invitations_are_marked_failed(eager_retries, settings):
    settings.NPS_SEND_MAX_RETRIES = 1
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()
    invitations = pending(2)

    invitations_send_batch_task.delay(ids(invitations))

    assert statuses(invitations) == ["failed", "failed"]
    for invitation in Invitation.objects.all():
        assert "refused" in invitation.last_error.lower(), invitation.customer.email


def test_a_failed_invitation_is_listed_under_failed_in_admin_and_can_be_retried(
    eager_retries, settings, smtp, admin_client, django_capture_on_commit_callbacks
):
    settings.NPS_SEND_MAX_RETRIES = 0
    [ok] = pending(1, prefix="ok")
    [bounced] = pending(1, prefix="bounced")
    invitations_send_batch_task.delay([ok.pk])
    smtp.fail_next = 1
    invitations_send_batch_task.delay([bounced.pk])
    assert statuses([ok, bounced]) == ["sent", "failed"]

    listed = admin_client.get("/admin/surveys/invitation/", {"status__exact": "failed"})

    rows = [row.text for row in elements(listed.content, "tr")]
    assert any("bounced0@example.com" in row for row in rows)
    assert not any("ok0@example.com" in row for row in rows)
    detail = admin_client.get(f"/admin/surveys/invitation/{bounced.pk}/change/").content.decode()
    assert "451" in detail

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/surveys/invitation/?status__exact=failed",
            {"action": "retry_sending", "_selected_action": [bounced.pk]},
        )

    assert statuses([bounced]) == ["sent"]
    assert sorted(smtp.recipients) == ["bounced0@example.com", "ok0@example.com"]
    assert admin_client.get("/admin/surveys/invitation/", {"status__exact": "failed"}).context["cl"].result_count == 0


# --- Reminders, expiry ------------------------------------------------------------------------------


def _due(n: int) -> list[Invitation]:
    return [
        InvitationFactory(customer=CustomerFactory(email=f"r{i}@example.com"), remind_after=timezone.now())
        for i in range(n)
    ]


def test_the_reminder_task_sends_a_batch_of_reminders(smtp):
    due = _due(3)

    result = reminders_send_batch_task.delay(ids(due))

    assert result.get() == {"sent": 3}
    assert smtp.connections == 1
    assert sorted(smtp.recipients) == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_the_reminder_task_leaves_failed_reminders_to_the_next_sweep(smtp):
    due = _due(3)
    smtp.defer_once.add("r1@example.com")

    result = reminders_send_batch_task.delay(ids(due))

    assert result.get() == {"smtp-error": 1}
    reminded = dict(Invitation.objects.values_list("customer__email", "reminded_at"))
    assert reminded["r0@example.com"] is not None
    assert reminded["r1@example.com"] is None
    assert reminded["r2@example.com"] is None

    reminders_sweep.delay().get()

    assert sorted(smtp.recipients) == ["r0@example.com", "r1@example.com", "r2@example.com"]


def test_reminders_deferred_by_the_rate_cap_are_enqueued_for_the_next_minute(settings, smtp, broker_messages):
    settings.NPS_SEND_RATE_PER_MINUTE = 1
    due = _due(3)
    away_from_a_minute_boundary()

    result = reminders_send_batch_task.apply(args=[ids(due)])

    assert result.get() == {"sent": 1}
    [(task, args, headers)] = broker_messages
    assert (task, args) == ("surveys.tasks.reminders_send_batch_task", [ids(due)[1:]])
    assert headers["eta"] is not None


def test_the_reminder_sweep_task_publishes_batches(settings, broker_messages):
    settings.NPS_SEND_BATCH_SIZE = 2
    due = _due(5)

    reminders_sweep.apply().get()

    assert [(task, args) for task, args, _ in broker_messages] == [
        ("surveys.tasks.reminders_send_batch_task", [ids(due)[0:2]]),
        ("surveys.tasks.reminders_send_batch_task", [ids(due)[2:4]]),
        ("surveys.tasks.reminders_send_batch_task", [ids(due)[4:5]]),
    ]
    assert mail.outbox == []


def test_the_expiry_task_closes_invitations_past_their_expiry(touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint, expires_at=timezone.now() - timedelta(seconds=1))

    assert invitations_expire.delay().get() == {"expired": 1, "cancelled": 0}
    assert statuses([invitation]) == ["expired"]
