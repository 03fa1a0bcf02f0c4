"""Faults with real processes: concurrent answers, Redis down, a worker SIGKILLed, the database gone.

Each test prints what it measured (counts and timings), so a CI log shows
the figures behind "loses nothing". They need PostgreSQL and Redis like the
other integration tests; the shared Redis and PostgreSQL servers themselves
are never stopped (other runs use them): an outage is simulated for this
process only, by pointing it at an address where nothing listens or
through a TCP proxy the test cuts.
"""

import asyncio
import base64
import http.cookiejar
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import redis
from django.core import mail
from django.core.wsgi import get_wsgi_application
from django.db import connection, connections
from django.db.models import Count, F
from django.test import Client, override_settings
from django.utils import timezone

from nps_app import celery_app
from surveys.core.sweeps import SWEEP_GRACE
from surveys.invitations.services import STUCK_SENDING_AFTER, invitations_enqueue, invitations_sweep
from surveys.models import Category, Coupon, Customer, Invitation, Response
from surveys.promoters.services import promoters_sweep
from tests.conftest import _free_port
from tests.factories import CustomerFactory, InvitationFactory

# Committed transactions, so worker processes and server threads see the rows (see test_survey_loop.py).
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# Nothing listens here: the broker and the rate-limit cache "stopped" for this process only.
DEAD_REDIS = "redis://127.0.0.1:6390/0"


def _wait_for(fetch, check, *, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s: {value!r}"
        time.sleep(0.1)


# --- Two hundred concurrent answers to one survey ----------------------------------------

CONCURRENT_POSTS = 200
# Each thread holds a PostgreSQL connection; the shared server allows 100 in all.
THREADS = 32


def test_two_hundred_concurrent_answers_record_exactly_one_response(integration_services, touchpoint):
    invitation = InvitationFactory(touchpoint=touchpoint)
    url = f"/s/{invitation.token}/"
    start = threading.Barrier(THREADS)

    def answer_several(thread: int) -> list:
        start.wait()  # every thread fires at once
        outcomes = []
        try:
            for n in range(thread, CONCURRENT_POSTS, THREADS):
                began = time.monotonic()
                try:
                    status = Client().post(url, {"score": str(9 + n % 2), "reason": f"Answer {n}"}).status_code
                except Exception as exc:  # noqa: BLE001 - a 500 surfaces as the view's exception
                    status = f"{type(exc).__name__}: {exc}"
                outcomes.append((status, time.monotonic() - began))
        finally:
            connections.close_all()
        return outcomes

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        outcomes = [outcome for result in pool.map(answer_several, range(THREADS)) for outcome in result]
    elapsed = time.monotonic() - began

    statuses = Counter(status for status, _ in outcomes)
    slowest = max(duration for _, duration in outcomes)
    answers = Response.objects.filter(invitation=invitation)
    print(f"\n{len(outcomes)} concurrent POSTs from {THREADS} threads in {elapsed:.2f} s (slowest {slowest:.2f} s): "
          f"statuses {dict(statuses)}; {answers.count()} response(s), "
          f"{Coupon.objects.filter(response__invitation=invitation).count()} coupon(s), {len(mail.outbox)} email(s)")
    assert len(outcomes) == CONCURRENT_POSTS
    # 302: this POST recorded the answer or lost the race to it; 200: the thank-you page
    # of an answer already there; 429 would be the per-token limit refusing cleanly.
    assert set(statuses) <= {200, 302, 429}, statuses
    assert answers.count() == 1
    [response] = answers
    assert response.category == Category.PROMOTER
    # What the one answer set in motion happened once.
    assert Coupon.objects.filter(response=response).count() == 1
    assert len(mail.outbox) == 1


# --- Redis stopped while customers answer ---------------------------------------------------

PROMOTERS_DURING_OUTAGE = 20
SLOW_ANSWER_SECONDS = 5


@pytest.fixture
def redis_stopped():
    """Point this process's broker and rate-limit cache at a Redis address where nothing listens."""
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 6390)) != 0, f"something listens at {DEAD_REDIS}"
    conf = celery_app.conf
    saved = conf.broker_write_url

    def point_broker_at(url):
        # The Django settings namespace keeps broker_url fixed; publishing uses the write URL.
        conf.broker_write_url = url
        # Forget the cached producer pools (kombu keeps each URL's pool for reuse).
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    dead_cache = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    point_broker_at(DEAD_REDIS)
    with override_settings(CACHES=dead_cache):
        try:
            yield lambda: point_broker_at(saved)  # the test brings the broker back
        finally:
            point_broker_at(saved)


