"""Invitations: the request (policy: unsubscribed, inactive touchpoint, cooldown), sending in batches
over one SMTP connection, reminders, expiry and the sweeps that recover lost work.
"""

import smtplib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from surveys.core import db, dispatch
from surveys.core.sweeps import SWEEP_BATCH, SWEEP_GRACE, SendFailed
from surveys.customers.services import (
    SUPPRESSED,
    address_is_suppressed,
    addresses_suppressed,
    customer_suppress,
    invitations_cancel_unsent,
)
from surveys.mail import messages as emails
from surveys.models import (
    Customer,
    Invitation,
    SendWindow,
    SurveySkip,
    Touchpoint,
)

STUCK_SENDING_AFTER = timedelta(minutes=10)




@dataclass(frozen=True)
class InvitationOutcome:
    invitation: Invitation | None = None
    skip_reason: str | None = None

    @property
    def skipped(self) -> bool:
        return self.invitation is None


def invitation_request(
    *,
    touchpoint: Touchpoint,
    customer: Customer,
    source: str = Invitation.Source.API,
    send_after=None,
    enqueue: bool = True,
    properties: dict | None = None,
) -> InvitationOutcome:
    """The single entry point for "a touchpoint happened for this customer".

    Policy is checked in this order: unsubscribed, inactive touchpoint,
    cooldown (any invitation at any touchpoint within the touchpoint's
    cooldown days). A skip is recorded so admins can see why no survey went
    out. A new invitation is enqueued for sending once the transaction commits
    (bulk callers pass `enqueue=False` and enqueue their ids in batches with
    `invitations_enqueue`).
    """
    now = timezone.now()
    with transaction.atomic():
        # Lock the customer so two simultaneous triggers cannot both pass the cooldown.
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        reason = None
        if customer.unsubscribed_at is not None:
            reason = SurveySkip.Reason.UNSUBSCRIBED
        elif not touchpoint.is_active:
            reason = SurveySkip.Reason.INACTIVE_TOUCHPOINT
        elif touchpoint.cooldown_days and (
            (customer.last_sent_at and customer.last_sent_at >= now - timedelta(days=touchpoint.cooldown_days))
            or Invitation.objects.filter(
                customer=customer, created_at__gte=now - timedelta(days=touchpoint.cooldown_days)
            )
            .exclude(status__in=[Invitation.Status.FAILED, Invitation.Status.CANCELLED])
            .exists()
        ):
            reason = SurveySkip.Reason.COOLDOWN
        if reason is not None:
            SurveySkip.objects.create(customer=customer, touchpoint=touchpoint, reason=reason, source=source)
            return InvitationOutcome(skip_reason=str(reason))

        send_after = max(send_after or now, now)
        invitation = Invitation.objects.create(
            customer=customer,
            touchpoint=touchpoint,
            source=source,
            created_at=now,
            send_after=send_after,
            expires_at=send_after + timedelta(days=touchpoint.expiry_days),
            properties=properties or {},
        )
        # A delayed invitation (Delighted's `delay`) is a due time swept by beat, never a countdown.
        if send_after <= now and enqueue:
            transaction.on_commit(lambda: invitations_enqueue([invitation.pk]), robust=True)
    return InvitationOutcome(invitation=invitation)


def invitations_enqueue(invitation_ids: list[int]) -> int:
    """Publish sending work in batches: N invitations cost N / batch size broker messages."""
    return _enqueue_in_batches("invitations_send_batch_task", invitation_ids)


def _enqueue_in_batches(task_name: str, ids: list[int]) -> int:
    """`task_name(ids)` in batches of NPS_SEND_BATCH_SIZE (one SMTP connection each). Returns how many batches."""
    size = max(settings.NPS_SEND_BATCH_SIZE, 1)
    batches = 0
    for first in range(0, len(ids), size):
        dispatch.enqueue(task_name, list(ids[first : first + size]))
        batches += 1
    return batches


def send_quota_take() -> bool:
    """Take one email from this minute's allowance (NPS_SEND_RATE_PER_MINUTE, shared by all workers)."""
    cap = settings.NPS_SEND_RATE_PER_MINUTE
    if cap <= 0:
        return True
    minute = timezone.now().replace(second=0, microsecond=0)
    if not SendWindow.objects.filter(minute=minute).exists():
        try:
            with transaction.atomic():
                SendWindow.objects.create(minute=minute)
        except IntegrityError:
            pass  # another worker opened this minute first
    return bool(SendWindow.objects.filter(minute=minute, sent__lt=cap).update(sent=F("sent") + 1))


