"""Fixtures for the integration tests: a real Celery worker process, Redis, PostgreSQL and SMTP.

The worker runs in its own process with the production settings module,
pointed at pytest-django's PostgreSQL test database, at the Redis broker the
suite was given (on a queue of its own, so parallel runs never share work)
and at an aiosmtpd server started by the test. Nothing is mocked: the test
process publishes real messages and reads what the SMTP server received.
"""

import email
import email.policy
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from aiosmtpd.controller import Controller
from django.db import connection

from nps_app import celery_app
from tests.conftest import IN_CI, RecordingHandler, _free_port

PROJECT_DIR = Path(__file__).resolve().parents[2]
WORKER_SITE_URL = "https://surveys.example.com"
WORKER_READY_TIMEOUT = 40


def _require_services() -> None:
    """PostgreSQL and Redis, or a skip with the reason (a failure in CI)."""
    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    problems = []
    if not database_url.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL (postgres://...)")
    if not broker_url.startswith(("redis://", "rediss://")):
        problems.append("CELERY_BROKER_URL must point at Redis (redis://...)")
    if not problems:
        try:
            redis.Redis.from_url(broker_url, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            problems.append(f"Redis at {broker_url} is not reachable: {exc}")
    if problems:
        message = "Integration tests need a real PostgreSQL and Redis: " + "; ".join(problems)
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def integration_services():
    _require_services()


def _database_url_for_test_db() -> str:
    db = connection.settings_dict
    assert connection.vendor == "postgresql", "the test database is not PostgreSQL"
    credentials = quote(db["USER"] or "", safe="")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{quote(db['NAME'], safe='')}"


class WorkerSmtp:
    """An aiosmtpd server on a port fixed for the worker's lifetime; can be stopped and started."""

    def __init__(self, port: int):
        self.port = port
        self.handler = RecordingHandler()
        self._controller = None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self, containing: str = "") -> list[email.message.EmailMessage]:
        with self.handler.lock:
            raw_messages = [raw for _, _, raw in self.handler.messages]
        parsed = [email.message_from_bytes(raw, policy=email.policy.default) for raw in raw_messages]
        return [message for message in parsed if containing in message.as_string()]

    def wait_for_messages(self, containing: str, count: int = 1, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(containing)
            if len(found) >= count:
                return found
            time.sleep(0.1)
        raise AssertionError(
            f"expected {count} message(s) containing {containing!r} within {timeout} s, "
            f"the SMTP server received {len(self.messages())} in all"
        )


class CeleryWorker:
    """A `celery worker` subprocess and its log."""

    def __init__(self, *, queue: str, env: dict, log_path: Path):
        self.queue = queue
        self.log_path = log_path
        self._log_file = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "nps_app", "worker",
                "--pool=prefork", "--concurrency=2",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--queues", queue, "--hostname", f"{queue}@%h",
                "--loglevel=INFO",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool children go down with it in stop()
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.process.poll() is not None:
                raise AssertionError(f"the Celery worker exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} did not appear in the worker log within {timeout} s:\n{self.log()}")

    def wait_ready(self) -> None:
        self.wait_for_log(rf"{re.escape(self.queue)}@\S+ ready\.", WORKER_READY_TIMEOUT)

    def task_result(self, task_id: str, timeout: float = 20) -> str:
        """Wait until the worker finished the task and return its logged result, e.g. 'sent'."""
        match = self.wait_for_log(rf"\[{re.escape(task_id)}\] succeeded in [\d.e-]+s: (.*)", timeout)
        return match.group(1).strip().strip("'\"")

    def wait_idle(self, timeout: float = 10) -> None:
        """Let tasks a test set off (a coupon email after an answer, say) finish before its rows are flushed.

        A task whose last word was a retry waits for its countdown and is not waited for.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if not self.busy_tasks():
                return
            time.sleep(0.1)

    def busy_tasks(self) -> set[str]:
        """Ids of tasks the worker received and has not finished (a pending retry counts as finished)."""
        received: dict[str, int] = {}
        outcomes: dict[str, list[str]] = {}
        for task_id, event in re.findall(
            r"\[([0-9a-f-]{36})\] (received|succeeded|retry|raised|failed|ignored|rejected)", self.log()
        ):
            if event == "received":
                received[task_id] = received.get(task_id, 0) + 1
            else:
                outcomes.setdefault(task_id, []).append(event)
        return {
            task_id
            for task_id, count in received.items()
            if len(outcomes.get(task_id, [])) < count and outcomes.get(task_id, [""])[-1] != "retry"
        }

    def processes(self) -> list[int]:
        """The pids of the worker's process group: the main process and its pool children."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The command name (field 2) may hold spaces; the fields after it do not.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            if int(fields[2]) == self.process.pid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
        return pids

    def kill(self) -> list[int]:
        """SIGKILL the whole process group, as a crash or the OOM killer would; returns the pids killed."""
        pids = self.processes()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)  # pool children are reaped by init once their parent is gone
        return pids

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown: unacknowledged messages go back to the queue
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=10)
        self._log_file.close()


