"""Outgoing webhooks, delivered to a real HTTP server on localhost that checks every signature."""

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.utils import timezone

from surveys.models import FollowUpCase, WebhookDelivery, WebhookEndpoint
from surveys.promoters.services import CouponAlreadyRedeemed, coupon_issue, coupon_redeem
from surveys.responses.services import response_submit
from surveys.tasks import webhooks_sweep
from surveys.webhooks import services as webhooks

from ..conftest import _free_port
from ..factories import CustomerFactory, InvitationFactory, ResponseFactory
from ..page_parsing import elements

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-tests"


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """The check the README tells receivers to make: HMAC-SHA256 over "<X-Loyal-Timestamp>.<body>"."""
        signed = self.headers.get("X-Loyal-Timestamp", "").encode() + b"." + self.body
        expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("X-Loyal-Signature", ""), expected)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        receiver = self.server.receiver
        with receiver.lock:
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.replies.pop(0) if receiver.replies else 200
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


class Receiver:
    """What the endpoint received; `replies` are the status codes of its next answers (then 200)."""

    def __init__(self, url: str):
        self.url = url
        self.requests: list[Received] = []
        self.replies: list[int] = []
        self.lock = threading.Lock()


@pytest.fixture
def receiver(settings):
    # The receiver listens on loopback, which webhooks may reach only when a deployment allows it.
    settings.NPS_WEBHOOK_ALLOW_PRIVATE = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/nps")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()


def endpoint_for(receiver, *events, **fields) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        name=fields.pop("name", "CRM"), url=fields.pop("url", receiver.url), secret=SECRET, events=list(events), **fields
    )


def answer(score: int, reason: str = "", **customer):
    invitation = InvitationFactory(customer=CustomerFactory(**customer)) if customer else InvitationFactory()
    return response_submit(invitation=invitation, score=score, reason=reason)


def reload(delivery: WebhookDelivery) -> WebhookDelivery:
    delivery.refresh_from_db()
    return delivery


# --- Events --------------------------------------------------------------------------------------


def test_every_answer_is_sent_as_response_created_signed_with_the_secret(
    receiver, touchpoint, django_capture_on_commit_callbacks
):
    endpoint_for(receiver, "response.created")

    with django_capture_on_commit_callbacks(execute=True):
        promoter = answer(10, "Quick and friendly", email="ana@example.com", name="Ana", external_id="crm-9")
    with django_capture_on_commit_callbacks(execute=True):
        answer(4, "Late")

    assert len(receiver.requests) == 2
    first = receiver.requests[0]
    assert first.path == "/hooks/nps"
    assert first.signed_with(SECRET)
    assert not first.signed_with("another secret")
    assert first.headers["Content-Type"] == "application/json"
    assert first.headers["X-Loyal-Event"] == "response.created"
    document = first.json
    delivery = WebhookDelivery.objects.get(pk=document["id"])
    assert first.headers["X-Loyal-Delivery"] == str(delivery.pk)
    assert document["event"] == "response.created"
    assert datetime.fromisoformat(document["created_at"]) <= timezone.now()
    assert document["data"]["id"] == promoter.pk
    assert document["data"]["score"] == 10
    assert document["data"]["category"] == "promoter"
    assert document["data"]["reason"] == "Quick and friendly"
    assert document["data"]["touchpoint"] == promoter.touchpoint.slug
    assert document["data"]["customer"] == {"email": "ana@example.com", "name": "Ana", "external_id": "crm-9"}
    assert [request.json["data"]["score"] for request in receiver.requests] == [10, 4]
    assert all(request.signed_with(SECRET) for request in receiver.requests)
    assert set(WebhookDelivery.objects.values_list("status", "last_status_code", "attempts")) == {("delivered", 200, 1)}
    assert reload(delivery).delivered_at is not None


