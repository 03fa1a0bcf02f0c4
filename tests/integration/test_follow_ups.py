"""Follow-ups batched through Redis (CACHE_URL, as in production): coupons, case alerts and
webhook deliveries of a burst of answers leave the web in one Celery message, and a real
worker still sends every one of them exactly once."""

import secrets
import time

import pytest
import redis

from nps_app import celery_app
from surveys.core import dispatch as follow_ups
from surveys.models import Coupon, FollowUpCase, WebhookDelivery, WebhookEndpoint
from surveys.responses.services import response_submit
from tests.factories import CustomerFactory, InvitationFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PROMOTERS = 12
DETRACTORS = 8


@pytest.fixture
def follow_up_set(celery_workers, settings, broker):
    """CACHE_URL on the suite's Redis, under a key prefix of this test's own, here and in the workers."""
    prefix = f"lp-test-{secrets.token_hex(6)}"
    settings.CACHE_URL = celery_app.conf.broker_url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": prefix}}
    settings.NPS_FOLLOW_UP_BATCH_SECONDS = 1
    celery_workers.env.update(CACHE_URL=settings.CACHE_URL, CACHE_KEY_PREFIX=prefix)
    yield follow_ups._key()
    broker.delete(follow_ups._key())


def _messages_in(broker: redis.Redis, queue: str) -> list[bytes]:
    return broker.lrange(queue, 0, -1)


def _handed_over(broker: redis.Redis, key: str, count: int, queue: str, timeout: float = 5) -> None:
    """Wait for the process's hander-over thread to put `count` follow-ups in the set and publish
    the dispatch (no answer waits for it), then a little longer: a second message would show."""
    deadline = time.monotonic() + timeout
    while (broker.scard(key) < count or not broker.llen(queue)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)


def test_a_burst_of_answers_leaves_in_one_message_and_every_follow_up_is_sent_once(
    touchpoint, celery_workers, worker_smtp, broker, follow_up_set
):
    touchpoint.alert_recipients = "team@example.com"
    touchpoint.save()
    WebhookEndpoint.objects.create(name="CRM", url="http://127.0.0.1:9/hook", events=["case.opened"], is_active=False)
    invitations = [
        InvitationFactory(touchpoint=touchpoint, customer=customer)
        for customer in CustomerFactory.create_batch(PROMOTERS + DETRACTORS)
    ]

    for n, invitation in enumerate(invitations):
        response_submit(invitation=invitation, score=10 if n < PROMOTERS else 2)
    _handed_over(broker, follow_up_set, PROMOTERS + DETRACTORS, celery_workers.queue)

    queued = _messages_in(broker, celery_workers.queue)
    print(f"\n{len(invitations)} answers published {len(queued)} Celery message(s); "
          f"{broker.scard(follow_up_set)} follow-ups waiting in the Redis set")
    assert len(queued) == 1 and b"follow_ups_dispatch" in queued[0]
    assert broker.scard(follow_up_set) == PROMOTERS + DETRACTORS

    celery_workers.start()
    coupons = worker_smtp.wait_for_messages("LP-", count=PROMOTERS, timeout=30)
    alerts = worker_smtp.wait_for_messages("team@example.com", count=DETRACTORS, timeout=30)
    time.sleep(1)  # anything sent twice would arrive by now

    assert len(worker_smtp.messages("LP-")) == len(coupons) == PROMOTERS
    assert len(worker_smtp.messages("team@example.com")) == len(alerts) == DETRACTORS
    assert Coupon.objects.filter(emailed_at__isnull=False).count() == PROMOTERS
    assert FollowUpCase.objects.filter(alert_sent_at__isnull=False).count() == DETRACTORS
    assert broker.scard(follow_up_set) == 0
    assert WebhookDelivery.objects.count() == 0  # the only endpoint is inactive


def test_answers_still_get_their_follow_ups_when_the_set_is_unreachable(
    touchpoint, celery_workers, worker_smtp, settings, broker, follow_up_set
):
    settings.CACHE_URL = "redis://127.0.0.1:1/0"  # nothing listens there: published one by one instead
    invitation = InvitationFactory(touchpoint=touchpoint)

    response_submit(invitation=invitation, score=9)
    follow_ups.flush()  # whatever the process's hander-over thread has not done yet

    queued = _messages_in(broker, celery_workers.queue)
    assert len(queued) == 1 and b"promoter_reward_task" in queued[0]
    celery_workers.start()
    worker_smtp.wait_for_messages("LP-", count=1, timeout=30)
    assert Coupon.objects.get().emailed_at is not None


def test_a_process_that_stops_right_after_an_answer_still_hands_its_follow_ups_over(broker, tmp_path):
    """The hander-over thread works a moment after the answer; a web worker stopping cleanly
    (a deploy, gunicorn's max-requests) hands over at exit what it still has."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    prefix, queue = f"lp-test-{secrets.token_hex(6)}", f"lp-test-exit-{secrets.token_hex(6)}"
    env = {
        **os.environ, "DJANGO_SETTINGS_MODULE": "nps_app.settings", "DEBUG": "1",
        "CACHE_URL": celery_app.conf.broker_url, "CACHE_KEY_PREFIX": prefix,
        "CELERY_BROKER_URL": celery_app.conf.broker_url, "CELERY_TASK_DEFAULT_QUEUE": queue,
        "NPS_VAR_DIR": str(tmp_path),
    }
    script = (
        "import django; django.setup()\n"
        "from surveys.core import dispatch as follow_ups\n"
        "follow_ups._hand_over('promoter_reward_task', 123)\n"
        "follow_ups._hand_over('case_alert_task', 456)\n"
        "print(follow_ups._key())\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=Path(__file__).resolve().parents[2],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        key = done.stdout.strip().splitlines()[-1]

        assert broker.smembers(key) == {b"promoter_reward_task:123", b"case_alert_task:456"}
        queued = _messages_in(broker, queue)
        assert len(queued) == 1 and b"follow_ups_dispatch" in queued[0]
    finally:
        for leftover in [*broker.scan_iter(match=f"*{prefix}*"), *broker.scan_iter(match=f"*{queue}*")]:
            broker.delete(leftover)