def _delete_queue_keys(client: redis.Redis, queue: str) -> None:
    keys = [key for key in client.scan_iter(match=f"*{queue}*", count=1000)]
    if keys:
        client.delete(*keys)
    # Messages a killed worker had reserved stay in kombu's unacked hash until the
    # visibility timeout; drop this queue's, or they would be restored an hour later.
    stranded = [tag for tag, message in client.hscan_iter("unacked", count=1000) if queue.encode() in message]
    if stranded:
        client.hdel("unacked", *stranded)
        client.zrem("unacked_index", *stranded)
    for binding in client.scan_iter(match="_kombu.binding.*", count=1000):
        if client.type(binding) == b"set":
            members = [member for member in client.smembers(binding) if queue.encode() in member]
            if members:
                client.srem(binding, *members)


@pytest.fixture(scope="module")
def worker_smtp(integration_services):
    server = WorkerSmtp(port=_free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker_env(integration_services, django_db_setup, django_db_blocker, worker_smtp, tmp_path_factory) -> dict:
    """The environment of a worker process: production settings on the test database and SMTP server."""
    with django_db_blocker.unblock():
        database_url = _database_url_for_test_db()
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "EMAIL_", "CELERY_", "NPS_", "DATABASE_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="nps_app.settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=_broker_url(),
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(worker_smtp.port),
        EMAIL_USE_TLS="0",
        EMAIL_TIMEOUT="5",
        SITE_URL=WORKER_SITE_URL,
        NPS_VAR_DIR=str(tmp_path_factory.mktemp("worker-var")),
        # Production settings, as a deployed worker runs them.
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="surveys.example.com",
        PYTHONUNBUFFERED="1",
    )
    return env


def _broker_url() -> str:
    broker_url = celery_app.conf.broker_url
    assert broker_url.startswith(("redis://", "rediss://")), broker_url
    return broker_url


@pytest.fixture
def broker(integration_services):
    """A client on the Celery broker's Redis, to look at queues and keys the way the workers see them."""
    client = redis.Redis.from_url(_broker_url())
    yield client
    client.close()


@pytest.fixture(scope="module")
def celery_worker_process(worker_env):
    """One worker for the module; it reads and writes the pytest-django test database."""
    queue = f"it-{secrets.token_hex(6)}"
    broker = redis.Redis.from_url(_broker_url())
    _delete_queue_keys(broker, queue)
    log_path = Path(worker_env["NPS_VAR_DIR"]) / f"celery-worker-{queue}.log"
    worker = CeleryWorker(queue=queue, env=worker_env, log_path=log_path)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        _delete_queue_keys(broker, queue)
        broker.close()


@pytest.fixture
def celery_worker(celery_worker_process, worker_smtp):
    """The running worker, with this process publishing to its queue instead of running tasks inline."""
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_default_queue
    conf.task_always_eager = False
    conf.task_default_queue = celery_worker_process.queue
    worker_smtp.start()
    try:
        yield celery_worker_process
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        celery_worker_process.wait_idle()
        worker_smtp.stop()
        worker_smtp.handler.messages.clear()


class WorkerPool:
    """Workers a test starts, kills and restarts itself, all on one queue of the test's own."""

    def __init__(self, *, env: dict):
        self.env = env
        self.queue = f"it-{secrets.token_hex(6)}"
        self.workers: list[CeleryWorker] = []

    def start(self) -> CeleryWorker:
        log_path = Path(self.env["NPS_VAR_DIR"]) / f"celery-worker-{self.queue}-{len(self.workers) + 1}.log"
        # What a worker publishes itself (a dispatch's or a sweep's tasks) goes to this queue too.
        env = {**self.env, "CELERY_TASK_DEFAULT_QUEUE": self.queue}
        worker = CeleryWorker(queue=self.queue, env=env, log_path=log_path)
        self.workers.append(worker)
        worker.wait_ready()
        return worker

    def log_tail(self, chars: int = 20_000) -> str:
        return "\n".join(f"--- worker {n} ---\n{worker.log()[-chars:]}" for n, worker in enumerate(self.workers, 1))


@pytest.fixture
def celery_workers(worker_env, worker_smtp):
    """A `WorkerPool`: no worker runs until the test starts one; this process publishes to its queue."""
    pool = WorkerPool(env=worker_env)
    broker = redis.Redis.from_url(_broker_url())
    conf = celery_app.conf
    saved = conf.task_always_eager, conf.task_default_queue
    conf.task_always_eager = False
    conf.task_default_queue = pool.queue
    worker_smtp.start()
    try:
        yield pool
    finally:
        conf.task_always_eager, conf.task_default_queue = saved
        for worker in pool.workers:
            worker.wait_idle()
            worker.stop()
        _delete_queue_keys(broker, pool.queue)
        broker.close()
        worker_smtp.stop()
        worker_smtp.handler.messages.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    worker = item.funcargs.get("celery_worker") if hasattr(item, "funcargs") else None
    if report.failed and worker is not None:
        report.sections.append(("Celery worker log", worker.log()))
    pool = item.funcargs.get("celery_workers") if hasattr(item, "funcargs") else None
    if report.failed and pool is not None:
        report.sections.append(("Celery worker logs (tails)", pool.log_tail()))
