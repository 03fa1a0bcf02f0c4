"""Outgoing webhooks: `response.created`, `case.opened`, `coupon.redeemed`.

Each event becomes one `WebhookDelivery` row per subscribed endpoint, written in
the same transaction as the change it reports and sent by Celery once it
commits. The row is the source of truth for retries: a failed attempt sets
`next_attempt_at` with exponential backoff and the beat sweep sends it again,
so a broker outage delays deliveries but never loses them. Bodies are signed
with their time, so a receiver can refuse a replayed one:
`X-Loyal-Timestamp: <Unix seconds>` and
`X-Loyal-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" with the endpoint's secret>`.
A Slack incoming-webhook URL receives `{"text": "<summary>"}` instead.

Webhooks go only where they should (SPEC §8.5): http(s) URLs only; a redirect is
not followed but counts as a failed attempt; and loopback, private, link-local
and metadata addresses are refused both when an endpoint is saved and when a
delivery connects (the address actually connected to is checked, so a name
that resolves elsewhere later gains nothing), unless NPS_WEBHOOK_ALLOW_PRIVATE.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import F, Q
from django.utils import timezone

from surveys.core import db, dispatch
from surveys.models import WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 10
CLAIM_TIMEOUT = timedelta(minutes=5)
SWEEP_BATCH = 500


def webhook_backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min … capped at 6 hours."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))


def active_endpoints() -> list[tuple[int, list[str]]]:
    """(id, events) of every active endpoint, through the ORM: what SQLite runs, and the spec of the SQL below."""
    return list(WebhookEndpoint.objects.filter(is_active=True).values_list("id", "events"))


def active_endpoints_sql() -> list[tuple[int, list[str]]]:
    """The same, written out and prepared once per connection on PostgreSQL: every survey answer with a
    webhook endpoint asks this (see core/db.py)."""
    connection = db.connection_for(WebhookEndpoint)
    with connection.cursor() as cursor:
        db.execute(cursor, connection, f"SELECT id, events FROM {WebhookEndpoint._meta.db_table} WHERE is_active", [])
        rows = cursor.fetchall()
    # PostgreSQL hands JSON to a plain cursor as text.
    return [(pk, json.loads(events) if isinstance(events, str) else events) for pk, events in rows]


def endpoints_by_event() -> dict[str, list[int]]:
    """The active endpoints' ids, by the events they subscribed to."""
    postgresql = db.connection_for(WebhookEndpoint).vendor == "postgresql"
    subscribed: dict[str, list[int]] = {}
    for pk, events in active_endpoints_sql() if postgresql else active_endpoints():
        for event in events:
            subscribed.setdefault(event, []).append(pk)
    return subscribed


def webhook_event_emit(
    *, event: str, data: dict, endpoint_ids: list[int] | None = None, customer_id: int | None = None
) -> int:
    """Queue `event` for every active endpoint that subscribed to it. Call inside the change's transaction.

    `endpoint_ids`: those subscribers, when the caller already looked them up. `customer_id`: whom
    the event is about, so that erasing them finds its deliveries.
    """
    if endpoint_ids is None:
        endpoint_ids = endpoints_by_event().get(event, [])
    if not endpoint_ids:
        return 0
    payload = {"event": event, "created_at": timezone.now().isoformat(), "data": data}
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(endpoint_id=endpoint_id, event=event, payload=payload, customer_id=customer_id)
            for endpoint_id in endpoint_ids
        ]
    )
    for delivery in deliveries:
        dispatch.follow_up_on_commit("webhook_deliver_task", delivery.pk)
    return len(deliveries)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_summary(payload: dict) -> str:
    data, event = payload.get("data", {}), payload.get("event", "")
    customer = data.get("customer", {})
    who = customer.get("name") or customer.get("email") or "a customer"
    if event == "response.created":
        text = f"New NPS answer: {data.get('score')}/10 ({data.get('category')}) for {data.get('touchpoint')} from {who}"
        if data.get("reason"):
            text += f': "{data["reason"][:300]}"'
    elif event == "case.opened":
        text = f"Follow-up case #{data.get('id')} opened: {who} answered {data.get('score')}/10 for {data.get('touchpoint')}"
    elif event == "coupon.redeemed":
        text = f"Coupon {data.get('code')} redeemed by {who}"
    else:
        text = event
    return _slack_escape(text)


def webhook_body(delivery: WebhookDelivery) -> bytes:
    if delivery.endpoint.is_slack:
        document = {"text": slack_summary(delivery.payload)}
    else:
        document = {**delivery.payload, "id": delivery.pk}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_signature(secret: str, body: bytes, timestamp: int) -> str:
    """The signature receivers check: HMAC-SHA256 over "<timestamp>.<body>" (see the README)."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookAddressRefused(Exception):
    """The endpoint's host is, or resolves to, an address webhooks may not reach."""