@dataclass
class BatchOutcome:
    results: dict
    deferred: list  # ids left for the next minute by the rate cap


def invitations_send_batch(*, invitation_ids: list[int]) -> BatchOutcome:
    """Send many invitations over one SMTP connection.

    The batch is claimed in one statement (rows another worker holds are
    skipped) and loaded in one query; each email is then recorded as sent on
    its own. Raises `SendFailed` (with `.remaining`, the ids not yet done)
    when the SMTP server fails, so the caller retries just those.
    """
    now = timezone.now()
    with transaction.atomic():
        mine = list(
            Invitation.objects.select_for_update(skip_locked=True)
            .filter(pk__in=invitation_ids, status=Invitation.Status.PENDING)
            .values_list("pk", flat=True)
        )
        Invitation.objects.filter(pk__in=mine).update(
            status=Invitation.Status.SENDING, claimed_at=now, send_attempts=F("send_attempts") + 1
        )
    loaded = Invitation.objects.select_related("customer", "touchpoint").in_bulk(mine)
    # pop: an id given twice is still sent once.
    claimed = [loaded.pop(pk) for pk in invitation_ids if pk in loaded]
    results: dict[str, int] = {}
    if len(claimed) < len(invitation_ids):
        results["not-claimed"] = len(invitation_ids) - len(claimed)
    # The suppression list, asked once for the whole batch (SPEC §8.2: checked as each email goes).
    suppressed = addresses_suppressed([invitation.customer.email for invitation in claimed])
    # All the batch's emails at once: the templates are rendered once per language, not once per customer.
    wanted = [invitation for invitation in claimed if _invitation_cancel_reason(invitation, now, suppressed) is None]
    messages = dict(zip((invitation.pk for invitation in wanted), emails.invitation_messages(wanted)))
    by_id = {invitation.pk: invitation for invitation in claimed}

    def send_one(*, invitation_id: int, connection) -> str:
        return _invitation_deliver(
            by_id[invitation_id], now=now, connection=connection, message=messages.get(invitation_id),
            suppressed=suppressed,
        )

    def put_back(ids: list[int], error: str = "") -> None:
        # Not tried: back to the queue, with the reason shown in admin should they finally fail.
        changes = {"status": Invitation.Status.PENDING, **({"last_error": error[:2000]} if error else {})}
        Invitation.objects.filter(pk__in=ids, status=Invitation.Status.SENDING).update(**changes)

    outcome = _send_batch(
        list(by_id), send_one, on_deferred=put_back,
        on_failed=lambda ids, exc: put_back(ids, f"The SMTP server failed before this one was tried: {exc}"),
    )
    return BatchOutcome(results={**results, **outcome.results}, deferred=outcome.deferred)


def _send_batch(invitation_ids: list[int], send_one, *, on_deferred=None, on_failed=None) -> BatchOutcome:
    """The one sending loop, for invitations and reminders alike: `send_one(invitation_id=…, connection=…)`
    for each id over one SMTP connection, within the send rate cap.

    Where the cap is spent, the rest is deferred (`on_deferred(ids)`, then returned to be sent next minute);
    where the SMTP server fails, `on_failed(ids, exc)` hears of those not done and `SendFailed` is raised with
    them in `.remaining`, for the caller to retry.
    """
    from django.core.mail import get_connection

    results: dict[str, int] = {}
    connection = None
    try:
        for index, invitation_id in enumerate(invitation_ids):
            if not send_quota_take():
                deferred = list(invitation_ids[index:])
                if on_deferred is not None:
                    on_deferred(deferred)
                return BatchOutcome(results=results, deferred=deferred)
            if connection is None:
                # Opened by send_one, so a refused connection is recorded and retried like a failed send.
                connection = get_connection()
            try:
                outcome = send_one(invitation_id=invitation_id, connection=connection)
            except SendFailed as exc:
                exc.remaining = list(invitation_ids[index:])
                if on_failed is not None:
                    # The one that failed recorded its own error; the others were not tried.
                    on_failed(exc.remaining[1:], exc)
                raise
            results[outcome] = results.get(outcome, 0) + 1
    finally:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a dead connection cannot be closed politely
                pass
    return BatchOutcome(results=results, deferred=[])


