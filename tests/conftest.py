"""Shared fixtures: factories, API keys, and a real SMTP server (aiosmtpd)."""

import os
import socket
import threading

import pytest
from aiosmtpd.controller import Controller

from surveys.access.services import api_key_create

from .factories import CustomerFactory, InvitationFactory, TouchpointFactory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_postgresql() -> None:
    """For a test of what only PostgreSQL does: a skip on SQLite, with the reason; a failure in CI."""
    from django.db import connection

    if connection.vendor != "postgresql":
        message = "needs PostgreSQL (set DATABASE_URL=postgres://...)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def send_invitation(invitation_id: int) -> str:
    """Send one invitation the way a worker does (a batch of one); what happened: "sent", "not-claimed"…"""
    from surveys.invitations.services import invitations_send_batch

    [(outcome, _count)] = invitations_send_batch(invitation_ids=[invitation_id]).results.items()
    return outcome


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Home delivery", slug="delivery")


@pytest.fixture
def customer(db):
    return CustomerFactory(email="jane@example.com", name="Jane Doe")


@pytest.fixture
def invitation(db, customer, touchpoint):
    return InvitationFactory(customer=customer, touchpoint=touchpoint)


@pytest.fixture
def api_key(db):
    """The raw key of a fresh API key."""
    _, raw_key = api_key_create(name="Tests")
    return raw_key


@pytest.fixture
def api_client(client, api_key):
    """The Django test client with the API key sent as a Bearer token."""
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return client


class RecordingHandler:
    """Keeps every message it receives; can be told to refuse the next N with a 4xx."""

    def __init__(self):
        self.messages = []  # (envelope_from, [rcpt], raw bytes)
        self.fail_next = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return "451 Requested action aborted: local error in processing"
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


class ConnectionCountingHandler(RecordingHandler):
    """A RecordingHandler that also tells which SMTP connection each message came over.

    `refuse` holds addresses refused at RCPT (550, a bounce); `defer_once` holds
    addresses whose next DATA is answered 451 (a passing server error).
    """

    def __init__(self):
        super().__init__()
        self.greetings = []  # the client's (host, port) for each EHLO/HELO: one per SMTP session
        self.message_peers = []  # the connection each accepted message came over
        self.refuse = set()
        self.defer_once = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.greetings.append(session.peer)
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        with self.lock:
            self.greetings.append(session.peer)
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            deferred = self.defer_once.intersection(envelope.rcpt_tos)
            self.defer_once -= deferred
        if deferred:
            return "451 4.3.0 Try again later"
        status = await super().handle_DATA(server, session, envelope)
        if status.startswith("250"):
            with self.lock:
                self.message_peers.append(session.peer)
        return status

    @property
    def connections(self) -> int:
        return len(set(self.greetings))

    @property
    def recipients(self) -> list[str]:
        return [rcpt for _, rcpts, _ in self.messages for rcpt in rcpts]

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.greetings.clear()
            self.message_peers.clear()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server():
    """A real SMTP server on localhost; `.handler.messages` holds what it received."""
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture
def smtp_settings(settings, smtp_server):
    """Route Django's email through the real SMTP server above."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = smtp_server.port
    settings.EMAIL_USE_TLS = False
    return smtp_server


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit counters live in the cache: every test starts with none."""
    from django.core.cache import cache

    cache.clear()


def pytest_collection_modifyitems(items):
    """Every transactional test restores the migrated data (content types, the Managers group).

    A transactional test ends with a flush. Without serialized rollback, that
    flush recreates content types under new ids, and a later test that restores
    the serialized snapshot then collides with them; with it, every such test
    starts from exactly what the migrations made. The marker goes first: a test
    with its own `@pytest.mark.django_db(transaction=True)` would otherwise keep
    that one as its closest marker, and run without serialized rollback.
    """
    for item in items:
        marker = item.get_closest_marker("django_db")
        fixtures = getattr(item, "fixturenames", ())
        transactional = "transactional_db" in fixtures or "live_server" in fixtures
        if marker is not None and marker.kwargs.get("transaction"):
            transactional = True
        if transactional:
            kwargs = {**(marker.kwargs if marker else {}), "transaction": True, "serialized_rollback": True}
            item.add_marker(pytest.mark.django_db(**kwargs), append=False)
