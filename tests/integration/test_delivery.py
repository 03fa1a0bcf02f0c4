"""Batched delivery and reminders end to end, with a real Celery worker, Redis, PostgreSQL and SMTP server.

Invitations created in bulk (`invitation_request(enqueue=False)`) are published
with `invitations_enqueue`: a few Redis messages of NPS_SEND_BATCH_SIZE ids,
each sent by the worker over one SMTP connection. The SMTP server here counts
connections as well as messages. A due reminder is a row swept in this
process and sent by the worker, once.
"""

import math
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from surveys.invitations.services import invitation_request, invitations_enqueue, reminders_sweep
from surveys.models import Invitation
from surveys.tasks import reminders_send_batch_task
from tests.conftest import ConnectionCountingHandler, _free_port
from tests.factories import CustomerFactory, TouchpointFactory
from tests.integration.conftest import WorkerSmtp

# Committed transactions, so the worker process sees the rows (see test_survey_loop.py).
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BATCH_SIZE = 50
BATCH_TASK_RECEIVED = re.compile(r"Task surveys\.tasks\.invitations_send_batch_task\[([0-9a-f-]{36})\] received")


@pytest.fixture(scope="module")
def worker_smtp(integration_services):
    """The worker's SMTP server for this module (overrides the conftest's): it also counts connections."""
    server = WorkerSmtp(port=_free_port())
    server.handler = ConnectionCountingHandler()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker_env(worker_env):
    """The worker batches reminders' deferrals with the same size as this process publishes."""
    return {**worker_env, "NPS_SEND_BATCH_SIZE": str(BATCH_SIZE)}


@pytest.fixture
def batch_size(settings):
    # This process publishes, so its setting decides how many ids travel in each message.
    settings.NPS_SEND_BATCH_SIZE = BATCH_SIZE
    return BATCH_SIZE


