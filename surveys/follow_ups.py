"""What a change sets in motion for the workers (a coupon email, a case alert, a webhook
delivery), handed over once the change commits, in batches when Redis is there.

A Celery message per answer cost the answer a fifth of its time on the web
server (bench/http.py). With Redis (CACHE_URL, as in production) a follow-up
is added to one Redis set, in a single round trip; whoever finds the set empty
publishes one `follow_ups_dispatch` task that runs NPS_FOLLOW_UP_BATCH_SECONDS
later and enqueues everything in the set by then, so a burst of answers shares
one message from the web and the workers publish the rest. Without Redis
(development, the tests) each follow-up is published at once.

Nothing depends on this for correctness: the work itself is a row in the
database (an unsettled promoter, a case without its alert, a pending
delivery) that the beat sweeps find if a message, a dispatch or Redis is lost.
"""

import logging

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from . import redis_store

logger = logging.getLogger(__name__)

# The tasks a follow-up can name; anything else found in the set is ignored.
TASKS = ("promoter_reward_task", "case_alert_task", "webhook_deliver_task")
_POP_BATCH = 500


def _key() -> str:
    return redis_store.key("follow-ups")


def _publish(task_name: str, object_id: int) -> None:
    from . import tasks

    getattr(tasks, task_name).delay(object_id)


def follow_up_on_commit(task_name: str, object_id: int) -> None:
    """Once the current transaction commits, have a worker run `task_name(object_id)`."""
    assert task_name in TASKS, task_name
    transaction.on_commit(lambda: _hand_over(task_name, object_id), robust=True)


def _hand_over(task_name: str, object_id: int) -> None:
    client = redis_store.client()
    delay = settings.NPS_FOLLOW_UP_BATCH_SECONDS
    if client is None or delay <= 0:
        _publish(task_name, object_id)
        return
    try:
        pipeline = client.pipeline(transaction=False)
        pipeline.sadd(_key(), f"{task_name}:{object_id}")
        pipeline.scard(_key())
        _added, size = pipeline.execute()
    except RedisError as exc:
        logger.warning("Follow-up set unavailable, publishing %s(%s) directly: %s", task_name, object_id, exc)
        _publish(task_name, object_id)
        return
    if size == 1:
        # The set was empty: no dispatch is on its way for what is in it now.
        from . import tasks

        tasks.follow_ups_dispatch.apply_async(countdown=delay)


def follow_ups_dispatch() -> int:
    """Enqueue every follow-up in the set, until it is empty. Returns how many."""
    client = redis_store.client()
    if client is None:
        return 0
    published = 0
    while members := client.spop(_key(), _POP_BATCH):
        for member in members:
            task_name, _, object_id = member.decode().partition(":")
            if task_name in TASKS and object_id.isdigit():
                _publish(task_name, int(object_id))
                published += 1
            else:
                logger.warning("Ignoring an unknown follow-up %r", member)
    return published
