"""The hand-over to the Celery workers, by registered task name: `enqueue` publishes now;
`follow_up_on_commit` hands over what a change sets in motion (a coupon email, a case
alert, a webhook delivery) once the change commits, in batches when Redis is there.
Nothing here, nor in any domain, imports `surveys.tasks` (make lint holds it).

A Celery message per answer cost the answer a fifth of its time on the web
server (bench/http.py). With Redis (CACHE_URL, as in production) a follow-up
is added to one Redis set: a thread of the web process adds the follow-ups of
the last FLUSH_SECONDS in one round trip, so the customer's response never
waits for it; whoever finds the set empty publishes one `follow_ups_dispatch`
task that runs NPS_FOLLOW_UP_BATCH_SECONDS later and enqueues everything in
the set by then, so a burst of answers shares one message from the web and the
workers publish the rest. Without Redis (development, the tests) each
follow-up is published at once.

Nothing depends on this for correctness: the work itself is a row in the
database (an unsettled promoter, a case without its alert, a pending
delivery) that the beat sweeps find if a message, a dispatch or Redis is lost.
"""

import atexit
import logging
import os
import threading
import time

from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

from . import redis as redis_store

logger = logging.getLogger(__name__)

# The tasks a follow-up can name; anything else found in the set is ignored.
TASKS = ("promoter_reward_task", "case_alert_task", "webhook_deliver_task")
_POP_BATCH = 500


def _key() -> str:
    return redis_store.key("follow-ups")


TASK_MODULE = "surveys.tasks"


def enqueue(task_name: str, *args, countdown: int | None = None) -> None:
    """Publish `surveys.tasks.<task_name>(*args)` now, by its registered name (surveys/apps.py registers them)."""
    from celery import current_app

    task = current_app.tasks[f"{TASK_MODULE}.{task_name}"]
    if countdown is None:
        task.delay(*args)
    else:
        task.apply_async(args=args, countdown=countdown)


def _publish(task_name: str, object_id: int) -> None:
    enqueue(task_name, object_id)


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
    # The answer's response does not wait for Redis: this process's hander-over thread
    # adds what gathered in the last FLUSH_SECONDS to the set in one round trip.
    with _lock:
        _waiting.append(f"{task_name}:{object_id}")
    _hander.wake()


# Follow-ups committed in this process and not yet in the Redis set. A process killed before
# handing them over loses at most FLUSH_SECONDS' worth, which the beat sweeps then find.
_waiting: list[str] = []
_lock = threading.Lock()
FLUSH_SECONDS = 0.05


def flush() -> int:
    """Hand this process's waiting follow-ups over now (the thread does it by itself); returns how many."""
    with _lock:
        members = _waiting[:]
        del _waiting[:]
    if not members:
        return 0
    client = redis_store.client()
    try:
        if client is None:
            raise RedisError("no CACHE_URL")
        pipeline = client.pipeline(transaction=False)
        pipeline.sadd(_key(), *members)
        pipeline.scard(_key())
        added, size = pipeline.execute()
    except RedisError as exc:
        logger.warning("Follow-up set unavailable, publishing %d follow-up(s) directly: %s", len(members), exc)
        for member in members:
            task_name, _, object_id = member.partition(":")
            _publish(task_name, int(object_id))
        return len(members)
    if size == added:
        # The set was empty: no dispatch is on its way for what is in it now.
        enqueue("follow_ups_dispatch", countdown=settings.NPS_FOLLOW_UP_BATCH_SECONDS)
    return len(members)


class _Hander:
    """One daemon thread per process that calls flush() shortly after a follow-up arrives."""

    def __init__(self):
        self._event = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with _lock:  # one thread per process (a forked child gets a new _Hander, below)
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="follow-ups", daemon=True)
                    self._thread.start()
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            time.sleep(FLUSH_SECONDS)  # let the follow-ups of this moment gather
            self._event.clear()
            try:
                flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any one failure; the sweeps catch up
                logger.exception("Handing follow-ups over failed")


_hander = _Hander()
atexit.register(flush)  # a worker stopping cleanly hands over what it has


def _after_fork_in_child() -> None:
    # The parent hands over what it has; the child starts empty, with a lock no thread holds
    # and a hander that starts its own thread (the parent's does not exist in the child).
    global _lock, _hander
    _lock = threading.Lock()
    del _waiting[:]
    _hander = _Hander()


os.register_at_fork(after_in_child=_after_fork_in_child)


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