def test_the_signature_covers_the_exact_bytes_sent_whatever_the_language(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created")

    with django_capture_on_commit_callbacks(execute=True):
        answer(9, "Très bien, señor — 👍", name="Zoë")

    [request] = receiver.requests
    assert "Très bien, señor — 👍".encode() in request.body
    assert request.signed_with(SECRET)
    assert request.json["data"]["reason"] == "Très bien, señor — 👍"


def test_a_detractor_answer_sends_case_opened(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "case.opened")

    with django_capture_on_commit_callbacks(execute=True):
        detractor = answer(2, "Broken on arrival", email="dan@example.com")

    [request] = receiver.requests
    assert request.signed_with(SECRET)
    document = request.json
    case = FollowUpCase.objects.get(response=detractor)
    assert document["event"] == "case.opened"
    assert document["data"]["id"] == case.pk
    assert document["data"]["response_id"] == detractor.pk
    assert document["data"]["status"] == "open"
    assert document["data"]["score"] == 2
    assert document["data"]["customer"]["email"] == "dan@example.com"
    assert datetime.fromisoformat(document["data"]["due_at"]) == case.due_at


@pytest.mark.parametrize("score", [7, 8, 9, 10])
def test_passives_and_promoters_open_no_case_and_send_no_case_opened(receiver, score, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "case.opened")

    with django_capture_on_commit_callbacks(execute=True):
        answer(score)

    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()


def test_a_redeemed_coupon_sends_coupon_redeemed(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "coupon.redeemed")
    promoter = ResponseFactory(score=10, invitation__customer__email="pia@example.com", invitation__customer__name="Pia")
    coupon = coupon_issue(response=promoter)

    with django_capture_on_commit_callbacks(execute=True):
        coupon_redeem(code=coupon.code.lower())

    [request] = receiver.requests
    assert request.signed_with(SECRET)
    document = request.json
    coupon.refresh_from_db()
    assert document["event"] == "coupon.redeemed"
    assert document["data"]["code"] == coupon.code
    assert datetime.fromisoformat(document["data"]["redeemed_at"]) == coupon.redeemed_at
    assert document["data"]["customer"]["email"] == "pia@example.com"


def test_a_refused_redemption_sends_nothing(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "coupon.redeemed")
    coupon = coupon_issue(response=ResponseFactory(score=10))
    with django_capture_on_commit_callbacks(execute=True):
        coupon_redeem(code=coupon.code)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CouponAlreadyRedeemed):
        coupon_redeem(code=coupon.code)

    assert len(receiver.requests) == 1


def test_an_endpoint_gets_only_the_events_it_subscribed_to(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created", "case.opened")

    with django_capture_on_commit_callbacks(execute=True):
        answer(3)

    assert sorted(request.json["event"] for request in receiver.requests) == ["case.opened", "response.created"]


def test_an_inactive_endpoint_and_one_without_the_event_get_nothing(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created", name="Paused", is_active=False)
    endpoint_for(receiver, "coupon.redeemed", name="Coupons only")

    with django_capture_on_commit_callbacks(execute=True):
        answer(9)

    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()


def test_nothing_is_sent_for_an_answer_that_was_rolled_back(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created")
    invitation = InvitationFactory()

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        response_submit(invitation=invitation, score=9)
        raise RuntimeError("something failed after the answer was written")

    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()


def test_nothing_is_posted_before_the_answer_commits(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created")

    with django_capture_on_commit_callbacks(execute=True):
        answer(9)
        assert receiver.requests == []
        assert WebhookDelivery.objects.get().status == "pending"

    assert len(receiver.requests) == 1


# --- Retries -------------------------------------------------------------------------------------


def test_a_server_error_is_retried_later_with_a_growing_backoff(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created")
    receiver.replies = [500, 500]
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=True):
        answer(9)

    after = timezone.now()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert "500" in delivery.last_error
    assert before + timedelta(seconds=30) <= delivery.next_attempt_at <= after + timedelta(seconds=30)

    before = timezone.now()
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "retry"
    after = timezone.now()

    delivery = reload(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 2, 500)
    assert before + timedelta(seconds=60) <= delivery.next_attempt_at <= after + timedelta(seconds=60)

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "delivered"

    delivery = reload(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == (
        "delivered", 3, 200, ""
    )
    assert len(receiver.requests) == 3
    assert len({request.body for request in receiver.requests}) == 1  # the same signed body each time


def test_the_backoff_doubles_up_to_six_hours():
    assert [webhooks.webhook_backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert webhooks.webhook_backoff(30) == timedelta(hours=6)


def test_after_the_last_attempt_the_delivery_is_marked_failed(receiver, django_capture_on_commit_callbacks):
    endpoint_for(receiver, "response.created")
    receiver.replies = [500] * webhooks.MAX_ATTEMPTS

    with django_capture_on_commit_callbacks(execute=True):
        answer(9)
    delivery = WebhookDelivery.objects.get()
    outcomes = [webhooks.webhook_deliver(delivery_id=delivery.pk) for _ in range(webhooks.MAX_ATTEMPTS - 1)]

    assert outcomes == ["retry"] * (webhooks.MAX_ATTEMPTS - 2) + ["failed"]
    delivery = reload(delivery)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", webhooks.MAX_ATTEMPTS, 500)
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "not-claimed"
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS


def test_a_refused_connection_is_retried_with_the_error_recorded(django_capture_on_commit_callbacks):
    WebhookEndpoint.objects.create(
        name="Down", url=f"http://127.0.0.1:{_free_port()}/hook", secret=SECRET, events=["response.created"]
    )

    with django_capture_on_commit_callbacks(execute=True):
        answer(9)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert "refused" in delivery.last_error.lower()
    assert delivery.next_attempt_at > timezone.now()


def test_the_sweep_sends_the_deliveries_whose_retry_is_due(receiver, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(receiver, "response.created")
    now = timezone.now()
    due = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 1}},
        attempts=1, next_attempt_at=now - timedelta(minutes=2),
    )
    later = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 2}},
        attempts=1, next_attempt_at=now + timedelta(minutes=2),
    )
    held = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 3}},
        next_attempt_at=now - timedelta(minutes=2), claimed_at=now,
    )

    assert webhooks_sweep.delay().get() == 1

    assert [request.json["data"] for request in receiver.requests] == [{"n": 1}]
    assert [reload(d).status for d in (due, later, held)] == ["delivered", "pending", "pending"]
    assert webhooks.webhook_deliver(delivery_id=held.pk) == "not-claimed"