def _send_over(message, connection) -> None:
    """Send `message` over the batch's SMTP connection (or a connection of its own without one)."""
    if connection is not None:
        message.connection = connection
        connection.open()  # a no-op once open: the batch keeps one connection
    message.send()


def _invitation_cancel_reason(invitation: Invitation, now, suppressed: set[str]) -> str | None:
    customer = invitation.customer
    if customer.erased_at is not None:
        return "Person erased."
    if customer.email in suppressed:
        return SUPPRESSED
    if customer.unsubscribed_at is not None:
        return "Customer unsubscribed before sending."
    if invitation.is_expired(now):
        return "Expired before it could be sent."
    return None


def _invitation_deliver(
    invitation: Invitation, *, now, connection=None, message=None, suppressed: set[str] | None = None
) -> str:
    """Email an invitation this worker has claimed (status "sending") and record the outcome.

    `message` is its email when the caller rendered it already (a batch renders all of its emails at
    once); `suppressed`, the addresses of the batch on the suppression list, when it asked already.
    """
    invitation_id = invitation.pk
    if suppressed is None:
        suppressed = addresses_suppressed([invitation.customer.email])
    cancel_reason = _invitation_cancel_reason(invitation, now, suppressed)
    if cancel_reason is not None:
        _invitation_finish(invitation_id, Invitation.Status.CANCELLED, cancel_reason)
        if cancel_reason == SUPPRESSED:
            customer_suppress(customer_id=invitation.customer_id)
        return "cancelled"
    if message is None:
        message = emails.invitation_message(invitation)
    try:
        _send_over(message, connection)
    except smtplib.SMTPRecipientsRefused as exc:
        _invitation_finish(invitation_id, Invitation.Status.FAILED, f"Recipient refused: {exc.recipients}")
        Customer.objects.filter(pk=invitation.customer_id, bounced_at__isnull=True).update(bounced_at=timezone.now())
        return "failed"
    except (smtplib.SMTPException, OSError) as exc:
        Invitation.objects.filter(pk=invitation_id, status=Invitation.Status.SENDING).update(
            status=Invitation.Status.PENDING, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise SendFailed(str(exc)) from exc
    sent_at = timezone.now()
    delay = invitation.touchpoint.reminder_delay_days
    # Recorded message by message, so a worker killed mid-batch resends at most the one in flight.
    _invitation_mark_sent(invitation_id, sent_at=sent_at, remind_after=sent_at + timedelta(days=delay) if delay else None)
    return "sent"


def _invitation_mark_sent(invitation_id: int, *, sent_at, remind_after) -> None:
    if db.connection_for(Invitation).vendor != "postgresql":
        # The spec of the statement below, and what SQLite runs.
        Invitation.objects.filter(pk=invitation_id, status=Invitation.Status.SENDING).update(
            status=Invitation.Status.SENT, sent_at=sent_at, last_error="", remind_after=remind_after
        )
        return
    # One statement per email sent, written in SQL (prepared once per connection): the ORM's update()
    # cost several times the CPU of the statement itself, as much as building the email.
    update = (
        f"UPDATE {Invitation._meta.db_table} SET status = %s, sent_at = %s, last_error = '', remind_after = %s"
        " WHERE id = %s AND status = %s"
    )
    params = [Invitation.Status.SENT, sent_at, remind_after, invitation_id, Invitation.Status.SENDING]
    # Without waiting for the disk: waiting for each mark's commit was most of a sending worker's time
    # (bench/send_invitations.py). A worker killed after sending still finds its mark (PostgreSQL has
    # it), so a kill still costs at most one duplicate; only a crash of PostgreSQL itself can lose the
    # marks of its last fraction of a second (wal_writer_delay), whose emails are then sent once more.
    with transaction.atomic():
        with db.connection_for(Invitation).cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
        db.run(Invitation, update, params)


def _invitation_finish(invitation_id: int, status: str, error: str) -> None:
    Invitation.objects.filter(pk=invitation_id, status=Invitation.Status.SENDING).update(
        status=status, last_error=error
    )


def invitation_postpone(*, invitation_id: int, delay: timedelta) -> None:
    """Keep the beat sweep away from an invitation while a retry waits out its backoff."""
    Invitation.objects.filter(pk=invitation_id, status=Invitation.Status.PENDING).update(
        send_after=timezone.now() + delay
    )


def invitation_mark_failed(*, invitation_id: int) -> None:
    Invitation.objects.filter(
        pk=invitation_id, status__in=[Invitation.Status.PENDING, Invitation.Status.SENDING]
    ).update(status=Invitation.Status.FAILED)


def invitation_retry(*, invitation: Invitation) -> bool:
    """Put a failed invitation back in the queue (admin action)."""
    now = timezone.now()
    updated = Invitation.objects.filter(pk=invitation.pk, status=Invitation.Status.FAILED).update(
        status=Invitation.Status.PENDING, send_after=now, send_attempts=0
    )
    if updated:
        transaction.on_commit(lambda: invitations_enqueue([invitation.pk]), robust=True)
    return bool(updated)


def invitations_sweep() -> dict[str, int]:
    """Recover sending work a lost message, a dead worker or a down broker left behind."""
    now = timezone.now()
    # A worker killed mid-send leaves its claim behind; it may or may not have
    # sent, so at most one duplicate email per kill is the price of not losing it.
    reclaimed = Invitation.objects.filter(
        status=Invitation.Status.SENDING, claimed_at__lt=now - STUCK_SENDING_AFTER
    ).update(status=Invitation.Status.PENDING)
    due_ids = list(
        Invitation.objects.filter(status=Invitation.Status.PENDING, send_after__lte=now - SWEEP_GRACE)
        .order_by("send_after")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    invitations_enqueue(due_ids)
    return {"reclaimed": reclaimed, "enqueued": len(due_ids)}


def reminders_sweep() -> dict[str, int]:
    """Enqueue the one reminder of every invitation whose reminder is due (a due-time row, never a countdown)."""
    now = timezone.now()
    due_ids = list(
        Invitation.objects.filter(
            status=Invitation.Status.SENT,
            reminded_at__isnull=True,
            answered_at__isnull=True,
            remind_after__lte=now,
            expires_at__gt=now,
        )
        .order_by("remind_after")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    _enqueue_in_batches("reminders_send_batch_task", due_ids)
    return {"enqueued": len(due_ids)}


def reminder_send(*, invitation_id: int, connection=None) -> str:
    """Send the invitation's one reminder if it is still unanswered, open and wanted."""
    now = timezone.now()
    claimed = Invitation.objects.filter(
        pk=invitation_id,
        status=Invitation.Status.SENT,
        reminded_at__isnull=True,
        answered_at__isnull=True,
        expires_at__gt=now,
    ).update(reminded_at=now)
    if not claimed:
        return "not-claimed"
    invitation = Invitation.objects.select_related("customer", "touchpoint").get(pk=invitation_id)
    if invitation.customer.erased_at is not None or invitation.customer.unsubscribed_at is not None:
        return "unsubscribed"  # stays claimed: no reminder will ever go
    if address_is_suppressed(invitation.customer.email):
        customer_suppress(customer_id=invitation.customer_id)
        return "suppressed"
    message = emails.invitation_message(invitation, reminder=True)
    try:
        _send_over(message, connection)
    except smtplib.SMTPRecipientsRefused:
        return "refused"
    except (smtplib.SMTPException, OSError) as exc:
        # Release the claim: the next sweep tries again while the survey is open.
        Invitation.objects.filter(pk=invitation_id).update(reminded_at=None)
        raise SendFailed(str(exc)) from exc
    return "sent"


def reminders_send_batch(*, invitation_ids: list[int]) -> BatchOutcome:
    return _send_batch(invitation_ids, reminder_send)


def invitations_expire() -> dict[str, int]:
    """Close invitations past their expiry: sent ones become expired, unsent ones cancelled."""
    now = timezone.now()
    waiting = Invitation.objects.filter(answered_at__isnull=True, expires_at__lte=now)
    expired = waiting.filter(status=Invitation.Status.SENT).update(status=Invitation.Status.EXPIRED)
    cancelled = waiting.filter(status=Invitation.Status.PENDING).update(
        status=Invitation.Status.CANCELLED, last_error="Expired before it could be sent."
    )
    return {"expired": expired, "cancelled": cancelled}



def invitations_cancel_pending(*, customer: Customer) -> int:
    """Cancel the invitations not yet sent (Delighted's "delete pending survey requests")."""
    return invitations_cancel_unsent(
        customer_id=customer.pk, why="Pending survey requests deleted through the API."
    )
