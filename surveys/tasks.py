"""Celery tasks: thin interfaces that take an id and call a service.

Every task is safe to run twice: services claim rows with conditional
updates, and a task that finds nothing to do succeeds quietly.
"""

import logging
from datetime import timedelta

from celery import shared_task
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import close_old_connections

from .access import services as access
from .core import dispatch, sweeps
from .dashboard import services as dashboard
from .followups import services as followups
from .invitations import services as invitations
from .promoters import services as promoters
from .webhooks import services as webhooks

logger = logging.getLogger(__name__)


@task_prerun.connect
@task_postrun.connect
def _database_connections_checked(sender=None, **kwargs) -> None:
    """Around each task, what Django does around each request: close a connection that is
    broken, in error or older than CONN_MAX_AGE, and keep a good one for the next task.

    Celery would otherwise close it after every task (CELERY_DB_REUSE_MAX unset), and a
    worker would pay a new PostgreSQL connection for every batch of invitations.
    """
    if sender is not None and not getattr(sender.request, "is_eager", False):  # eager: inside the caller's transaction
        close_old_connections()


def retry_delay(attempt: int) -> int:
    """Exponential backoff in seconds: 30 s, 60 s, 2 min, 4 min … capped at 30 min."""
    return min(30 * 2**attempt, 1800)


@shared_task
def invitations_sweep() -> dict:
    return invitations.invitations_sweep()


@shared_task
def idempotency_keys_purge() -> int:
    return access.idempotency_purge()


@shared_task(bind=True, max_retries=None)
def promoter_reward_task(self, response_id: int) -> str:
    try:
        return promoters.promoter_reward(response_id=response_id)
    except sweeps.SendFailed as exc:
        if self.request.retries >= settings.NPS_SEND_MAX_RETRIES:
            # The coupon stays issued and unsent; the promoters sweep keeps
            # trying while the 30-day window is open.
            logger.warning("Coupon email for response %s still failing: %s", response_id, exc)
            return "deferred-to-sweep"
        raise self.retry(countdown=retry_delay(self.request.retries), exc=exc) from exc


@shared_task
def promoters_sweep() -> dict:
    return promoters.promoters_sweep()


@shared_task
def follow_ups_dispatch() -> int:
    return dispatch.follow_ups_dispatch()


@shared_task(bind=True, max_retries=None)
def case_alert_task(self, case_id: int) -> str:
    try:
        return followups.case_alert_send(case_id=case_id)
    except sweeps.SendFailed as exc:
        if self.request.retries >= settings.NPS_SEND_MAX_RETRIES:
            logger.warning("Alert for case %s still failing: %s", case_id, exc)
            return "deferred-to-sweep"
        raise self.retry(countdown=retry_delay(self.request.retries), exc=exc) from exc


@shared_task
def case_alerts_sweep() -> int:
    return followups.case_alerts_sweep()


@shared_task
def daily_stats_rollup() -> dict:
    return dashboard.daily_stats_rollup()


def _seconds_to_next_minute() -> int:
    from django.utils import timezone

    return 61 - timezone.now().second


@shared_task(bind=True, max_retries=None)
def invitations_send_batch_task(self, invitation_ids: list[int]) -> dict:
    """Send a batch of invitations over one SMTP connection, within the send rate cap."""
    try:
        outcome = invitations.invitations_send_batch(invitation_ids=invitation_ids)
    except sweeps.SendFailed as exc:
        remaining = exc.remaining or invitation_ids
        if self.request.retries >= settings.NPS_SEND_MAX_RETRIES:
            logger.warning("Giving up on %s invitations after %s retries: %s", len(remaining), self.request.retries, exc)
            for invitation_id in remaining:
                invitations.invitation_mark_failed(invitation_id=invitation_id)
            return {"failed": len(remaining)}
        delay = retry_delay(self.request.retries)
        for invitation_id in remaining:
            invitations.invitation_postpone(invitation_id=invitation_id, delay=timedelta(seconds=delay))
        raise self.retry(args=[remaining], countdown=delay, exc=exc) from exc
    if outcome.deferred:
        # The rate cap is spent for this minute: the rest waits for the next one.
        invitations_send_batch_task.apply_async(args=[outcome.deferred], countdown=_seconds_to_next_minute())
    return outcome.results


@shared_task
def reminders_sweep() -> dict:
    return invitations.reminders_sweep()


@shared_task
def reminders_send_batch_task(invitation_ids: list[int]) -> dict:
    """A failed reminder releases its claim; the next sweep tries again, so no Celery retry here."""
    try:
        outcome = invitations.reminders_send_batch(invitation_ids=invitation_ids)
    except sweeps.SendFailed as exc:
        logger.warning("Reminder batch stopped by SMTP trouble, the sweep will try again: %s", exc)
        return {"smtp-error": 1}
    if outcome.deferred:
        reminders_send_batch_task.apply_async(args=[outcome.deferred], countdown=_seconds_to_next_minute())
    return outcome.results


@shared_task
def invitations_expire() -> dict:
    return invitations.invitations_expire()


@shared_task
def webhook_deliver_task(delivery_id: int) -> str:
    # Retries are rows with a due time (next_attempt_at), swept by beat.
    return webhooks.webhook_deliver(delivery_id=delivery_id)


@shared_task
def webhooks_sweep() -> int:
    return webhooks.webhooks_sweep()
