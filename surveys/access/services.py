"""Writes of API access: keys (with their scopes) and the Idempotency-Key records.
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from surveys.models import (
    ApiKey,
    Customer,
    IdempotencyRecord,
    all_api_scopes,
)

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key was used before for a different request."""



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