def _wait_for(condition, *, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def _invitations_requested(touchpoint, count: int) -> list[int]:
    ids = []
    for customer in CustomerFactory.create_batch(count):
        outcome = invitation_request(
            touchpoint=touchpoint, customer=customer, source=Invitation.Source.IMPORT, enqueue=False
        )
        assert not outcome.skipped, outcome.skip_reason
        ids.append(outcome.invitation.pk)
    return ids


def test_120_invitations_travel_in_3_broker_messages_and_arrive_over_a_few_connections(
    batch_size, celery_worker, worker_smtp
):
    touchpoint = TouchpointFactory(name="Home delivery", slug="delivery")
    worker_smtp.handler.reset()
    log_before = len(celery_worker.log())
    ids = _invitations_requested(touchpoint, 120)

    # enqueue=False published nothing: the invitations wait for the bulk caller.
    time.sleep(0.5)
    assert not BATCH_TASK_RECEIVED.search(celery_worker.log()[log_before:])
    assert Invitation.objects.filter(pk__in=ids, status=Invitation.Status.PENDING).count() == 120

    batches = invitations_enqueue(ids)

    assert batches == math.ceil(120 / batch_size) == 3
    messages = worker_smtp.wait_for_messages("/s/", count=120, timeout=60)
    _wait_for(
        lambda: Invitation.objects.filter(pk__in=ids, status=Invitation.Status.SENT).count() == 120,
        what="120 invitations marked sent",
    )
    celery_worker.wait_idle()
    assert len(worker_smtp.messages()) == 120  # nothing sent twice
    invitations = Invitation.objects.select_related("customer").filter(pk__in=ids)
    assert sorted(message["To"] for message in messages) == sorted(invitation.customer.email for invitation in invitations)
    for invitation in invitations:
        [message] = [message for message in messages if f"/s/{invitation.token}/" in message.as_string()]
        assert message["To"] == invitation.customer.email
        assert invitation.send_attempts == 1

    with worker_smtp.handler.lock:
        connections = worker_smtp.handler.connections
    print(f"\n120 invitations arrived over {connections} SMTP connection(s)")
    assert 1 <= connections <= 6, connections
    received = BATCH_TASK_RECEIVED.findall(celery_worker.log()[log_before:])
    print(f"The worker received {len(received)} invitations_send_batch_task message(s) from Redis")
    assert len(received) == 3, received
    sent = [celery_worker.task_result(task_id) for task_id in received]
    assert sorted(sent) == sorted(["{'sent': 50}", "{'sent': 50}", "{'sent': 20}"]), sent


def test_a_due_reminder_is_sent_once_and_a_second_sweep_sends_nothing(batch_size, celery_worker, worker_smtp):
    worker_smtp.handler.reset()
    touchpoint = TouchpointFactory(name="Store visit", slug="store-visit", reminder_delay_days=1)
    customer = CustomerFactory(email="rita@example.com", name="Rita Moreno")
    invitation = invitation_request(touchpoint=touchpoint, customer=customer, enqueue=False).invitation
    marker = f"/s/{invitation.token}/"
    invitations_enqueue([invitation.pk])
    [first] = worker_smtp.wait_for_messages(marker, count=1)
    invitation = _wait_for(
        lambda: Invitation.objects.filter(pk=invitation.pk, status=Invitation.Status.SENT).first(),
        what="the invitation marked sent",
    )
    assert "reminder" not in first["Subject"].lower()
    assert invitation.remind_after == invitation.sent_at + timedelta(days=1)
    assert invitation.reminded_at is None

    # Not due yet: the sweep finds nothing.
    assert reminders_sweep() == {"enqueued": 0}

    Invitation.objects.filter(pk=invitation.pk).update(remind_after=timezone.now() - timedelta(minutes=1))
    assert reminders_sweep() == {"enqueued": 1}

    messages = worker_smtp.wait_for_messages(marker, count=2)
    reminder = messages[1]
    assert reminder["To"] == "rita@example.com"
    assert "reminder" in reminder["Subject"].lower(), reminder["Subject"]
    text = reminder.get_body(preferencelist=("plain",)).get_content()
    assert "This is our only reminder." in text
    invitation.refresh_from_db()
    assert invitation.reminded_at is not None
    assert invitation.status == Invitation.Status.SENT

    # A second sweep enqueues nothing, and a redelivered reminder message claims nothing.
    assert reminders_sweep() == {"enqueued": 0}
    redelivered = reminders_send_batch_task.delay([invitation.pk])
    assert celery_worker.task_result(redelivered.id) == "{'not-claimed': 1}"
    celery_worker.wait_idle()
    time.sleep(0.5)
    assert len(worker_smtp.messages(marker)) == 2
    with worker_smtp.handler.lock:
        assert worker_smtp.handler.connections == 2  # the invitation's batch and the reminder's


def _worker_database_sessions() -> set[int]:
    """Backend pids of the other sessions on this test database: the worker's (this process's own excluded)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return {pid for (pid,) in cursor.fetchall()}


def test_the_worker_keeps_its_database_connections_from_batch_to_batch(batch_size, celery_worker, worker_smtp):
    touchpoint = TouchpointFactory(name="Home delivery", slug="delivery")
    worker_smtp.handler.reset()
    first = _invitations_requested(touchpoint, 4 * batch_size)
    invitations_enqueue(first)
    worker_smtp.wait_for_messages("/s/", count=len(first), timeout=60)
    celery_worker.wait_idle()
    kept = _worker_database_sessions()

    second = _invitations_requested(touchpoint, 4 * batch_size)
    invitations_enqueue(second)
    worker_smtp.wait_for_messages("/s/", count=len(first) + len(second), timeout=60)
    celery_worker.wait_idle()

    # One connection per pool process, still open after its batches and used again for the next ones:
    # not a new PostgreSQL connection for every batch.
    assert 1 <= len(kept) <= 2, kept
    assert _worker_database_sessions() == kept
    assert Invitation.objects.filter(pk__in=first + second, status=Invitation.Status.SENT).count() == 8 * batch_size