def test_redis_down_answers_are_saved_and_every_fresh_promoter_gets_one_coupon_after(
    client, touchpoint, celery_workers, worker_smtp, redis_stopped
):
    invitations = [
        InvitationFactory(touchpoint=touchpoint, customer=customer)
        for customer in CustomerFactory.create_batch(PROMOTERS_DURING_OUTAGE)
    ]

    timings, statuses = [], Counter()
    for n, invitation in enumerate(invitations):
        began = time.monotonic()
        answer = client.post(f"/s/{invitation.token}/", {"score": str(9 + n % 2), "reason": "Great, thanks."})
        timings.append(time.monotonic() - began)
        statuses[answer.status_code] += 1
        assert answer.status_code == 302, answer.status_code
        thanks = client.get(answer["Location"])
        assert thanks.status_code == 200
        assert b"your coupon is on its way" in thanks.content
    responses = Response.objects.filter(invitation__in=invitations)
    print(f"\nRedis down: {len(timings)} promoter answers, statuses {dict(statuses)}, "
          f"slowest {max(timings):.2f} s, mean {sum(timings) / len(timings):.3f} s; "
          f"{responses.count()} responses saved, {Coupon.objects.count()} coupons so far")
    assert max(timings) < SLOW_ANSWER_SECONDS
    assert responses.count() == PROMOTERS_DURING_OUTAGE
    assert not Coupon.objects.exists()  # nothing reached a worker

    # The broker is back; beat's promoters sweep finds every fresh promoter without a coupon.
    redis_stopped()  # restores the broker
    worker = celery_workers.start()
    responses.update(created_at=F("created_at") - SWEEP_GRACE - timedelta(minutes=1))
    swept = promoters_sweep()
    _wait_for(
        lambda: responses.filter(coupon_settled_at__isnull=True).count(),
        lambda unsettled: unsettled == 0,
        what="every promoter settled",
    )
    worker.wait_idle()
    per_response = Counter(Coupon.objects.filter(response__in=responses).values_list("response_id", flat=True))
    emailed_to = Counter(message["To"] for message in worker_smtp.messages())
    print(f"After Redis returned: sweep {swept}; {len(per_response)} responses with a coupon, "
          f"{sum(per_response.values())} coupons, {sum(emailed_to.values())} coupon emails")
    assert swept == {"window_closed": 0, "enqueued": PROMOTERS_DURING_OUTAGE}
    assert per_response == Counter({response.pk: 1 for response in responses})
    assert emailed_to == Counter({invitation.customer.email: 1 for invitation in invitations})
    assert not Coupon.objects.filter(emailed_at__isnull=True).exists()
    assert promoters_sweep() == {"window_closed": 0, "enqueued": 0}


# --- A worker SIGKILLed in the middle of a batch of invitations -------------------------------

INVITATIONS = 300
KILL_AFTER_EMAILS = 60
SMTP_DELAY_SECONDS = 0.02
RECOVERY_TIMEOUT = 60


def _queued(broker: redis.Redis, queue: str) -> int:
    return sum(broker.llen(key) for key in broker.scan_iter(match=f"{queue}*") if broker.type(key) == b"list")


def _wait_drained(worker, broker: redis.Redis, queue: str, deadline: float) -> None:
    """Until the queue is empty and the worker has finished every task it took, three checks in a row."""
    quiet = 0
    while quiet < 3:
        quiet = quiet + 1 if not _queued(broker, queue) and not worker.busy_tasks() else 0
        assert time.monotonic() < deadline, f"the worker did not drain the queue: {_queued(broker, queue)} left"
        time.sleep(0.2)