def test_a_delivery_left_claimed_by_a_dead_worker_is_picked_up_again(receiver):
    endpoint = endpoint_for(receiver, "response.created")
    stale = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {}},
        next_attempt_at=timezone.now() - timedelta(minutes=20), claimed_at=timezone.now() - timedelta(minutes=10),
    )

    assert webhooks.webhooks_sweep() == 1
    assert reload(stale).status == "delivered"


# --- Slack --------------------------------------------------------------------------------------


def _slack_delivery(event: str, data: dict) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.create(
        name="Slack", url="https://hooks.slack.com/services/T000/B000/XXXX", events=[event]
    )
    return WebhookDelivery(pk=41, endpoint=endpoint, event=event, payload={"event": event, "data": data})


def test_a_slack_url_gets_a_plain_text_summary_with_slack_characters_escaped():
    response = ResponseFactory(score=3, reason="Parcel <b>crushed</b> & late > 2 days", invitation__customer__name="Tom & Jerry")
    delivery = _slack_delivery("response.created", webhooks.response_event_data(response))

    document = json.loads(webhooks.webhook_body(delivery))

    assert list(document) == ["text"]
    text = document["text"]
    assert text.startswith("New NPS answer: 3/10 (detractor)")
    assert "Tom &amp; Jerry" in text
    assert "Parcel &lt;b&gt;crushed&lt;/b&gt; &amp; late &gt; 2 days" in text
    assert "<" not in text and ">" not in text


def test_a_slack_summary_for_each_event():
    case = _slack_delivery("case.opened", {"id": 12, "score": 1, "touchpoint": "delivery", "customer": {"email": "x@example.com"}})
    coupon = WebhookDelivery(
        endpoint=case.endpoint, event="coupon.redeemed",
        payload={"event": "coupon.redeemed", "data": {"code": "LP-AAAA-BBBB-CCCC", "customer": {"name": "<Ana>"}}},
    )

    assert json.loads(webhooks.webhook_body(case)) == {
        "text": "Follow-up case #12 opened: x@example.com answered 1/10 for delivery"
    }
    assert json.loads(webhooks.webhook_body(coupon)) == {"text": "Coupon LP-AAAA-BBBB-CCCC redeemed by &lt;Ana&gt;"}


def test_a_url_that_only_looks_like_slack_gets_the_full_document(receiver):
    endpoint = WebhookEndpoint.objects.create(
        name="Not Slack", url="https://hooks.slack.com.example.net/x", events=["response.created"]
    )
    delivery = WebhookDelivery(pk=7, endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {}})

    assert json.loads(webhooks.webhook_body(delivery)) == {"event": "response.created", "data": {}, "id": 7}


# --- Admin ---------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests"))
    return client


def test_the_add_form_offers_each_event_as_a_checkbox(admin_client):
    page = admin_client.get("/admin/surveys/webhookendpoint/add/")

    assert page.status_code == 200
    boxes = [e.attrs for e in elements(page.content, "input") if e.attrs.get("name") == "events"]
    assert [(box["type"], box["value"]) for box in boxes] == [
        ("checkbox", "response.created"),
        ("checkbox", "case.opened"),
        ("checkbox", "coupon.redeemed"),
    ]
    [secret] = [e.attrs for e in elements(page.content, "input") if e.attrs.get("name") == "secret"]
    assert len(secret["value"]) >= 32


