"""Webhooks go only where they should (SPEC §8.5), checked against real HTTP servers on 127.0.0.1.

http(s) URLs only; loopback, private, link-local (cloud metadata), shared, reserved and multicast
addresses are refused when an endpoint is saved and when a delivery connects, unless
NPS_WEBHOOK_ALLOW_PRIVATE; a redirect is never followed but counts as a failed attempt; and every
body is signed together with its time, so a receiver can refuse a replayed one.
"""

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from surveys.models import WebhookDelivery, WebhookEndpoint
from surveys.responses.services import response_submit
from surveys.webhooks import services as webhooks

from ..factories import InvitationFactory
from ..page_parsing import elements

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-safety-tests"
ADD_URL = "/admin/surveys/webhookendpoint/add/"


# --- Real servers on loopback ----------------------------------------------------------------------


@dataclass
class Hit:
    method: str
    path: str
    headers: dict
    body: bytes


class _Recorder(BaseHTTPRequestHandler):
    """Records every request, whatever its method, then answers with the server's status and headers."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        with server.lock:
            server.hits.append(Hit(self.command, self.path, dict(self.headers.items()), body))
        self.send_response(server.status)
        for name, value in server.reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(b"ok")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, *args):
        pass


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, reply_headers: dict):
        super().__init__(("127.0.0.1", 0), _Recorder)
        self.status, self.reply_headers = status, reply_headers
        self.hits: list[Hit] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str = "/hooks/nps", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def serve():
    """Start a real HTTP server on 127.0.0.1: `serve(status=301, Location=...)`; all stop after the test."""
    servers = []

    def start(status: int = 200, **reply_headers) -> LocalServer:
        server = LocalServer(status, reply_headers)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class Listener:
    """A bare TCP socket listening on 127.0.0.1 that accepts nothing by itself: `connections()` says who knocked."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        self.sock.setblocking(False)
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener():
    listening = Listener()
    try:
        yield listening
    finally:
        listening.sock.close()


@pytest.fixture
def private_allowed(settings):
    settings.NPS_WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def private_refused(settings):
    settings.NPS_WEBHOOK_ALLOW_PRIVATE = False


def endpoint_at(url: str) -> WebhookEndpoint:
    """An endpoint written straight to the database, past the admin form's checks."""
    return WebhookEndpoint.objects.create(name="CRM", url=url, secret=SECRET, events=["response.created"])


def answer_and_deliver(capture) -> WebhookDelivery:
    """A customer answers; the response.created delivery is attempted once the answer commits."""
    with capture(execute=True):
        response_submit(invitation=InvitationFactory(), score=9)
    return WebhookDelivery.objects.get()


def queued_delivery(endpoint: WebhookEndpoint, **fields) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        endpoint=endpoint, event="response.created", payload={"event": "response.created", "data": {"n": 1}}, **fields
    )


def url_errors(page) -> list[str]:
    """The error texts the admin page shows next to the URL field."""
    form = page.context["adminform"].form
    shown = " ".join(e.text for e in elements(page.content) if "errorlist" in e.attrs.get("class", ""))
    errors = list(form.errors.get("url", []))
    assert all(" ".join(error.split()) in " ".join(shown.split()) for error in errors), (errors, shown)
    return errors


def add_endpoint(admin_client, url: str):
    return admin_client.post(
        ADD_URL, {"name": "CRM", "url": url, "events": ["response.created"], "secret": SECRET, "is_active": "on"}
    )


# --- Saving an endpoint in the admin ---------------------------------------------------------------

