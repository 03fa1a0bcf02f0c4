"""Every write and side effect of the survey loop, one function each.

Views, API views, admin actions, commands and tasks stay thin and call these.
The database decides what is true: unique tokens, one response per invitation
and the score range are constraints, and an `IntegrityError` from a race is
turned into a domain answer here.
"""

import hashlib
import hmac
import logging
import re
import secrets
import smtplib
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Lower
from django.utils import timezone

from . import emails, mail_backends, selectors, webhooks
from .core import db, dispatch, validation
from .core.hashing import keyed_hash, keyed_hashes
from .models import (
    REASON_MAX_LENGTH,
    ApiKey,
    CaseNote,
    Category,
    Coupon,
    Customer,
    DailyStat,
    FollowUpCase,
    FormerAddress,
    IdempotencyRecord,
    Invitation,
    ReferralConversion,
    ReferralLink,
    ReferralVisit,
    Response,
    SendWindow,
    StatsDirtyDay,
    StatsWatermark,
    SuppressedAddress,
    SurveySkip,
    Touchpoint,
    WebhookDelivery,
    all_api_scopes,
    new_coupon_code,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
STUCK_SENDING_AFTER = timedelta(minutes=10)
SWEEP_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 1000


class CustomerConflict(Exception):
    """The email and the external id given belong to two different customers."""


class CustomerErased(CustomerConflict):
    """The record is an erased person's: it is never filled with data again."""

    def __init__(self, message: str = "This person's data was erased on request; the record cannot be filled again."):
        super().__init__(message)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request."""


class InvitationClosed(Exception):
    """The invitation was cancelled, never delivered, or its person erased: it takes no answer."""


class AlreadyAnswered(Exception):
    pass


class InvitationExpired(Exception):
    pass


class SendFailed(Exception):
    """Sending failed for a reason that may pass (SMTP or network trouble)."""

    remaining: list = []  # in a batch: the ids not done yet, to retry


# --- API keys ----------------------------------------------------------------


def _hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored. No scopes named: every scope."""
    scopes = all_api_scopes() if scopes is None else list(dict.fromkeys(scopes))
    unknown = [scope for scope in scopes if scope not in all_api_scopes()]
    if unknown or not scopes:
        raise ValidationError(f"Scopes are {', '.join(all_api_scopes())}; not {', '.join(unknown) or 'none'}.")
    secret = secrets.token_urlsafe(32)
    raw_key = f"lp_{secret}"
    api_key = ApiKey.objects.create(name=name, prefix=raw_key[:11], key_hash=_hash_key(raw_key), scopes=scopes)
    return api_key, raw_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    if not raw_key or len(raw_key) > 200 or "\x00" in raw_key:
        return None  # a NUL would make PostgreSQL refuse the query
    candidate = ApiKey.objects.filter(prefix=raw_key[:11], revoked_at__isnull=True).first()
    if candidate is None or not hmac.compare_digest(candidate.key_hash, _hash_key(raw_key)):
        return None
    now = timezone.now()
    if candidate.last_used_at is None or now - candidate.last_used_at > timedelta(minutes=1):
        ApiKey.objects.filter(pk=candidate.pk).update(last_used_at=now)
    return candidate


def api_key_revoke(*, api_key: ApiKey) -> None:
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- Idempotency -------------------------------------------------------------


def idempotency_request_hash(*, method: str, path: str, body: bytes) -> str:
    """What binds an Idempotency-Key to its request: the method, the path and the exact body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def idempotency_claim(*, api_key: ApiKey, key: str, request_hash: str) -> IdempotencyRecord | None:
    """Reserve `key` inside the caller's transaction.

    Returns the earlier record when the key was already used within 24 hours
    for the same request (the caller replays its answer), or None when the
    caller goes ahead and must finish with `idempotency_complete` in the same
    transaction. Raises `IdempotencyKeyReused` when the key came with another
    request: replaying its answer would hand out someone else's survey link. A
    concurrent request with the same key waits on the unique index until the
    first one commits, then replays it.
    """
    now = timezone.now()
    IdempotencyRecord.objects.filter(api_key=api_key, key=key, created_at__lt=now - IDEMPOTENCY_WINDOW).delete()
    existing = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
    if existing is None:
        try:
            with transaction.atomic():
                IdempotencyRecord.objects.create(api_key=api_key, key=key, request_hash=request_hash, created_at=now)
            return None
        except IntegrityError:
            existing = IdempotencyRecord.objects.get(api_key=api_key, key=key)
    # (A record from before keys were bound to their request has no hash: it replays as it did.)
    if existing.request_hash and not hmac.compare_digest(existing.request_hash, request_hash):
        raise IdempotencyKeyReused(key)
    return existing


def idempotency_complete(
    *, api_key: ApiKey, key: str, status_code: int, body: dict, customer: Customer | None = None
) -> None:
    IdempotencyRecord.objects.filter(api_key=api_key, key=key).update(
        status_code=status_code, body=body, customer=customer
    )


def idempotency_purge() -> int:
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).delete()
    return deleted


# --- Customers -----------------------------------------------------------------


def customer_upsert(
    *,
    email: str,
    name: str = "",
    external_id: str | None = None,
    phone: str = "",
    locale: str = "",
) -> Customer:
    """Find the customer by email (case-insensitive), else by external id; create or update it.

    Empty values never overwrite what is stored.
    """
    customer, _ = customer_import_row(email=email, name=name, external_id=external_id, phone=phone, locale=locale)
    return customer


def customers_with_email(email: str):
    """The customer with this address in any case. Compared as LOWER(email), the expression of the
    unique index, so PostgreSQL uses it (`email__iexact` compares UPPER() and scans the whole table)."""
    return Customer.objects.alias(email_lower=Lower("email")).filter(email_lower=Lower(Value(email)))


def customer_import_row(
    *,
    email: str,
    name: str = "",
    external_id: str | None = None,
    phone: str = "",
    locale: str = "",
) -> tuple[Customer, str]:
    """`customer_upsert`, also saying what happened: "created", "updated" or "unchanged".

    The address is compared canonically (`core.validation.canonical_email`); an
    erased person's record is never written to (`CustomerErased`).
    """
    email = validation.canonical_email(email)
    external_id = (external_id or "").strip() or None
    with transaction.atomic():
        customer = customers_with_email(email).select_for_update().first()
        if external_id:
            by_external = Customer.objects.select_for_update().filter(external_id=external_id).first()
            if customer is None:
                customer = by_external
            elif by_external is not None and by_external.pk != customer.pk:
                raise CustomerConflict(
                    f"The external id {external_id!r} belongs to another customer than {email}."
                )
        if customer is not None and customer.erased_at is not None:
            raise CustomerErased()
        old_email = customer.email if customer is not None else None
        if customer is None:
            customer = Customer(email=email)
        change = "created" if customer.pk is None else "unchanged"
        for field, value in (("email", email), ("name", name), ("external_id", external_id), ("phone", phone),
                             ("locale", locale)):
            if value and getattr(customer, field) != value:
                setattr(customer, field, value)
                if change == "unchanged":
                    change = "updated"
        if change != "unchanged":
            customer.updated_at = timezone.now()
            if old_email != customer.email and customer.unsubscribed_at is None and address_is_suppressed(email):
                # An erased person asked never to be emailed again, whatever record their address turns up on.
                customer.unsubscribed_at = customer.updated_at
            try:
                with transaction.atomic():
                    customer.save()
            except IntegrityError:
                # Another request created the same email or external id a moment ago.
                raise CustomerConflict(f"{email} was created by a concurrent request; retry.") from None
            if old_email is not None and old_email != customer.email:
                former_address_record(customer=customer, email=old_email)
    return customer, change


def customer_change_email(*, customer: Customer, email: str) -> Customer:
    """Give a customer a new address (Delighted's `email_update`, the admin).

    A suppressed address stays suppressed on whichever record it arrives: the
    customer is then unsubscribed. The address given up is remembered as a
    keyed hash, so that erasing the person later suppresses it too.
    """
    email = validation.canonical_email(email)
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if customer.erased_at is not None:
            raise CustomerErased()
        if customer.email == email:
            return customer
        if customers_with_email(email).exclude(pk=customer.pk).exists():
            raise CustomerConflict(f"{email} already belongs to another customer.")
        now = timezone.now()
        changes = {"email": email, "updated_at": now}
        if customer.unsubscribed_at is None and address_is_suppressed(email):
            changes["unsubscribed_at"] = now
        Customer.objects.filter(pk=customer.pk).update(**changes)
        former_address_record(customer=customer, email=customer.email)
        if "unsubscribed_at" in changes:
            _invitations_cancel_unsent(customer_id=customer.pk, why="The new address is on the suppression list.")
    customer.refresh_from_db()
    return customer


def customer_edit(*, customer: Customer, email: str, name: str, phone: str, external_id: str | None, locale: str) -> Customer:
    """An admin's edit of a customer's details: the same rules as every other way in (SPEC §8.7)."""
    with transaction.atomic():
        current = Customer.objects.select_for_update().get(pk=customer.pk)
        if current.erased_at is not None:
            raise CustomerErased()
        if validation.canonical_email(email) != current.email:
            customer_change_email(customer=current, email=email)
        external_id = (external_id or "").strip() or None
        if external_id and Customer.objects.filter(external_id=external_id).exclude(pk=current.pk).exists():
            raise CustomerConflict(f"The external id {external_id!r} belongs to another customer.")
        Customer.objects.filter(pk=current.pk).update(
            name=name, phone=phone, external_id=external_id, locale=locale or current.locale, updated_at=timezone.now()
        )
    customer.refresh_from_db()
    return customer


def former_address_record(*, customer: Customer, email: str) -> None:
    """Remember, as a keyed hash only, an address the customer gave up."""
    if email and not email.endswith("@" + validation.ERASED_DOMAIN):
        FormerAddress.objects.get_or_create(customer_id=customer.pk, address_hash=address_hash(email))


def _invitations_cancel_unsent(*, customer_id: int, why: str) -> int:
    return Invitation.objects.filter(customer_id=customer_id, status=Invitation.Status.PENDING).update(
        status=Invitation.Status.CANCELLED, last_error=why
    )


def customer_unsubscribe(*, customer: Customer) -> bool:
    """Unsubscribe the customer from every email. Returns False if they already were."""
    now = timezone.now()
    updated = Customer.objects.filter(pk=customer.pk, unsubscribed_at__isnull=True).update(
        unsubscribed_at=now, updated_at=now
    )
    if updated:
        _invitations_cancel_unsent(customer_id=customer.pk, why="Customer unsubscribed before sending.")
    return bool(updated)


# --- Invitations ---------------------------------------------------------------


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
    from django.core.mail import get_connection

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
    connection = None
    try:
        for index, invitation in enumerate(claimed):
            if not send_quota_take():
                deferred = [item.pk for item in claimed[index:]]
                Invitation.objects.filter(pk__in=deferred, status=Invitation.Status.SENDING).update(
                    status=Invitation.Status.PENDING
                )
                return BatchOutcome(results=results, deferred=deferred)
            if connection is None:
                connection = get_connection()
            try:
                outcome = _invitation_deliver(
                    invitation, now=now, connection=connection, message=messages.get(invitation.pk),
                    suppressed=suppressed,
                )
            except SendFailed as exc:
                exc.remaining = [item.pk for item in claimed[index:]]
                # The rest were not tried; they keep the reason, shown in admin if they finally fail.
                Invitation.objects.filter(pk__in=exc.remaining, status=Invitation.Status.SENDING).update(
                    status=Invitation.Status.PENDING,
                    last_error=f"The SMTP server failed before this one was tried: {exc}"[:2000],
                )
                raise
            results[outcome] = results.get(outcome, 0) + 1
    finally:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a dead connection cannot be closed politely
                pass
    return BatchOutcome(results=results, deferred=[])


def _send_batch(invitation_ids: list[int], send_one) -> BatchOutcome:
    """Run `send_one(invitation_id=…, connection=…)` for each id over one SMTP connection, within the rate cap."""
    from django.core.mail import get_connection

    results: dict[str, int] = {}
    connection = None
    try:
        for index, invitation_id in enumerate(invitation_ids):
            if not send_quota_take():
                return BatchOutcome(results=results, deferred=list(invitation_ids[index:]))
            if connection is None:
                # Opened by send_one, so a refused connection is recorded and retried like a failed send.
                connection = get_connection()
            try:
                outcome = send_one(invitation_id=invitation_id, connection=connection)
            except SendFailed as exc:
                exc.remaining = list(invitation_ids[index:])
                raise
            results[outcome] = results.get(outcome, 0) + 1
    finally:
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - a dead connection cannot be closed politely
                pass
    return BatchOutcome(results=results, deferred=[])


def invitation_send(*, invitation_id: int, connection=None) -> str:
    """Claim the invitation and email it. Returns what happened.

    The claim is a conditional update, so a redelivered or duplicated task
    finds nothing to do. SMTP trouble puts the invitation back to pending with
    the error recorded and raises `SendFailed` for the caller to retry.
    """
    now = timezone.now()
    claimed = Invitation.objects.filter(pk=invitation_id, status=Invitation.Status.PENDING).update(
        status=Invitation.Status.SENDING, claimed_at=now, send_attempts=F("send_attempts") + 1
    )
    if not claimed:
        return "not-claimed"
    invitation = Invitation.objects.select_related("customer", "touchpoint").get(pk=invitation_id)
    return _invitation_deliver(invitation, now=now, connection=connection)


SUPPRESSED = "The address is on the suppression list (its person was erased on request)."


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
    if connection is not None:
        message.connection = connection
    try:
        if connection is not None:
            connection.open()  # a no-op once open: the batch keeps one connection
        message.send()
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
    # One statement per email sent: written in SQL, as the ORM's update() costs several times the CPU
    # of the statement itself, as much as building the email. Same as
    # filter(pk=…, status=SENDING).update(status=SENT, sent_at=…, last_error="", remind_after=…).
    update = (
        f"UPDATE {Invitation._meta.db_table} SET status = %s, sent_at = %s, last_error = '', remind_after = %s"
        " WHERE id = %s AND status = %s"
    )
    params = [Invitation.Status.SENT, sent_at, remind_after, invitation_id, Invitation.Status.SENDING]
    if db.connection_for(Invitation).vendor != "postgresql":
        db.run(Invitation, update, params)
        return
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


def invitation_open(*, token: str) -> Invitation | None:
    """The survey page's invitation (as `selectors.invitation_for_token`), marked opened in the same statement."""
    return selectors.invitation_for_token(token=token, mark_opened_at=timezone.now())


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


# --- Reminders and expiry ----------------------------------------------------------


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
    if connection is not None:
        message.connection = connection
    try:
        if connection is not None:
            connection.open()  # a no-op once open: the batch keeps one connection
        message.send()
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


# --- Responses -------------------------------------------------------------------


def response_submit(*, invitation: Invitation, score: int, reason: str = "") -> Response:
    """Record the customer's answer and what it sets in motion. The first answer stands."""
    if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
        raise ValidationError("The score must be a whole number from 0 to 10.")
    reason = validation.clean_text(reason, label="The reason", max_length=REASON_MAX_LENGTH)
    if invitation.is_closed:
        raise InvitationClosed()
    now = timezone.now()
    # The unique constraint on the invitation refuses a second answer (below);
    # only an expired survey needs to ask first, so that its answer still shows.
    if invitation.is_expired(now):
        if Response.objects.filter(invitation=invitation).exists():
            raise AlreadyAnswered()
        raise InvitationExpired()
    touchpoint = invitation.touchpoint
    response = Response(
        invitation=invitation,
        # The objects, not their ids: the follow-up reads them, the invitation has them loaded.
        touchpoint=touchpoint,
        customer=invitation.customer,
        score=score,
        category=Category.for_score(score),
        reason=reason,
        created_at=now,
        updated_at=now,
    )
    answer = _Answer(response=response, now=now)
    if response.category == Category.PROMOTER:
        # The customer's share link, made by their first promoter answer; the thank-you page shows it.
        answer.link = ReferralLink(customer_id=response.customer_id, touchpoint=touchpoint, response=response)
    elif response.category == Category.DETRACTOR or touchpoint.open_cases_for_passives:
        answer.case = FollowUpCase(
            response=response,
            customer_id=response.customer_id,
            touchpoint=touchpoint,
            opened_at=now,
            due_at=now + timedelta(hours=touchpoint.case_due_hours),
        )
    # One query for both events an answer can raise, skipped when the survey's lookup found no endpoint at all.
    endpoints = webhooks.endpoints_by_event() if getattr(invitation, "webhooks_listening", True) else {}
    connection = db.connection_for(Response)
    in_one_statement = connection.vendor == "postgresql"
    try:
        # One statement is atomic by itself; several (or a savepoint in the caller's transaction) need atomic().
        with transaction.atomic() if endpoints or not in_one_statement or connection.in_atomic_block else nullcontext():
            if in_one_statement:
                answer.write_in_one_statement(connection)
            else:
                answer.write_statement_by_statement()
            _response_events(response=response, case=answer.case, endpoints=endpoints)
            if answer.link is not None:
                dispatch.follow_up_on_commit("promoter_reward_task", response.pk)
            if answer.case is not None:
                dispatch.follow_up_on_commit("case_alert_task", answer.case.pk)
    except IntegrityError:
        if Response.objects.filter(invitation=invitation).exists():
            raise AlreadyAnswered() from None
        raise
    return response


# A customer who had a follow-up case and now answers 7+ was won back. Params: now, customer id, now.
_WON_BACK = (
    f"UPDATE {FollowUpCase._meta.db_table} SET won_back_at = %s, won_back_response_id = {{response_id}}"
    " WHERE customer_id = %s AND won_back_at IS NULL AND opened_at < %s"
)
_ANSWERED = f"UPDATE {Invitation._meta.db_table} SET answered_at = %s WHERE id = %s"


@dataclass
class _Answer:
    """The rows one answer writes: the response, the invitation's answered mark, a won-back case,
    the promoter's share link or the detractor's follow-up case."""

    response: Response
    now: datetime
    link: ReferralLink | None = None
    case: FollowUpCase | None = None

    @property
    def wins_back(self) -> bool:
        return self.response.score >= 7

    def write_in_one_statement(self, connection) -> None:
        """All of it in one statement of data-modifying WITH clauses (PostgreSQL): one round trip,
        no BEGIN and COMMIT of its own, atomic as any statement (bench/http.py)."""
        response, now = self.response, self.now
        new_id = "(SELECT id FROM answer)"
        sql, params = db.insert_sql(response, connection)
        clauses = [f"answer AS ({sql} RETURNING id)", f"answered AS ({_ANSWERED})"]
        params += [now, response.invitation_id]
        if self.wins_back:
            clauses.append(f"won_back AS ({_WON_BACK.format(response_id=new_id)})")
            params += [now, response.customer_id, now]
        if self.link is not None:
            sql, link_params = db.insert_sql(self.link, connection, expressions={"response_id": new_id})
            clauses.append(f"link AS ({sql} ON CONFLICT DO NOTHING)")
            params += link_params
        if self.case is not None:
            sql, case_params = db.insert_sql(self.case, connection, expressions={"response_id": new_id})
            clauses.append(f"new_case AS ({sql} RETURNING id)")
            params += case_params
        case_id = "(SELECT id FROM new_case)" if self.case is not None else "NULL"
        with connection.cursor() as cursor:
            db.execute(cursor, connection, f"WITH {', '.join(clauses)} SELECT {new_id}, {case_id}", params)
            response.pk, case_id = cursor.fetchone()
        db.saved(response, connection)
        if self.case is not None:
            self.case.pk, self.case.response_id = case_id, response.pk
            db.saved(self.case, connection)

    def write_statement_by_statement(self) -> None:
        """The same, a statement at a time (SQLite), inside the caller's transaction."""
        response, now = self.response, self.now
        db.insert(response)
        db.run(Invitation, _ANSWERED, [now, response.invitation_id])
        if self.wins_back:
            db.run(FollowUpCase, _WON_BACK.format(response_id="%s"), [now, response.pk, response.customer_id, now])
        if self.link is not None:
            referral_link_add(customer_id=response.customer_id, touchpoint=self.link.touchpoint, response=response)
        if self.case is not None:
            self.case.response = response
            db.insert(self.case)


def _response_events(*, response: Response, case: FollowUpCase | None, endpoints: dict[str, list[int]]) -> None:
    """The webhook deliveries an answer queues, in the answer's own transaction."""
    if not endpoints:
        return
    event_data = webhooks.response_event_data(response)
    if endpoints.get("response.created"):
        webhooks.webhook_event_emit(
            event="response.created", data=event_data, endpoint_ids=endpoints["response.created"],
            customer_id=response.customer_id,
        )
    if case is not None and endpoints.get("case.opened"):
        webhooks.webhook_event_emit(
            event="case.opened",
            data={**event_data, "id": case.pk, "response_id": response.pk, "status": case.status,
                  "due_at": case.due_at.isoformat()},
            endpoint_ids=endpoints["case.opened"],
            customer_id=response.customer_id,
        )


# --- Promoters: coupons within the 30-day window --------------------------------

PROMOTER_WINDOW = timedelta(days=30)
COUPON_PER_CUSTOMER_WINDOW = timedelta(days=30)
EMAIL_CLAIM_TIMEOUT = timedelta(minutes=10)


class CouponNotFound(Exception):
    pass


class CouponAlreadyRedeemed(Exception):
    def __init__(self, coupon: Coupon):
        super().__init__(coupon.code)
        self.coupon = coupon


class CouponExpired(Exception):
    def __init__(self, coupon: Coupon):
        super().__init__(coupon.code)
        self.coupon = coupon


def _response_settle(response_id: int) -> None:
    Response.objects.filter(pk=response_id, coupon_settled_at__isnull=True).update(coupon_settled_at=timezone.now())


def promoter_reward(*, response_id: int) -> str:
    """Issue the fresh promoter's coupon (once) and email it (once). Returns what happened.

    Safe to run any number of times, from the task and the sweep at once.
    Raises `SendFailed` when the email could not go out; the coupon stays
    issued and unsent, and the next attempt or sweep sends it.
    """
    now = timezone.now()
    response = Response.objects.select_related("customer", "touchpoint").filter(pk=response_id).first()
    if response is None or response.category != Category.PROMOTER or response.coupon_settled_at is not None:
        return "nothing-to-do"
    if response.created_at <= now - PROMOTER_WINDOW:
        _response_settle(response_id)
        return "window-closed"
    if response.customer.unsubscribed_at is not None:
        _response_settle(response_id)
        return "unsubscribed"
    coupon = coupon_issue(response=response, now=now)
    if coupon is None:
        _response_settle(response_id)
        return "already-rewarded"
    outcome = coupon_email_send(coupon_id=coupon.pk)
    if outcome in ("sent", "already-emailed", "unsubscribed"):
        _response_settle(response_id)
    return outcome


def coupon_issue(*, response: Response, now=None) -> Coupon | None:
    """The response's coupon, issued now if needed; None if the customer had one in the last 30 days."""
    now = now or timezone.now()
    with transaction.atomic():
        # One coupon per customer per 30 days: the customer row lock makes the
        # check and the insert one step, whatever runs concurrently.
        Customer.objects.select_for_update().filter(pk=response.customer_id).first()
        existing = Coupon.objects.filter(response=response).first()
        if existing is not None:
            return existing
        if Coupon.objects.filter(
            customer_id=response.customer_id, issued_at__gt=now - COUPON_PER_CUSTOMER_WINDOW
        ).exists():
            return None
        touchpoint = response.touchpoint
        for _ in range(5):
            try:
                with transaction.atomic():
                    return Coupon.objects.create(
                        response=response,
                        customer_id=response.customer_id,
                        code=new_coupon_code(),
                        offer=touchpoint.promoter_offer,
                        issued_at=now,
                        expires_at=now + timedelta(days=max(touchpoint.coupon_validity_days, 1)),
                    )
            except IntegrityError:
                existing = Coupon.objects.filter(response=response).first()
                if existing is not None:
                    return existing
                # Otherwise two codes collided: draw another.
        raise RuntimeError("Could not draw a unique coupon code.")


def coupon_email_send(*, coupon_id: int) -> str:
    now = timezone.now()
    claimed = (
        Coupon.objects.filter(pk=coupon_id, emailed_at__isnull=True)
        .filter(Q(email_claimed_at__isnull=True) | Q(email_claimed_at__lt=now - EMAIL_CLAIM_TIMEOUT))
        .update(email_claimed_at=now, email_attempts=F("email_attempts") + 1)
    )
    if not claimed:
        emailed = Coupon.objects.filter(pk=coupon_id, emailed_at__isnull=False).exists()
        return "already-emailed" if emailed else "claimed-elsewhere"
    coupon = Coupon.objects.select_related("customer", "response__touchpoint").get(pk=coupon_id)
    if coupon.customer.unsubscribed_at is None and address_is_suppressed(coupon.customer.email):
        customer_suppress(customer_id=coupon.customer_id)
        coupon.customer.unsubscribed_at = timezone.now()
    if coupon.customer.unsubscribed_at is not None:
        Coupon.objects.filter(pk=coupon_id).update(email_claimed_at=None, last_error="Customer unsubscribed.")
        return "unsubscribed"
    link = ReferralLink.objects.filter(customer_id=coupon.customer_id).first()
    try:
        emails.coupon_message(coupon, link).send()
    except (smtplib.SMTPException, OSError) as exc:
        Coupon.objects.filter(pk=coupon_id).update(
            email_claimed_at=None, last_error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise SendFailed(str(exc)) from exc
    Coupon.objects.filter(pk=coupon_id).update(emailed_at=timezone.now(), last_error="")
    _stats_mark_dirty(coupon.issued_at)
    return "sent"


def promoters_sweep() -> dict[str, int]:
    """Find every fresh promoter whose coupon was not emailed and enqueue them.

    Reads only unsettled promoter responses (a partial index), so its cost
    does not grow with the total number of responses.
    """
    now = timezone.now()
    closed = Response.objects.filter(
        category=Category.PROMOTER, coupon_settled_at__isnull=True, created_at__lte=now - PROMOTER_WINDOW
    ).update(coupon_settled_at=now)
    due_ids = list(
        Response.objects.filter(
            category=Category.PROMOTER,
            coupon_settled_at__isnull=True,
            created_at__gt=now - PROMOTER_WINDOW,
            created_at__lte=now - SWEEP_GRACE,
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for response_id in due_ids:
        dispatch.enqueue("promoter_reward_task", response_id)
    return {"window_closed": closed, "enqueued": len(due_ids)}


_CODE = re.compile(r"[A-Z0-9-]{1,20}")


@transaction.atomic
def coupon_redeem(*, code: str) -> Coupon:
    """Mark the coupon redeemed now. Codes are case-insensitive."""
    code = (code or "").strip().upper()
    if not _CODE.fullmatch(code):
        # Not a code we could have issued; a NUL would make PostgreSQL refuse the query.
        raise CouponNotFound(code)
    now = timezone.now()
    redeemed = Coupon.objects.filter(code=code, redeemed_at__isnull=True, expires_at__gt=now).update(
        redeemed_at=now
    )
    coupon = Coupon.objects.filter(code=code).first()
    if coupon is None:
        raise CouponNotFound(code)
    if not redeemed:
        if coupon.redeemed_at is not None:
            raise CouponAlreadyRedeemed(coupon)
        raise CouponExpired(coupon)
    _stats_mark_dirty(coupon.issued_at)
    customer = coupon.customer
    webhooks.webhook_event_emit(
        event="coupon.redeemed",
        data={
            "code": coupon.code,
            "redeemed_at": coupon.redeemed_at.isoformat(),
            "issued_at": coupon.issued_at.isoformat(),
            "offer": coupon.offer,
            "customer": {"email": customer.email, "name": customer.name, "external_id": customer.external_id},
        },
        customer_id=customer.pk,
    )
    return coupon


# --- Referrals -------------------------------------------------------------------


def referral_link_add(*, customer_id: int, touchpoint: Touchpoint, response: Response | None = None) -> None:
    """Give the customer a share link unless they have one: one statement, no savepoint."""
    connection = db.connection_for(ReferralLink)
    sql, params = db.insert_sql(
        ReferralLink(customer_id=customer_id, touchpoint=touchpoint, response=response), connection
    )
    db.run(ReferralLink, f"{sql} ON CONFLICT DO NOTHING", params)


def referral_link_ensure(*, customer_id: int, touchpoint: Touchpoint, response: Response | None = None) -> ReferralLink:
    link = ReferralLink.objects.filter(customer_id=customer_id).first()
    if link is None:
        referral_link_add(customer_id=customer_id, touchpoint=touchpoint, response=response)
        link = ReferralLink.objects.get(customer_id=customer_id)
    return link


def referral_visit_record(*, link: ReferralLink, visitor: str) -> bool:
    """Count a visit once per visitor per day. `visitor` (the client's address) is only hashed."""
    today = timezone.localdate()
    visitor_hash = keyed_hash(f"visit|{today.isoformat()}|{visitor}")
    try:
        with transaction.atomic():
            ReferralVisit.objects.create(link=link, visitor_hash=visitor_hash, day=today)
    except IntegrityError:
        return False
    return True


def referral_convert(*, link: ReferralLink, email: str = "", order_id: str = "") -> tuple[ReferralConversion, bool]:
    """Record a referred sign-up or purchase, once per referred email or order id."""
    email = (email or "").strip().lower()
    order_id = (order_id or "").strip()
    if not email and not order_id:
        raise ValidationError("Give the referred customer's email or the order id.")
    reference = f"order:{order_id}" if order_id else f"email:{keyed_hash('referred|' + email)}"
    try:
        with transaction.atomic():
            return ReferralConversion.objects.create(link=link, reference=reference, order_id=order_id), True
    except IntegrityError:
        return ReferralConversion.objects.get(link=link, reference=reference), False


# --- Detractors: follow-up cases ----------------------------------------------------


def case_alert_send(*, case_id: int) -> str:
    """Email the touchpoint's alert recipients about a new case, once."""
    now = timezone.now()
    claimed = (
        FollowUpCase.objects.filter(pk=case_id, alert_sent_at__isnull=True)
        .filter(Q(alert_claimed_at__isnull=True) | Q(alert_claimed_at__lt=now - EMAIL_CLAIM_TIMEOUT))
        .update(alert_claimed_at=now)
    )
    if not claimed:
        return "not-claimed"
    case = FollowUpCase.objects.select_related("customer", "touchpoint", "response").get(pk=case_id)
    recipients = [address.strip() for address in case.touchpoint.alert_recipients.split(",") if address.strip()]
    if recipients:
        try:
            emails.case_alert_message(case, recipients).send()
        except (smtplib.SMTPException, OSError) as exc:
            FollowUpCase.objects.filter(pk=case_id).update(alert_claimed_at=None)
            raise SendFailed(str(exc)) from exc
    FollowUpCase.objects.filter(pk=case_id).update(alert_sent_at=timezone.now())
    return "sent" if recipients else "no-recipients"


def case_alerts_sweep() -> int:
    since = timezone.now() - timedelta(days=7)
    due_ids = list(
        FollowUpCase.objects.filter(alert_sent_at__isnull=True, opened_at__gte=since, opened_at__lte=timezone.now() - SWEEP_GRACE)
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for case_id in due_ids:
        dispatch.enqueue("case_alert_task", case_id)
    return len(due_ids)


@transaction.atomic
def case_assign(*, case: FollowUpCase, assignee, by) -> None:
    FollowUpCase.objects.filter(pk=case.pk).update(assignee=assignee)
    who = assignee.get_username() if assignee else "nobody"
    CaseNote.objects.create(case=case, author=by, text=f"Assigned to {who}.")


@transaction.atomic
def case_note_add(*, case: FollowUpCase, author, text: str) -> CaseNote:
    text = validation.clean_text(text, label="The note", max_length=5000)
    if not text:
        raise ValidationError("A note needs some text.")
    return CaseNote.objects.create(case=case, author=author, text=text)


@transaction.atomic
def case_status_set(*, case: FollowUpCase, status: str, by) -> None:
    if status not in FollowUpCase.Status.values:
        raise ValidationError(f"Unknown status {status!r}.")
    now = timezone.now()
    changes = {"status": status}
    if status == FollowUpCase.Status.CONTACTED and case.contacted_at is None:
        changes["contacted_at"] = now
    if status == FollowUpCase.Status.RESOLVED:
        changes["resolved_at"] = now
        if case.contacted_at is None:
            changes["contacted_at"] = now
    else:
        changes["resolved_at"] = None
    FollowUpCase.objects.filter(pk=case.pk).update(**changes)
    _stats_mark_dirty(case.opened_at)
    _stats_mark_dirty(case.resolved_at)  # a case reopened leaves its old resolved day's histogram
    CaseNote.objects.create(case=case, author=by, text=f"Status set to {FollowUpCase.Status(status).label.lower()}.")


# --- Dashboard rollup ------------------------------------------------------------


def daily_stats_rebuild(*, start: date, end: date) -> int:
    """Recount the per-day, per-touchpoint figures for days start…end (inclusive)."""
    from .selectors_dashboard import daily_counts

    if end < start:
        return 0
    rows = [
        DailyStat(
            day=day,
            touchpoint_id=touchpoint_id,
            invitations_sent=counts.invitations_sent,
            **{f"score_{score}": count for score, count in enumerate(counts.scores)},
            **counts.extra,
            close_histogram=counts.close_histogram,
        )
        for (day, touchpoint_id), counts in daily_counts(start=start, end=end, with_close_histogram=True).items()
    ]
    with transaction.atomic():
        DailyStat.objects.filter(day__gte=start, day__lte=end).delete()
        DailyStat.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def _stats_mark_dirty(moment) -> None:
    """A figure of a closed day changed (a late redemption, a case resolved): recount that day."""
    if moment is None:
        return
    day = timezone.localdate(moment)
    if day < timezone.localdate():
        StatsDirtyDay.objects.get_or_create(day=day)


def daily_stats_rollup(*, full: bool = False) -> dict:
    """Bring the rollup up to yesterday; recount the last two rolled days in case of late writes.

    `full=True` recounts everything (after a history import or demo seeding).
    """
    today = timezone.localdate()
    with transaction.atomic():
        watermark, _ = StatsWatermark.objects.select_for_update().get_or_create(pk=1)
        if watermark.rolled_until and not full:
            start = watermark.rolled_until - timedelta(days=2)
        else:
            first = Response.objects.order_by("created_at").values_list("created_at", flat=True).first()
            first_sent = Invitation.objects.filter(sent_at__isnull=False).order_by("sent_at").values_list(
                "sent_at", flat=True
            ).first()
            candidates = [timezone.localdate(moment) for moment in (first, first_sent) if moment]
            start = min(candidates) if candidates else today
        rows = daily_stats_rebuild(start=start, end=today - timedelta(days=1))
        dirty = sorted(set(StatsDirtyDay.objects.filter(day__lt=start).values_list("day", flat=True)))
        for day in dirty:
            rows += daily_stats_rebuild(start=day, end=day)
        StatsDirtyDay.objects.filter(day__lt=today).delete()
        StatsWatermark.objects.filter(pk=1).update(rolled_until=today, updated_at=timezone.now())
    return {"from": start.isoformat(), "rows": rows, "recounted_days": len(dirty)}



# --- Privacy: erasure and suppression -------------------------------------------------


def _address_forms(email: str) -> list[str]:
    """The canonical address, and the plain lower-case form hashes were made of before addresses were canonical."""
    legacy = email.strip().lower()
    try:
        canonical = validation.canonical_email(email)
    except ValidationError:
        return [legacy]
    return list(dict.fromkeys([canonical, legacy]))


def address_hash(email: str) -> str:
    """A keyed hash of an address (canonical form, current key): lets us refuse it later without keeping it."""
    return keyed_hash("suppress|" + _address_forms(email)[0])


def addresses_suppressed(emails: list[str]) -> set[str]:
    """Those of `emails` on the suppression list, in any spelling and under any key still honoured."""
    candidates: dict[str, str] = {}
    for email in set(emails):
        for form in _address_forms(email):
            for digest in keyed_hashes("suppress|" + form):
                candidates[digest] = email
    if not candidates:
        return set()
    found = SuppressedAddress.objects.filter(address_hash__in=list(candidates)).values_list("address_hash", flat=True)
    return {candidates[digest] for digest in found}


def address_is_suppressed(email: str) -> bool:
    return bool(addresses_suppressed([email]))


def customer_suppress(*, customer_id: int) -> None:
    """The customer's address turned out to be suppressed: unsubscribe them and cancel what waits to be sent."""
    now = timezone.now()
    Customer.objects.filter(pk=customer_id, unsubscribed_at__isnull=True).update(unsubscribed_at=now, updated_at=now)
    _invitations_cancel_unsent(customer_id=customer_id, why=SUPPRESSED)


# Every model whose rows belong to one customer: erasure renames their entries in the admin's history.
def _customer_owned_objects(customer: Customer) -> list[tuple[type, list]]:
    return [
        (Customer, [customer.pk]),
        (Invitation, list(Invitation.objects.filter(customer=customer).values_list("pk", flat=True))),
        (Response, list(Response.objects.filter(customer=customer).values_list("pk", flat=True))),
        (Coupon, list(Coupon.objects.filter(customer=customer).values_list("pk", flat=True))),
        (FollowUpCase, list(FollowUpCase.objects.filter(customer=customer).values_list("pk", flat=True))),
        (CaseNote, list(CaseNote.objects.filter(case__customer=customer).values_list("pk", flat=True))),
        (ReferralLink, list(ReferralLink.objects.filter(customer=customer).values_list("pk", flat=True))),
        (SurveySkip, list(SurveySkip.objects.filter(customer=customer).values_list("pk", flat=True))),
        (WebhookDelivery, list(WebhookDelivery.objects.filter(customer=customer).values_list("pk", flat=True))),
    ]


def _admin_history_erase(customer: Customer) -> int:
    """The admin's history names the rows it changed ("Jane Roe <jane@…>"): rename this person's, by object."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    changed = 0
    for model, pks in _customer_owned_objects(customer):
        content_type = ContentType.objects.get_for_model(model)
        for first in range(0, len(pks), 1000):
            object_ids = [str(pk) for pk in pks[first : first + 1000]]
            changed += LogEntry.objects.filter(content_type=content_type, object_id__in=object_ids).update(
                object_repr="(erased)", change_message=""
            )
    return changed


@transaction.atomic
def customer_erase(*, customer: Customer) -> None:
    """Erase a person (SPEC §6, §8.1): personal data and reason texts go, anonymised scores stay.

    Everything is found by identity (the customer's id, and the content type and
    object id of what belongs to them), never by matching text, so nothing of
    another person is touched and an address they used before is no escape.
    Their every address survives only as a keyed hash on the suppression list,
    so no email of any kind reaches it again. Running it again is harmless and
    scrubs whatever arrived since.
    """
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    now = timezone.now()
    hashes = {former.address_hash for former in customer.former_addresses.all()}
    if not customer.email.endswith("@" + validation.ERASED_DOMAIN):
        hashes.add(address_hash(customer.email))
    for digest in hashes:
        SuppressedAddress.objects.get_or_create(address_hash=digest)
    customer.former_addresses.all().delete()
    Customer.objects.filter(pk=customer.pk).update(
        email=f"erased-{customer.pk}@{validation.ERASED_DOMAIN}",
        name="",
        phone="",
        external_id=None,
        unsubscribed_at=customer.unsubscribed_at or now,
        erased_at=customer.erased_at or now,
        updated_at=now,
    )
    Response.objects.filter(customer=customer).exclude(reason="").update(reason="", updated_at=now)
    # Their links close (SPEC §8.3): whatever was not answered takes no answer any more.
    Invitation.objects.filter(
        customer=customer, answered_at__isnull=True,
        status__in=[Invitation.Status.PENDING, Invitation.Status.SENDING, Invitation.Status.SENT],
    ).update(status=Invitation.Status.CANCELLED)
    # A refused send's recorded error quotes the address; properties come from the integrator.
    Invitation.objects.filter(customer=customer).exclude(properties={}, last_error="").update(
        properties={}, last_error=""
    )
    Coupon.objects.filter(customer=customer).exclude(last_error="").update(last_error="")
    CaseNote.objects.filter(case__customer=customer).exclude(text="(erased)").update(text="(erased)")
    ReferralConversion.objects.filter(link__customer=customer).delete()
    # Undelivered webhook payloads carry the person's data: they are not sent. The log of those
    # already sent keeps its status and times, not the person.
    deliveries = WebhookDelivery.objects.filter(customer=customer)
    deliveries.filter(status=WebhookDelivery.Status.PENDING).delete()
    deliveries.exclude(payload={"erased": True}).update(payload={"erased": True}, last_error="")
    IdempotencyRecord.objects.filter(customer=customer).delete()
    _admin_history_erase(customer)
    # Development mail files (var/mail/*.eml) written to or about them. At once rather than on commit:
    # should the erasure roll back, the cost is a developer's copies of some emails.
    mail_backends.eml_files_erase(customer_id=customer.pk)


def invitations_cancel_pending(*, customer: Customer) -> int:
    """Cancel the invitations not yet sent (Delighted's "delete pending survey requests")."""
    return _invitations_cancel_unsent(
        customer_id=customer.pk, why="Pending survey requests deleted through the API."
    )


# --- Responses created or changed through the API ------------------------------------


@transaction.atomic
def response_record(
    *, customer: Customer, touchpoint: Touchpoint, score: int, reason: str = "", properties: dict | None = None
) -> Response:
    """Record an answer collected elsewhere (POST /v1/survey_responses): it follows the same flows as a survey."""
    now = timezone.now()
    invitation = Invitation.objects.create(
        customer=customer,
        touchpoint=touchpoint,
        status=Invitation.Status.SENT,
        source=Invitation.Source.API,
        created_at=now,
        send_after=now,
        sent_at=now,
        expires_at=now + timedelta(days=touchpoint.expiry_days),
        properties=properties or {},
    )
    return response_submit(invitation=invitation, score=score, reason=reason)


@transaction.atomic
def response_update(
    *, response: Response, score: int | None = None, reason: str | None = None, properties: dict | None = None
) -> Response:
    """Change an answer (PUT /v1/survey_responses/<id>) under the rules of a new one.

    The category follows the score, and a new category sets in motion what an
    answer in it would have: a detractor's follow-up case, a promoter's share
    link and coupon (inside the 30-day window), a customer won back.
    """
    now = timezone.now()
    changes = {"updated_at": now}
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= 10:
            raise ValidationError("The score must be a whole number from 0 to 10.")
        changes.update(score=score, category=Category.for_score(score))
    if reason is not None:
        changes["reason"] = validation.clean_text(reason, label="The comment", max_length=REASON_MAX_LENGTH)
    response = Response.objects.select_for_update().select_related("touchpoint", "customer").get(pk=response.pk)
    before = response.category
    Response.objects.filter(pk=response.pk).update(**changes)
    if properties is not None:
        Invitation.objects.filter(pk=response.invitation_id).update(properties=properties)
    _stats_mark_dirty(response.created_at)
    response.refresh_from_db()
    if response.category != before:
        _response_recategorised(response=response, now=now)
    return response


def _response_recategorised(*, response: Response, now) -> None:
    touchpoint = response.touchpoint
    if response.score >= 7:
        # As for a new answer: the cases opened before this answer was given (not later ones, nor its own).
        FollowUpCase.objects.filter(
            customer_id=response.customer_id, won_back_at__isnull=True, opened_at__lt=response.created_at
        ).update(won_back_at=now, won_back_response=response)
    if response.category == Category.PROMOTER:
        referral_link_ensure(customer_id=response.customer_id, touchpoint=touchpoint, response=response)
        if response.coupon_settled_at is None:
            dispatch.follow_up_on_commit("promoter_reward_task", response.pk)
    elif (response.category == Category.DETRACTOR or touchpoint.open_cases_for_passives) and not (
        FollowUpCase.objects.filter(response=response).exists()
    ):
        case = FollowUpCase.objects.create(
            response=response,
            customer_id=response.customer_id,
            touchpoint=touchpoint,
            opened_at=now,
            due_at=now + timedelta(hours=touchpoint.case_due_hours),
        )
        endpoints = webhooks.endpoints_by_event()
        _response_events(response=response, case=case, endpoints={"case.opened": endpoints.get("case.opened", [])})
        dispatch.follow_up_on_commit("case_alert_task", case.pk)


def customer_set_last_sent(*, customer: Customer, moment) -> None:
    """Record a survey sent elsewhere (Delighted's `last_sent_at`), so the cooldown counts it."""
    Customer.objects.filter(pk=customer.pk).update(last_sent_at=moment, updated_at=timezone.now())
    customer.last_sent_at = moment