def test_a_worker_killed_mid_batch_loses_no_invitation_and_sends_at_most_one_twice_per_process(
    touchpoint, celery_workers, worker_smtp, broker, monkeypatch
):
    # A slow SMTP server, so the kill lands while batches are in full swing.
    receive = worker_smtp.handler.handle_DATA

    async def slow_receive(server, session, envelope):
        await asyncio.sleep(SMTP_DELAY_SECONDS)
        return await receive(server, session, envelope)

    monkeypatch.setattr(worker_smtp.handler, "handle_DATA", slow_receive)
    customers = Customer.objects.bulk_create(
        Customer(email=f"batch{n}@example.com", name=f"Customer {n}") for n in range(INVITATIONS)
    )
    expires_at = timezone.now() + timedelta(days=30)
    invitations = Invitation.objects.bulk_create(
        Invitation(customer=customer, touchpoint=touchpoint, expires_at=expires_at) for customer in customers
    )
    ids = [invitation.pk for invitation in invitations]
    batches = invitations_enqueue(ids)

    first = celery_workers.start()
    worker_smtp.wait_for_messages("", count=KILL_AFTER_EMAILS, timeout=30)
    killed = first.kill()
    emails_at_kill = len(worker_smtp.messages())
    pool_processes_killed = len(killed) - 1  # the main process only hands out messages
    by_status = dict(Invitation.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
    print(f"\n{INVITATIONS} invitations in {batches} batches; SIGKILLed {len(killed)} worker processes "
          f"({pool_processes_killed} in the pool) after {emails_at_kill} emails; rows then: {by_status}")
    assert emails_at_kill < INVITATIONS, "the worker finished before it was killed"
    assert pool_processes_killed >= 1

    # The restarted worker sends what is still queued. The dead worker's messages wait
    # in Redis for the visibility timeout (an hour) and its claims for 10 minutes: once
    # the queue is drained, let that time pass and the sweep recovers what they held.
    second = celery_workers.start()
    unsent = Invitation.objects.filter(pk__in=ids, status__in=[Invitation.Status.PENDING, Invitation.Status.SENDING])
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    sweeps = []
    while True:
        _wait_drained(second, broker, celery_workers.queue, deadline)
        if not unsent.exists():
            break
        assert time.monotonic() < deadline, f"{unsent.count()} invitations still unsent after sweeps {sweeps}"
        unsent.filter(status=Invitation.Status.SENDING).update(
            claimed_at=F("claimed_at") - STUCK_SENDING_AFTER - timedelta(minutes=1)
        )
        unsent.update(send_after=F("send_after") - SWEEP_GRACE - timedelta(minutes=1))
        sweeps.append(invitations_sweep())

    second.wait_idle()
    emailed = Counter(message["To"] for message in worker_smtp.messages())
    addresses = {customer.email for customer in customers}
    duplicates = sum(emailed.values()) - len(emailed)
    by_status = dict(Invitation.objects.filter(pk__in=ids).values_list("status").annotate(n=Count("id")))
    print(f"Recovered with {len(sweeps)} sweep(s) {sweeps}; rows {by_status}; {sum(emailed.values())} emails "
          f"to {len(emailed)} customers: {duplicates} duplicate(s), at most {pool_processes_killed} allowed")
    assert by_status == {Invitation.Status.SENT: INVITATIONS}
    assert set(emailed) == addresses  # nothing lost, nothing sent to anyone else
    assert all(count <= 2 for count in emailed.values())
    assert duplicates <= pool_processes_killed


# --- The database goes away under load, then comes back ---------------------------------------
#
# Restarting the real PostgreSQL (pg_ctlcluster restart) would take the database
# away from every other test run, benchmark and developer on this shared machine,
# and needs root. A TCP proxy between this web server and PostgreSQL does the
# same to the app alone: cutting it drops every open connection, as a restart
# does, and refuses new ones until it listens again.


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream address; `cut()` drops everything, `restore()` listens again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.port = _free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread = None
        self.accepted = 0  # database connections the app opened through the proxy

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))
        listener.settimeout(0.05)
        self._listening.set()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def cut(self) -> None:
        self._listening.clear()
        self._thread.join()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._listening.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.upstream)
                self.accepted += 1
                with self._lock:
                    self._sockets.update((client, upstream))
                for source, target in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def web_server_through_proxy(integration_services):
    """A one-thread WSGI server (like a gunicorn sync worker) whose database connections go through a TcpProxy."""
    database = connection.settings_dict  # the dict every thread's connection is built from
    connection.ensure_connection()  # this thread keeps its direct connection
    saved = database["HOST"], database["PORT"]
    proxy = TcpProxy((database["HOST"] or "127.0.0.1", int(database["PORT"] or 5432)))
    proxy.restore()
    database["HOST"], database["PORT"] = "127.0.0.1", str(proxy.port)
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=_QuietHandler)

    def serve():
        try:
            server.serve_forever(poll_interval=0.05)
        finally:
            connections.close_all()  # this thread's persistent connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", proxy
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        database["HOST"], database["PORT"] = saved
        if proxy._listening.is_set():
            proxy.cut()