def test_an_admin_adds_an_endpoint_that_then_receives_its_events(admin_client, receiver, django_capture_on_commit_callbacks):
    response = admin_client.post(
        "/admin/surveys/webhookendpoint/add/",
        {"name": "CRM", "url": receiver.url, "events": ["response.created", "coupon.redeemed"], "secret": SECRET,
         "is_active": "on"},
    )

    assert response.status_code == 302
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["response.created", "coupon.redeemed"]
    with django_capture_on_commit_callbacks(execute=True):
        answer(8)
    [request] = receiver.requests
    assert request.signed_with(SECRET)


def test_an_endpoint_needs_at_least_one_known_event(admin_client):
    none = admin_client.post(
        "/admin/surveys/webhookendpoint/add/", {"name": "CRM", "url": "https://crm.example.com/hook", "secret": "x"}
    )
    unknown = admin_client.post(
        "/admin/surveys/webhookendpoint/add/",
        {"name": "CRM", "url": "https://crm.example.com/hook", "secret": "x", "events": ["response.deleted"]},
    )

    assert none.status_code == unknown.status_code == 200
    assert "This field is required." in none.content.decode()
    assert "Select a valid choice." in unknown.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_delivery_log_lists_failures_and_delivers_again_on_request(
    admin_client, receiver, django_capture_on_commit_callbacks
):
    endpoint = endpoint_for(receiver, "response.created")
    failed = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 1}},
        status="failed", attempts=webhooks.MAX_ATTEMPTS, last_status_code=503, last_error="HTTP 503 Unavailable",
    )
    WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 2}},
        status="delivered", attempts=1, last_status_code=200,
    )

    log = admin_client.get("/admin/surveys/webhookdelivery/", {"status__exact": "failed"})
    assert log.status_code == 200
    assert log.context["cl"].result_count == 1
    detail = admin_client.get(f"/admin/surveys/webhookdelivery/{failed.pk}/change/").content.decode()
    assert "HTTP 503 Unavailable" in detail

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/surveys/webhookdelivery/", {"action": "redeliver", "_selected_action": [failed.pk]}
        )

    assert response.status_code == 302
    assert [request.json["data"] for request in receiver.requests] == [{"n": 1}]
    failed = reload(failed)
    assert (failed.status, failed.attempts, failed.last_status_code) == ("delivered", 1, 200)


def test_delivering_again_leaves_a_delivered_one_alone(admin_client, receiver, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(receiver, "response.created")
    done = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {}},
        status="delivered", attempts=1, last_status_code=200,
    )

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/surveys/webhookdelivery/", {"action": "redeliver", "_selected_action": [done.pk]})

    assert receiver.requests == []
    assert reload(done).status == "delivered"


def test_deliveries_cannot_be_added_by_hand(admin_client):
    assert admin_client.get("/admin/surveys/webhookdelivery/add/").status_code == 403


def test_staff_who_may_only_view_deliveries_cannot_send_them_again(client, receiver, django_capture_on_commit_callbacks):
    clerk = User.objects.create_user("clerk", "clerk@example.com", "pw-for-tests", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(clerk)
    endpoint = endpoint_for(receiver, "response.created")
    failed = WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {}}, status="failed"
    )

    assert client.get("/admin/surveys/webhookdelivery/").status_code == 200
    assert client.get("/admin/surveys/webhookendpoint/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/admin/surveys/webhookdelivery/", {"action": "redeliver", "_selected_action": [failed.pk]})

    assert receiver.requests == []
    assert reload(failed).status == "failed"


def test_the_written_out_endpoint_query_finds_what_the_orm_finds():
    from surveys.webhooks.services import active_endpoints, active_endpoints_sql

    from ..conftest import require_postgresql

    require_postgresql()
    WebhookEndpoint.objects.create(name="A", url="https://a.example.com/", events=["response.created", "case.opened"])
    WebhookEndpoint.objects.create(name="B", url="https://b.example.com/", events=[], is_active=True)
    WebhookEndpoint.objects.create(name="C", url="https://c.example.com/", events=["case.opened"], is_active=False)

    assert sorted(active_endpoints_sql()) == sorted(active_endpoints())
    assert len(active_endpoints()) == 2