PRIVATE_URLS = [
    "http://169.254.169.254/latest/meta-data/",
    "169.254.169.254/latest/meta-data/",  # no scheme: the form assumes https, still the metadata service
    "http://127.0.0.1:6379/",
    "http://[::1]:5432/",
    "http://10.0.0.5/",
    "http://localhost:8000/x",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0:8000/",
    "http://192.168.1.1/admin",
    "http://172.16.0.1/",
    "http://100.64.0.1/",  # shared address space (carrier-grade NAT)
    "http://240.0.0.1/",  # reserved
    "http://224.0.0.1/",  # multicast
    "http://[fd00::1]/",  # IPv6 unique local
    "http://[fe80::1]/",  # IPv6 link-local
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_it_refuses_to_save_an_endpoint_at_a_loopback_private_or_metadata_address(private_refused, admin_client, url):
    page = add_endpoint(admin_client, url)

    assert page.status_code == 200
    [error] = url_errors(page)
    assert "may not reach" in error
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["ftp://10.0.0.5/", "ftps://files.example.com/hook"])
def test_it_refuses_to_save_an_endpoint_whose_url_is_not_http(private_refused, admin_client, url):
    page = add_endpoint(admin_client, url)

    assert page.status_code == 200
    [error] = url_errors(page)
    assert "http:// or https://" in error
    assert not WebhookEndpoint.objects.exists()


def test_it_refuses_a_non_http_url_even_where_private_addresses_are_allowed(private_allowed, admin_client):
    page = add_endpoint(admin_client, "ftp://10.0.0.5/")

    assert page.status_code == 200
    [error] = url_errors(page)
    assert "http:// or https://" in error
    assert not WebhookEndpoint.objects.exists()


def test_it_says_so_when_the_host_of_a_new_endpoint_cannot_be_resolved(private_refused, admin_client):
    page = add_endpoint(admin_client, "https://no-such-host.invalid/hook")

    assert page.status_code == 200
    [error] = url_errors(page)
    assert "no-such-host.invalid" in error and "cannot be resolved" in error
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379/", "http://169.254.169.254/latest/meta-data/"])
def test_it_saves_a_private_address_where_the_deployment_allows_it(private_allowed, admin_client, url):
    page = add_endpoint(admin_client, url)

    assert page.status_code == 302
    assert WebhookEndpoint.objects.get().url == url


def test_it_refuses_to_move_an_existing_endpoint_to_the_metadata_address(private_refused, admin_client):
    endpoint = endpoint_at("http://127.0.0.1:9/old")  # saved while private addresses were allowed

    page = admin_client.post(
        f"/admin/surveys/webhookendpoint/{endpoint.pk}/change/",
        {"name": "CRM", "url": "http://169.254.169.254/latest/meta-data/iam/", "events": ["response.created"],
         "secret": SECRET, "is_active": "on"},
    )

    assert page.status_code == 200
    [error] = url_errors(page)
    assert "may not reach" in error
    endpoint.refresh_from_db()
    assert endpoint.url == "http://127.0.0.1:9/old"


# --- Connecting: the address actually reached is what counts ---------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0.0.0.0"])
def test_it_sends_nothing_to_a_loopback_endpoint_that_was_stored_past_the_form_and_retries_later(
    private_refused, serve, host, django_capture_on_commit_callbacks
):
    server = serve()
    endpoint_at(server.url(host=host))

    delivery = answer_and_deliver(django_capture_on_commit_callbacks)

    assert server.hits == []
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.delivered_at is None
    assert "may not reach" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now()


def test_a_retry_to_a_loopback_endpoint_still_sends_nothing_and_the_last_attempt_gives_up(private_refused, serve):
    server = serve()
    delivery = queued_delivery(endpoint_at(server.url()), attempts=webhooks.MAX_ATTEMPTS - 1)

    outcome = webhooks.webhook_deliver(delivery_id=delivery.pk)

    assert outcome == "failed"
    assert server.hits == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", webhooks.MAX_ATTEMPTS, None)
    assert "may not reach" in delivery.last_error


def test_the_same_loopback_endpoint_is_delivered_to_where_private_addresses_are_allowed(
    private_allowed, serve, django_capture_on_commit_callbacks
):
    server = serve()
    endpoint_at(server.url())

    delivery = answer_and_deliver(django_capture_on_commit_callbacks)

    assert [(hit.method, hit.path) for hit in server.hits] == [("POST", "/hooks/nps")]
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("delivered", 200, "")