def _fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # report the 302 itself


class _Customer:
    """A browser on the survey page, posting its form as a real browser would (with cookies on)."""

    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect
        )
        with self.opener.open(url, timeout=20) as page:
            assert b'method="post"' in page.read()

    def answer(self, score: int) -> int:
        data = urlencode({"score": score, "reason": "Still here"}).encode()
        try:
            with self.opener.open(self.url, data=data, timeout=20) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code


def test_the_database_going_away_answers_503_and_the_app_recovers_by_itself(
    touchpoint, api_key, web_server_through_proxy
):
    base, proxy = web_server_through_proxy
    invitation = InvitationFactory(touchpoint=touchpoint)
    json_headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    basic_auth = {"Authorization": "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()}
    requests = [
        ("survey page", "page", lambda: _fetch(f"{base}/s/{invitation.token}/")),
        ("unsubscribe page", "page", lambda: _fetch(f"{base}/u/{invitation.customer.unsubscribe_token}/")),
        ("API invitation", "json", lambda: _fetch(
            f"{base}/api/v1/invitations", b'{"touchpoint": "delivery", "email": "load@example.com"}', json_headers
        )),
        ("Delighted metrics", "json", lambda: _fetch(f"{base}/v1/metrics.json", headers=basic_auth)),
    ]
    customer = _Customer(f"{base}/s/{invitation.token}/")
    results = []  # (started, finished, name, kind, status, headers, body)
    stop = threading.Event()

    def load(offset: int) -> None:
        n = offset
        while not stop.is_set():
            name, kind, call = requests[n % len(requests)]
            started = time.monotonic()
            try:
                status, headers, body = call()
            except OSError as exc:  # the web server itself must never drop a request
                status, headers, body = f"{type(exc).__name__}: {exc}", {}, b""
            results.append((started, time.monotonic(), name, kind, status, headers, body))
            n += 1

    clients = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(1.0)
    connections_before = proxy.accepted
    cutting_at = time.monotonic()
    proxy.cut()
    cut_at = time.monotonic()  # once every connection is dropped
    time.sleep(2.0)
    # An answer sent while the database is away is refused cleanly, and not recorded.
    down_answer = customer.answer(9)
    restoring_at = time.monotonic()
    proxy.restore()
    restored_at = time.monotonic()  # once the database listens again
    time.sleep(1.5)
    stop.set()
    for thread in clients:
        thread.join(timeout=30)
    up_answer = customer.answer(9)

    # Requests that overlap a switch may go either way; each phase counts only those wholly inside it.
    before = [r for r in results if r[1] < cutting_at]
    down = [r for r in results if r[0] > cut_at and r[1] < restoring_at]
    after = [r for r in results if r[0] > restored_at]
    summary = {
        phase: dict(Counter(status for *_, status, _, _ in rows))
        for phase, rows in (("before", before), ("down", down), ("after", after), ("all", results))
    }
    print(f"\n{len(results)} requests from 4 clients: {summary}; answer while down {down_answer}, "
          f"after {up_answer}; database connections opened: {connections_before} before the cut, "
          f"{proxy.accepted - connections_before} after it came back")

    assert set(summary["all"]) <= {200, 201, 503}, summary["all"]
    assert before and down and after
    assert all(status in (200, 201) for *_, status, _, _ in before)
    for _, _, name, kind, status, headers, body in down:
        assert status == 503, (name, status)
        assert headers.get("Retry-After") == "30", (name, headers)
        if kind == "json":
            assert headers["Content-Type"].startswith("application/json")
            assert b'"error": "unavailable"' in body
        else:
            assert b"Back in a moment" in body
    # Recovered by itself: every request started after the database came back succeeded.
    assert all(status in (200, 201) for *_, status, _, _ in after), summary["after"]
    # Persistent connections (CONN_MAX_AGE): one served all the load; after the cut the
    # health check dropped the dead one and a single new one took over.
    assert connections_before == 1 and proxy.accepted - connections_before == 1
    assert down_answer == 503
    assert up_answer == 302
    assert Response.objects.filter(invitation=invitation).count() == 1
