"""Promoter coupons end to end, with real Celery workers, Redis, PostgreSQL and an SMTP server.

A promoter's answer commits -> promoter_reward_task is published to Redis ->
a worker process issues the coupon in PostgreSQL and emails it over SMTP. Then
what the 30-day guarantee rests on: the promoters sweep recovers a coupon the
SMTP server refused, and a worker killed with SIGKILL in the middle of a batch
loses no promoter's coupon and issues no second code.
"""

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.db.models import Count, F
from django.utils import timezone

from surveys.core.sweeps import EMAIL_CLAIM_TIMEOUT, SWEEP_GRACE
from surveys.models import Category, Coupon, ReferralLink, Response
from surveys.promoters.services import promoters_sweep
from surveys.responses.services import response_submit
from surveys.tasks import promoter_reward_task
from tests.factories import CustomerFactory, InvitationFactory
from tests.integration.conftest import WORKER_SITE_URL

# Committed transactions, so the worker processes see the rows; see test_survey_loop.py.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

COUPON_CODE = re.compile(r"LP-[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}")
BATCH = 200
KILL_AFTER_EMAILS = 20
RECOVERY_TIMEOUT = 60


def _wait_for(fetch, check, *, timeout: float = 20, what: str = "the condition"):
    """Poll `fetch()` until `check(value)` holds; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s: {value!r}"
        time.sleep(0.1)


def _text_and_html(message) -> tuple[str, str]:
    return (
        message.get_body(preferencelist=("plain",)).get_content(),
        message.get_body(preferencelist=("html",)).get_content(),
    )


def _past_the_sweep_grace(*response_ids: int) -> None:
    """The sweep leaves answers younger than its grace period to their own task; let that time pass."""
    Response.objects.filter(pk__in=response_ids).update(
        created_at=timezone.now() - SWEEP_GRACE - timedelta(minutes=1)
    )


def test_a_promoter_answer_gets_one_coupon_email_from_the_worker(client, touchpoint, celery_worker, worker_smtp):
    touchpoint.promoter_offer = "15% off your next delivery"
    touchpoint.save()
    invitation = InvitationFactory(touchpoint=touchpoint, customer__email="pat@example.com", customer__name="Pat Kim")

    answer = client.post(f"/s/{invitation.token}/", {"score": "10", "reason": "Always on time."}, follow=True)

    assert answer.status_code == 200
    assert b"your coupon is on its way" in answer.content
    response = Response.objects.get(invitation=invitation)
    assert response.category == Category.PROMOTER
    coupon = _wait_for(
        lambda: Coupon.objects.filter(response=response, emailed_at__isnull=False).first(),
        bool,
        what="the coupon being emailed",
    )
    [message] = worker_smtp.wait_for_messages(coupon.code)
    assert message["To"] == "pat@example.com"
    assert coupon.code in message["Subject"]
    valid_until = timezone.localdate(coupon.expires_at).isoformat()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", valid_until)
    assert coupon.expires_at - coupon.issued_at == timedelta(days=30)
    referral_url = f"{WORKER_SITE_URL}/r/{ReferralLink.objects.get(customer=invitation.customer).code}/"
    text, html = _text_and_html(message)
    for part in (text, html):
        assert coupon.code in part
        assert valid_until in part
        assert referral_url in part
        assert "15% off your next delivery" in part

    celery_worker.wait_idle()
    response.refresh_from_db()
    assert response.coupon_settled_at is not None
    assert Coupon.objects.filter(customer=invitation.customer).count() == 1
    assert len(worker_smtp.messages()) == 1
    coupon.refresh_from_db()
    assert (coupon.email_attempts, coupon.last_error) == (1, "")


def test_smtp_outage_then_the_sweep_emails_the_coupon_once(touchpoint, celery_worker, worker_smtp):
    worker_smtp.stop()
    invitation = InvitationFactory(touchpoint=touchpoint)
    response = response_submit(invitation=invitation, score=9, reason="Good value.")

    # The worker issued the coupon, could not send it, recorded why and scheduled a retry.
    coupon = _wait_for(
        lambda: Coupon.objects.filter(response=response).exclude(last_error="").first(),
        bool,
        what="the failed coupon email",
    )
    assert coupon.emailed_at is None
    assert coupon.email_claimed_at is None  # released, so the sweep can claim it
    assert coupon.email_attempts == 1
    assert "refused" in coupon.last_error.lower() or "Connection" in coupon.last_error
    celery_worker.wait_for_log(r"promoter_reward_task\[[^\]]+\] retry: Retry in 30s", timeout=10)
    response.refresh_from_db()
    assert response.coupon_settled_at is None
    assert worker_smtp.messages() == []

    # SMTP is back. The answer is older than the sweep's grace period, well inside 30 days.
    worker_smtp.start()
    _past_the_sweep_grace(response.pk)
    assert promoters_sweep() == {"window_closed": 0, "enqueued": 1}

    [message] = worker_smtp.wait_for_messages(coupon.code)
    assert message["To"] == invitation.customer.email
    _wait_for(
        lambda: Response.objects.get(pk=response.pk).coupon_settled_at,
        bool,
        what="the response being settled",
    )
    coupon.refresh_from_db()
    assert coupon.emailed_at is not None
    assert (coupon.email_attempts, coupon.last_error) == (2, "")
    assert Coupon.objects.filter(customer=invitation.customer).count() == 1

    # A redelivered task, or the next sweep, finds nothing left to do.
    assert celery_worker.task_result(promoter_reward_task.delay(response.pk).id) == "nothing-to-do"
    assert promoters_sweep() == {"window_closed": 0, "enqueued": 0}
    celery_worker.wait_idle()
    assert len(worker_smtp.messages()) == 1


def _queued(broker: redis.Redis, queue: str) -> int:
    return sum(broker.llen(key) for key in broker.scan_iter(match=f"{queue}*") if broker.type(key) == b"list")


def _wait_drained(worker, broker: redis.Redis, queue: str, deadline: float) -> None:
    """Until the queue is empty and the worker has finished every task it took, twice in a row."""
    quiet = 0
    while quiet < 2:
        quiet = quiet + 1 if not _queued(broker, queue) and not worker.busy_tasks() else 0
        assert time.monotonic() < deadline, f"the worker did not drain the queue: {_queued(broker, queue)} left"
        time.sleep(0.2)


def _coupon_codes_emailed(worker_smtp) -> Counter:
    return Counter(COUPON_CODE.search(message["Subject"]).group(0) for message in worker_smtp.messages())


def test_a_worker_killed_mid_batch_loses_no_coupon_and_issues_no_second_code(
    touchpoint, celery_workers, worker_smtp, broker
):
    invitations = [
        InvitationFactory(touchpoint=touchpoint, customer=customer) for customer in CustomerFactory.create_batch(BATCH)
    ]
    # 200 answers, each committed on its own, publish 200 messages before a worker
    # runs, so the batch is still in full swing when the worker is killed.
    responses = [response_submit(invitation=invitation, score=9) for invitation in invitations]
    assert _queued(broker, celery_workers.queue) == BATCH

    first = celery_workers.start()
    worker_smtp.wait_for_messages("", count=KILL_AFTER_EMAILS, timeout=30)
    killed = first.kill()
    emails_at_kill = len(worker_smtp.messages())
    pool_processes_killed = len(killed) - 1  # the main process only hands out messages
    print(f"\nSIGKILLed {len(killed)} worker processes ({pool_processes_killed} in the pool) "
          f"after {emails_at_kill} coupon emails")
    assert emails_at_kill < BATCH, "the worker finished the batch before it was killed"
    assert pool_processes_killed >= 1

    # Messages the dead worker had reserved wait in Redis for the visibility
    # timeout (an hour); the sweep is what recovers them, and a stale email
    # claim is taken back after 10 minutes: let that time pass instead of waiting.
    second = celery_workers.start()
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    unsettled = Response.objects.filter(pk__in=[r.pk for r in responses], coupon_settled_at__isnull=True)
    sweeps = []
    claims_taken_back = 0
    while True:
        _wait_drained(second, broker, celery_workers.queue, deadline)
        if not unsettled.exists():
            break
        assert time.monotonic() < deadline, f"{unsettled.count()} promoters still unsettled after {sweeps}"
        _past_the_sweep_grace(*unsettled.values_list("pk", flat=True))
        claims_taken_back += Coupon.objects.filter(emailed_at__isnull=True, email_claimed_at__isnull=False).update(
            email_claimed_at=F("email_claimed_at") - EMAIL_CLAIM_TIMEOUT - timedelta(minutes=1)
        )
        sweeps.append(promoters_sweep())

    customers = [invitation.customer_id for invitation in invitations]
    per_customer = dict(
        Coupon.objects.filter(customer_id__in=customers).values_list("customer_id").annotate(n=Count("id"))
    )
    assert per_customer == {customer: 1 for customer in customers}
    coupons = {
        coupon.code: coupon for coupon in Coupon.objects.filter(customer_id__in=customers).select_related("customer")
    }
    assert all(coupon.emailed_at is not None for coupon in coupons.values())

    emailed = _coupon_codes_emailed(worker_smtp)
    # Every coupon went out, and no email carries a code that was not recorded.
    assert set(emailed) == set(coupons)
    for message in worker_smtp.messages():
        assert message["To"] == coupons[COUPON_CODE.search(message["Subject"]).group(0)].customer.email
    duplicates = sum(emailed.values()) - len(coupons)
    print(f"Recovered with {len(sweeps)} sweep(s) {sweeps}, {claims_taken_back} stale email claim(s) taken back; "
          f"{sum(emailed.values())} coupon emails for {len(coupons)} coupons: {duplicates} duplicate email(s)")
    # Only an email already handed to the SMTP server when its worker process
    # died, before emailed_at was recorded, goes out twice: one per pool process.
    assert duplicates <= pool_processes_killed