# --- Redirects are never followed --------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_it_does_not_follow_a_redirect_and_counts_it_as_a_failed_attempt(
    private_allowed, serve, status, django_capture_on_commit_callbacks
):
    elsewhere = serve()
    endpoint_server = serve(status, Location=elsewhere.url("/latest/meta-data/"))
    endpoint_at(endpoint_server.url())

    delivery = answer_and_deliver(django_capture_on_commit_callbacks)

    assert [(hit.method, hit.path) for hit in endpoint_server.hits] == [("POST", "/hooks/nps")]
    assert elsewhere.hits == []
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, status)
    assert delivery.delivered_at is None
    assert "redirect" in delivery.last_error.lower()
    assert delivery.next_attempt_at > timezone.now()

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "retry"
    assert len(endpoint_server.hits) == 2
    assert elsewhere.hits == []


# --- The signature binds the body to its time ----------------------------------------------------------


def _hmac(secret: str, message: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_a_receiver_can_verify_the_signature_over_timestamp_and_body_and_see_it_is_fresh(
    private_allowed, serve, django_capture_on_commit_callbacks
):
    server = serve()
    endpoint_at(server.url())
    before = time.time()

    answer_and_deliver(django_capture_on_commit_callbacks)

    after = time.time()
    [hit] = server.hits
    timestamp, signature = hit.headers["X-Loyal-Timestamp"], hit.headers["X-Loyal-Signature"]
    assert timestamp.isdigit()
    assert before - 2 <= int(timestamp) <= after + 2
    assert hmac.compare_digest(signature, _hmac(SECRET, timestamp.encode() + b"." + hit.body))
    assert json.loads(hit.body)["event"] == "response.created"


def test_a_signature_checked_the_old_way_or_replayed_with_another_time_does_not_match(
    private_allowed, serve, django_capture_on_commit_callbacks
):
    server = serve()
    endpoint_at(server.url())

    answer_and_deliver(django_capture_on_commit_callbacks)

    [hit] = server.hits
    timestamp, signature = hit.headers["X-Loyal-Timestamp"], hit.headers["X-Loyal-Signature"]
    assert signature != _hmac(SECRET, hit.body)  # the body alone: the scheme before timestamps
    assert signature != _hmac(SECRET, str(int(timestamp) + 300).encode() + b"." + hit.body)
    assert signature != _hmac("another secret", timestamp.encode() + b"." + hit.body)


# --- Other schemes are never tried -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:{port}/hooks/nps", "gopher://127.0.0.1:{port}/_SET%20x", "file:///etc/passwd"]
)
def test_it_refuses_a_stored_non_http_url_without_connecting_anywhere(private_allowed, listener, url):
    delivery = queued_delivery(endpoint_at(url.format(port=listener.port)))

    outcome = webhooks.webhook_deliver(delivery_id=delivery.pk)

    assert outcome == "retry"
    assert listener.connections() == 0
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.delivered_at is None
    assert "http" in delivery.last_error and "refused" in delivery.last_error.lower()


def test_a_stored_url_without_a_host_is_refused_and_retried_instead_of_breaking_the_worker(private_allowed):
    delivery = queued_delivery(endpoint_at("http:///hook"))

    assert webhooks.webhook_deliver(delivery_id=delivery.pk) == "retry"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.claimed_at, delivery.attempts) == ("pending", None, 1)
    assert "name a host" in delivery.last_error


@pytest.mark.parametrize(
    "address",
    ["::a9fe:a9fe", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "2001:0:4136:e378:8000:63bf:f5fe:fefe", "::ffff:10.0.0.5"],
    ids=["ipv4-compatible", "nat64", "6to4", "teredo", "ipv4-mapped"],
)
def test_an_internal_ipv4_address_wrapped_in_ipv6_is_refused(address):
    assert webhooks.address_refused(address)


@pytest.mark.parametrize("address", ["2001:4860:4860::8888", "64:ff9b::808:808", "93.184.215.14"])
def test_a_public_address_is_not_refused(address):
    assert not webhooks.address_refused(address)
