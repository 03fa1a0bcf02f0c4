"""Delivery at scale: batched enqueueing and sending, the send rate cap, reminders and expiry.

Sending goes through a real SMTP server (aiosmtpd) that counts the connections
it is given, so "many invitations per SMTP connection" is measured, not assumed.
"""

import threading
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from celery.signals import after_task_publish
from django.core import mail
from django.db import connection
from django.utils import timezone

from surveys.core.sweeps import SendFailed
from surveys.customers.services import customer_unsubscribe
from surveys.invitations.services import (
    invitations_enqueue,
    invitations_expire,
    invitations_send_batch,
    reminder_send,
    reminders_send_batch,
    reminders_sweep,
    send_quota_take,
)
from surveys.models import Invitation, Response, SendWindow
from surveys.responses.services import response_submit

from ..conftest import ConnectionCountingHandler, _free_port, require_postgresql
from ..factories import (
    CustomerFactory,
    InvitationFactory,
    ResponseFactory,
    TouchpointFactory,
)

pytestmark = pytest.mark.django_db


def counting_smtp_server(settings):
    """A real SMTP server counting connections, with Django's email routed through it (a fixture body)."""
    handler = ConnectionCountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    try:
        yield handler
    finally:
        controller.stop()


def in_memory_broker():
    """Publish to an in-memory broker instead of running tasks inline; yields (task, args, headers) published.

    A fixture body: the messages are really published (kombu's memory transport), never run.
    """
    from nps_app.celery import app

    saved = (app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    app._pool = app.amqp._producer_pool = None
    published = []

    def record(sender=None, body=None, headers=None, **kwargs):
        published.append((sender, list(body[0]), headers))

    after_task_publish.connect(record, weak=False)
    try:
        yield published
    finally:
        after_task_publish.disconnect(record)
        app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


@pytest.fixture
def smtp(settings):
    yield from counting_smtp_server(settings)


@pytest.fixture
def broker_messages():
    yield from in_memory_broker()


def away_from_a_minute_boundary():
    """The rate cap counts per clock minute: start a capped test well inside one."""
    if timezone.now().second >= 55:
        time.sleep(61 - timezone.now().second)


def pending(n: int, touchpoint=None, prefix="c", **kwargs) -> list[Invitation]:
    touchpoint = touchpoint or TouchpointFactory()
    return [
        InvitationFactory(
            customer=CustomerFactory(email=f"{prefix}{i}@example.com"),
            touchpoint=touchpoint,
            status=Invitation.Status.PENDING,
            sent_at=None,
            **kwargs,
        )
        for i in range(n)
    ]


def ids(invitations) -> list[int]:
    return [invitation.pk for invitation in invitations]


def statuses(invitations) -> list[str]:
    by_id = dict(Invitation.objects.filter(pk__in=ids(invitations)).values_list("pk", "status"))
    return [by_id[invitation.pk] for invitation in invitations]


# --- Enqueueing in batches ------------------------------------------------------------------


def test_it_enqueues_invitations_a_batch_per_broker_message(settings, broker_messages):
    settings.NPS_SEND_BATCH_SIZE = 3
    invitations = pending(7)

    batches = invitations_enqueue(ids(invitations))

    assert batches == 3
    assert [(task, args) for task, args, _ in broker_messages] == [
        ("surveys.tasks.invitations_send_batch_task", [ids(invitations)[0:3]]),
        ("surveys.tasks.invitations_send_batch_task", [ids(invitations)[3:6]]),
        ("surveys.tasks.invitations_send_batch_task", [ids(invitations)[6:7]]),
    ]


def test_enqueueing_nothing_publishes_nothing(broker_messages):
    assert invitations_enqueue([]) == 0
    assert broker_messages == []


def test_the_default_batch_is_fifty_invitations_per_message(broker_messages):
    invitations = pending(51)

    invitations_enqueue(ids(invitations))

    assert [len(args[0]) for _, args, _ in broker_messages] == [50, 1]


# --- Sending a batch over one connection ------------------------------------------------------


def test_a_batch_is_sent_over_one_smtp_connection(smtp):
    invitations = pending(5)

    outcome = invitations_send_batch(invitation_ids=ids(invitations))

    assert outcome.results == {"sent": 5}
    assert outcome.deferred == []
    assert sorted(smtp.recipients) == [f"c{i}@example.com" for i in range(5)]
    assert smtp.connections == 1
    assert len(set(smtp.message_peers)) == 1
    assert statuses(invitations) == ["sent"] * 5


def test_invitations_enqueued_together_share_a_connection_per_batch(settings, smtp):
    settings.NPS_SEND_BATCH_SIZE = 2
    invitations = pending(5)

    invitations_enqueue(ids(invitations))  # tasks run inline in unit tests

    assert len(smtp.messages) == 5
    assert smtp.connections == 3
    assert sorted(smtp.message_peers.count(peer) for peer in set(smtp.message_peers)) == [1, 2, 2]
    assert statuses(invitations) == ["sent"] * 5


def test_a_batch_never_sends_an_invitation_twice(smtp):
    first, second = pending(2)
    invitations_send_batch(invitation_ids=[first.pk])

    outcome = invitations_send_batch(invitation_ids=[first.pk, second.pk, second.pk])

    assert sorted(smtp.recipients) == ["c0@example.com", "c1@example.com"]
    assert outcome.results["sent"] == 1
    assert statuses([first, second]) == ["sent", "sent"]


def test_a_batch_skips_an_unsubscribed_customer_and_sends_the_rest(smtp):
    invitations = pending(3)
    customer_unsubscribe(customer=invitations[1].customer)
    # Unsubscribing cancels pending invitations; one claimed just before is cancelled at send time.
    Invitation.objects.filter(pk=invitations[1].pk).update(status=Invitation.Status.PENDING)

    outcome = invitations_send_batch(invitation_ids=ids(invitations))

    assert sorted(smtp.recipients) == ["c0@example.com", "c2@example.com"]
    assert statuses(invitations) == ["sent", "cancelled", "sent"]
    assert outcome.results == {"sent": 2, "cancelled": 1}


def test_a_refused_recipient_fails_alone_and_the_batch_goes_on(smtp):
    invitations = pending(3)
    smtp.refuse.add("c1@example.com")

    outcome = invitations_send_batch(invitation_ids=ids(invitations))

    assert sorted(smtp.recipients) == ["c0@example.com", "c2@example.com"]
    assert smtp.connections == 1
    assert statuses(invitations) == ["sent", "failed", "sent"]
    refused = Invitation.objects.get(pk=invitations[1].pk)
    assert "Recipient refused" in refused.last_error and "550" in refused.last_error
    assert outcome.results == {"sent": 2, "failed": 1}


def test_an_smtp_failure_stops_the_batch_and_names_the_invitations_left(smtp):
    invitations = pending(5)
    smtp.defer_once.add("c2@example.com")

    with pytest.raises(SendFailed) as failure:
        invitations_send_batch(invitation_ids=ids(invitations))

    assert failure.value.remaining == ids(invitations)[2:]
    assert sorted(smtp.recipients) == ["c0@example.com", "c1@example.com"]
    assert statuses(invitations) == ["sent", "sent", "pending", "pending", "pending"]
    assert "451" in Invitation.objects.get(pk=invitations[2].pk).last_error


def test_an_unreachable_smtp_server_fails_the_whole_batch_for_a_retry(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()  # nobody listens there
    invitations = pending(3)

    with pytest.raises(SendFailed) as failure:
        invitations_send_batch(invitation_ids=ids(invitations))

    assert failure.value.remaining == ids(invitations)
    assert statuses(invitations) == ["pending"] * 3
    assert "refused" in Invitation.objects.get(pk=invitations[0].pk).last_error.lower()


def test_a_batch_of_invitations_that_no_longer_exist_sends_nothing(smtp):
    invitations = pending(2)
    gone = ids(invitations)
    Invitation.objects.all().delete()

    outcome = invitations_send_batch(invitation_ids=gone)

    assert outcome.results == {"not-claimed": 2}
    assert smtp.messages == []


# --- The send rate cap ---------------------------------------------------------------------------


def test_the_rate_cap_sends_up_to_the_cap_and_defers_the_rest(settings, smtp):
    settings.NPS_SEND_RATE_PER_MINUTE = 3
    invitations = pending(5)
    away_from_a_minute_boundary()

    outcome = invitations_send_batch(invitation_ids=ids(invitations))

    assert outcome.results == {"sent": 3}
    assert outcome.deferred == ids(invitations)[3:]
    assert len(smtp.messages) == 3
    assert statuses(invitations) == ["sent", "sent", "sent", "pending", "pending"]


def test_the_rate_cap_is_shared_by_every_batch_in_the_same_minute(settings, smtp):
    settings.NPS_SEND_RATE_PER_MINUTE = 3
    first, second = pending(2), pending(2, prefix="d")
    away_from_a_minute_boundary()

    invitations_send_batch(invitation_ids=ids(first))
    outcome = invitations_send_batch(invitation_ids=ids(second))

    assert outcome.results == {"sent": 1}
    assert outcome.deferred == ids(second)[1:]
    assert len(smtp.messages) == 3
    window = SendWindow.objects.get()
    assert window.sent == 3
    assert window.minute == timezone.now().replace(second=0, microsecond=0)


def test_a_new_minute_brings_a_new_allowance(settings):
    settings.NPS_SEND_RATE_PER_MINUTE = 2
    away_from_a_minute_boundary()
    this_minute = timezone.now().replace(second=0, microsecond=0)
    SendWindow.objects.create(minute=this_minute - timedelta(minutes=1), sent=2)

    assert [send_quota_take() for _ in range(3)] == [True, True, False]
    assert SendWindow.objects.get(minute=this_minute).sent == 2


def test_without_a_cap_every_email_may_go(settings):
    settings.NPS_SEND_RATE_PER_MINUTE = 0

    assert all(send_quota_take() for _ in range(100))
    assert not SendWindow.objects.exists()


def _at_once(workers: int, work) -> list:
    """Run `work()` in `workers` threads started together, each on its own database connection."""
    require_postgresql()
    start, results, lock = threading.Barrier(workers), [], threading.Lock()

    def run():
        try:
            start.wait()
            outcome = work()
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_workers_taking_from_the_cap_at_once_never_exceed_it(settings):
    settings.NPS_SEND_RATE_PER_MINUTE = 25
    away_from_a_minute_boundary()

    results = _at_once(8, lambda: [send_quota_take() for _ in range(10)])

    assert sum(taken.count(True) for taken in results) == 25
    assert SendWindow.objects.get().sent == 25


@pytest.mark.django_db(transaction=True)
def test_workers_given_the_same_batch_at_once_send_each_invitation_once():
    invitations = pending(6)

    _at_once(4, lambda: invitations_send_batch(invitation_ids=ids(invitations)))

    assert sorted(message.to[0] for message in mail.outbox) == [f"c{i}@example.com" for i in range(6)]
    assert statuses(invitations) == ["sent"] * 6


def test_reminders_count_against_the_same_cap(settings, smtp):
    settings.NPS_SEND_RATE_PER_MINUTE = 1
    due = [
        InvitationFactory(customer=CustomerFactory(email=f"r{i}@example.com"), remind_after=timezone.now())
        for i in range(2)
    ]
    away_from_a_minute_boundary()

    outcome = reminders_send_batch(invitation_ids=ids(due))

    assert outcome.results == {"sent": 1}
    assert outcome.deferred == [due[1].pk]
    assert smtp.recipients == ["r0@example.com"]


# --- Reminders ---------------------------------------------------------------------------------


def test_sending_sets_when_the_reminder_is_due_from_the_touchpoints_delay(smtp):
    [invitation] = pending(1, touchpoint=TouchpointFactory(reminder_delay_days=3))

    invitations_send_batch(invitation_ids=[invitation.pk])

    invitation.refresh_from_db()
    assert invitation.remind_after == invitation.sent_at + timedelta(days=3)
    assert invitation.reminded_at is None


def test_no_reminder_is_planned_when_the_touchpoint_has_no_delay(smtp):
    [invitation] = pending(1, touchpoint=TouchpointFactory(reminder_delay_days=0))

    invitations_send_batch(invitation_ids=[invitation.pk])

    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.SENT
    assert invitation.remind_after is None


@pytest.fixture
def reminder_cases(touchpoint):
    """One invitation per situation the reminder sweep must tell apart."""
    now = timezone.now()

    def make(name, **fields):
        defaults = {"remind_after": now - timedelta(hours=1), "sent_at": now - timedelta(days=3)}
        return InvitationFactory(
            customer=CustomerFactory(email=f"{name}@example.com", name=name.title()),
            touchpoint=touchpoint,
            **{**defaults, **fields},
        )

    cases = {
        "due": make("due"),
        "later": make("later", remind_after=now + timedelta(hours=1)),
        "never": make("never", remind_after=None),
        "reminded": make("reminded", reminded_at=now - timedelta(minutes=5)),
        "closed": make("closed", expires_at=now - timedelta(minutes=1)),
        "expired": make("expired", status=Invitation.Status.EXPIRED),
        "failed": make("failed", status=Invitation.Status.FAILED, sent_at=None),
        "pending": make("pending", status=Invitation.Status.PENDING, sent_at=None),
    }
    answered = make("answered")
    ResponseFactory(invitation=answered, score=8)
    Invitation.objects.filter(pk=answered.pk).update(answered_at=now - timedelta(days=1))
    cases["answered"] = answered
    return cases


def test_the_sweep_reminds_only_due_unanswered_open_invitations_not_yet_reminded(reminder_cases):
    result = reminders_sweep()

    assert result == {"enqueued": 1}
    assert [message.to for message in mail.outbox] == [["due@example.com"]]
    reminded = dict(Invitation.objects.values_list("customer__email", "reminded_at"))
    assert reminded.pop("due@example.com") is not None
    assert reminded.pop("reminded@example.com") is not None
    assert set(reminded.values()) == {None}


def test_the_reminder_says_it_is_a_reminder_and_links_to_the_same_survey(reminder_cases):
    invitation = reminder_cases["due"]

    reminders_sweep()

    [message] = mail.outbox
    assert message.subject == "Due, a reminder: how did we do?"
    assert "This is our only reminder." in message.body
    assert f"https://surveys.example.com/s/{invitation.token}/?score=10" in message.body
    assert message.extra_headers["List-Unsubscribe"].startswith("<https://surveys.example.com/u/")


def test_a_second_sweep_sends_no_second_reminder(reminder_cases):
    reminders_sweep()
    mail.outbox.clear()

    assert reminders_sweep() == {"enqueued": 0}
    assert reminder_send(invitation_id=reminder_cases["due"].pk) == "not-claimed"
    assert mail.outbox == []


def test_a_customer_who_unsubscribed_gets_no_reminder(reminder_cases):
    due = reminder_cases["due"]
    customer_unsubscribe(customer=due.customer)

    reminders_sweep()
    reminders_sweep()

    assert mail.outbox == []
    due.refresh_from_db()
    assert due.reminded_at is not None  # settled: no reminder will ever go


def test_an_invitation_answered_after_the_sweep_picked_it_gets_no_reminder(reminder_cases):
    due = reminder_cases["due"]
    response_submit(invitation=due, score=9)
    mail.outbox.clear()

    assert reminder_send(invitation_id=due.pk) == "not-claimed"
    assert mail.outbox == []


def test_an_smtp_failure_releases_the_reminder_for_the_next_sweep(smtp, reminder_cases):
    due = reminder_cases["due"]
    smtp.fail_next = 1

    with pytest.raises(SendFailed):
        reminder_send(invitation_id=due.pk)

    due.refresh_from_db()
    assert due.reminded_at is None
    assert smtp.messages == []

    reminders_sweep()

    assert smtp.recipients == ["due@example.com"]
    due.refresh_from_db()
    assert due.reminded_at is not None


def test_reminders_due_together_go_over_one_connection(smtp, touchpoint):
    due = [
        InvitationFactory(customer=CustomerFactory(email=f"r{i}@example.com"), remind_after=timezone.now())
        for i in range(4)
    ]

    reminders_sweep()

    assert sorted(smtp.recipients) == [f"r{i}@example.com" for i in range(4)]
    assert smtp.connections == 1
    assert all(invitation.reminded_at for invitation in Invitation.objects.filter(pk__in=ids(due)))


def test_a_refused_reminder_is_not_tried_again(smtp, reminder_cases):
    smtp.refuse.add("due@example.com")

    assert reminder_send(invitation_id=reminder_cases["due"].pk) == "refused"
    reminders_sweep()

    assert smtp.messages == []


def test_a_reminder_keeps_the_invitation_open_until_it_expires(reminder_cases):
    due = reminder_cases["due"]

    reminders_sweep()

    due.refresh_from_db()
    assert due.status == Invitation.Status.SENT
    assert due.expires_at > timezone.now()


# --- Expiry -------------------------------------------------------------------------------------


def test_it_closes_invitations_past_their_expiry(touchpoint):
    past = timezone.now() - timedelta(minutes=1)
    sent = InvitationFactory(touchpoint=touchpoint, expires_at=past)
    unsent = InvitationFactory(touchpoint=touchpoint, expires_at=past, status=Invitation.Status.PENDING, sent_at=None)
    answered = InvitationFactory(touchpoint=touchpoint, expires_at=past)
    ResponseFactory(invitation=answered, score=7)
    Invitation.objects.filter(pk=answered.pk).update(answered_at=past - timedelta(days=1))
    open_ = InvitationFactory(touchpoint=touchpoint)
    failed = InvitationFactory(touchpoint=touchpoint, expires_at=past, status=Invitation.Status.FAILED, sent_at=None)

    result = invitations_expire()

    assert result == {"expired": 1, "cancelled": 1}
    assert statuses([sent, unsent, answered, open_, failed]) == ["expired", "cancelled", "sent", "sent", "failed"]
    assert Invitation.objects.get(pk=unsent.pk).last_error == "Expired before it could be sent."
    assert Response.objects.get(invitation=answered).score == 7


def test_expiring_twice_changes_nothing_more(touchpoint):
    InvitationFactory(touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1))
    invitations_expire()

    assert invitations_expire() == {"expired": 0, "cancelled": 0}


def test_an_expired_invitation_is_never_sent(smtp, touchpoint):
    [invitation] = pending(1, touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1))
    invitations_expire()

    outcome = invitations_send_batch(invitation_ids=[invitation.pk])

    assert outcome.results == {"not-claimed": 1}
    assert smtp.messages == []


def test_the_survey_page_of_an_expired_invitation_says_it_closed(client, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint, expires_at=timezone.now() - timedelta(minutes=1))
    invitations_expire()

    page = client.get(f"/s/{invitation.token}/?score=9")
    answer = client.post(f"/s/{invitation.token}/", {"score": "9", "reason": "late"})

    assert page.status_code == 410
    assert "This survey has closed" in page.content.decode()
    assert answer.status_code == 410
    assert not Response.objects.exists()
    invitation.refresh_from_db()
    assert invitation.status == Invitation.Status.EXPIRED
    assert invitation.answered_at is None