def address_refused(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata at 169.254.169.254), shared, reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one (mapped, 6to4, Teredo, NAT64, the old compatible form)
        # reaches that IPv4 address: judge it by that.
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(inner is not None and address_refused(str(inner)) for inner in embedded):
            return True
    return not ip.is_global or ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def webhook_url_check(url: str) -> None:
    """Refuse, with a sentence for the admin, a URL webhooks may not be sent to (SPEC §8.5)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Webhook URLs must start with http:// or https:// and name a host.")
    if settings.NPS_WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValidationError("The port in this URL is not a number from 1 to 65535.") from None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        raise ValidationError(f"The host {parts.hostname!r} cannot be resolved.") from None
    refused = sorted(address for address in addresses if address_refused(address))
    if refused:
        raise ValidationError(
            f"{parts.hostname} is (or resolves to) {', '.join(refused)}: a loopback, private, link-local or "
            "metadata address, which webhooks may not reach (NPS_WEBHOOK_ALLOW_PRIVATE=1 allows it)."
        )


def _guarded_connection(address, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, source_address=None, **kwargs):
    """socket.create_connection, refusing to talk to an address webhooks may not reach."""
    sock = socket.create_connection(address, timeout, source_address, **kwargs)
    if not settings.NPS_WEBHOOK_ALLOW_PRIVATE and address_refused(sock.getpeername()[0]):
        peer = sock.getpeername()[0]
        sock.close()
        raise WebhookAddressRefused(f"{address[0]} connected to {peer}, which webhooks may not reach")
    return sock


def _post(url: str, body: bytes, headers: dict) -> int:
    """POST once, following no redirect. Returns the status code; raises OSError and the like on failure."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS)
    connection._create_connection = _guarded_connection  # the address is checked once connected
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        connection.request("POST", path, body=body, headers=headers)
        reply = connection.getresponse()
        reply.read(64 * 1024)
        return reply.status
    finally:
        connection.close()


def webhook_deliver(*, delivery_id: int) -> str:
    """Try one delivery once. Returns "delivered", "retry", "failed" or "not-claimed"."""
    now = timezone.now()
    claimed = (
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    if not claimed:
        return "not-claimed"
    delivery = WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)
    body = webhook_body(delivery)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "LoyalPromoters-Webhooks/1",
        "X-Loyal-Event": delivery.event,
        "X-Loyal-Delivery": str(delivery.pk),
        "X-Loyal-Timestamp": str(timestamp),
        "X-Loyal-Signature": webhook_signature(delivery.endpoint.secret, body, timestamp),
    }
    status_code, error = None, ""
    try:
        parts = urlsplit(delivery.endpoint.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookAddressRefused("only http and https URLs that name a host are allowed")
        status_code = _post(delivery.endpoint.url, body, headers)
        if 300 <= status_code < 400:
            error = f"HTTP {status_code}: redirects are not followed"
        elif not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except WebhookAddressRefused as exc:
        error = f"Refused: {exc}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if status_code is not None and 200 <= status_code < 300:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=WebhookDelivery.Status.DELIVERED,
            delivered_at=timezone.now(),
            last_status_code=status_code,
            last_error="",
            claimed_at=None,
        )
        return "delivered"
    if delivery.attempts >= MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=WebhookDelivery.Status.FAILED, last_status_code=status_code, last_error=error[:2000], claimed_at=None
        )
        logger.warning("Webhook delivery %s gave up after %s attempts: %s", delivery_id, delivery.attempts, error)
        return "failed"
    WebhookDelivery.objects.filter(pk=delivery_id).update(
        next_attempt_at=timezone.now() + webhook_backoff(delivery.attempts),
        last_status_code=status_code,
        last_error=error[:2000],
        claimed_at=None,
    )
    return "retry"


def webhook_redeliver(*, delivery: WebhookDelivery) -> None:
    """Admin action: try a failed or pending delivery again now."""
    WebhookDelivery.objects.filter(pk=delivery.pk).exclude(status=WebhookDelivery.Status.DELIVERED).update(
        status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0, claimed_at=None
    )

    dispatch.follow_up_on_commit("webhook_deliver_task", delivery.pk)


def webhooks_sweep() -> int:
    """Enqueue every delivery whose next attempt is due (retries, and anything a lost message left)."""
    now = timezone.now()
    due_ids = list(
        # The task enqueued at commit handles a new delivery; the sweep is for retries and losses.
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now - timedelta(seconds=30)
        )
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for delivery_id in due_ids:
        dispatch.enqueue("webhook_deliver_task", delivery_id)
    return len(due_ids)


def response_event_data(response) -> dict:
    customer = response.customer
    return {
        "id": response.pk,
        "invitation_id": response.invitation_id,
        "score": response.score,
        "category": response.category,
        "reason": response.reason,
        "created_at": response.created_at.isoformat(),
        "touchpoint": response.touchpoint.slug,
        "customer": {"email": customer.email, "name": customer.name, "external_id": customer.external_id},
    }
