"""Benchmark: N invitations sent end to end by a real Celery worker, next to plain smtplib.

The product's way: invitations are created with `invitation_request(enqueue=False)`
(policy checks included, not timed), published with `invitations_enqueue` in
batches of NPS_SEND_BATCH_SIZE ids per Redis message, and a `celery worker`
subprocess (prefork, 2 processes) claims, renders and sends them, one SMTP
connection per batch. The clock runs from the first publish until the SMTP
sink has received all N messages.

The baseline, in the same run and to the same sink: the same messages,
rendered beforehand with `surveys.mail.messages.invitation_messages`, sent with plain
`smtplib` over ONE connection by a separate process (so the sender does not
share the sink's interpreter lock, as the worker does not either).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/send_invitations.py [--n 10000]

It creates (and drops at the start) its own database `lp_bench_send`, and
uses a Redis queue of its own. When the product misses the target (or with
`--profile`) it says where the time goes: py-spy samples the worker's
processes while they send more invitations (if py-spy is installed next to
this Python), and cProfile times the batch sender in this process.
"""

import argparse
import math
import os
import pickle
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# `python bench/X.py` puts bench/ first on the import path: put the project root there instead, so that
# bench._common and the project import, and bench/http.py does not hide the standard library's `http`.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench._common import (
    SinkHandler,
    bench_database_url,
    free_port,
    machine,
    recreate_database,
    start_sink,
    summary,
)

BENCH_DB = "lp_bench_send"
TARGET_RATIO = 0.5
SITE_URL = "https://surveys.example.com"


def broker_url() -> str:
    url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    if not url.startswith(("redis://", "rediss://")):
        sys.exit("bench/send_invitations.py needs CELERY_BROKER_URL pointing at Redis (or unset).")
    return url


# --- The SMTP sink ---------------------------------------------------------------------


def wait_for_messages(handler: SinkHandler, count: int, *, timeout: float, worker=None) -> float:
    """Block until the sink has `count` messages; returns the time.perf_counter() when it had."""
    deadline = time.monotonic() + timeout
    while True:
        with handler.lock:
            if handler.messages >= count:
                return time.perf_counter()
        if worker is not None and worker.poll() is not None:
            sys.exit(f"The Celery worker exited with {worker.returncode}.")
        if time.monotonic() > deadline:
            sys.exit(f"Only {handler.messages:,} of {count:,} messages arrived within {timeout:.0f} s.")
        time.sleep(0.005)


# --- The baseline sender (a child process) ------------------------------------------------


def baseline_send(path: str, port: int) -> None:
    """Send pre-rendered messages over one SMTP connection; print the seconds it took."""
    import smtplib

    with open(path, "rb") as file:
        envelopes = pickle.load(file)
    began, cpu = time.perf_counter(), time.process_time()
    connection = smtplib.SMTP("127.0.0.1", port)
    for from_address, recipients, raw in envelopes:
        connection.sendmail(from_address, recipients, raw)
    connection.quit()
    print(f"seconds={time.perf_counter() - began}")
    print(f"cpu={time.process_time() - cpu}")


# --- The Celery worker --------------------------------------------------------------------


def start_worker(*, queue: str, env: dict, log_path: Path) -> subprocess.Popen:
    log_file = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "nps_app", "worker",
            "--pool=prefork", "--concurrency=2",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--queues", queue, "--hostname", f"{queue}@%h", "--loglevel=INFO",
        ],
        cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )


def wait_worker_ready(worker: subprocess.Popen, queue: str, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(rf"{re.escape(queue)}@\S+ ready\.", log_path.read_text(errors="replace")):
            return
        if worker.poll() is not None:
            sys.exit(f"The Celery worker exited with {worker.returncode}:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.1)
    sys.exit(f"The Celery worker was not ready within {timeout} s:\n{log_path.read_text(errors='replace')}")


def stop_worker(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait(timeout=10)


def delete_queue_keys(url: str, queue: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"*{queue}*", count=1000))
    if keys:
        client.delete(*keys)
    for binding in client.scan_iter(match="_kombu.binding.*", count=1000):
        if client.type(binding) == b"set":
            members = [member for member in client.smembers(binding) if queue.encode() in member]
            if members:
                client.srem(binding, *members)
    client.close()


# --- CPU accounting ----------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(*, process_group: int | None = None, command: str | None = None) -> float:
    """User + system CPU of the processes in a process group or with a command name, and of the children they reaped.

    Reaped children count because Celery closes its database connection after every
    task: the PostgreSQL backend's CPU then moves to the postmaster's account.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        name, fields = raw[raw.index("(") + 1 : raw.rindex(")")], raw.rsplit(")", 1)[1].split()
        if (process_group is not None and int(fields[2]) == process_group) or name == command:
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS


# --- The run --------------------------------------------------------------------------------


LOCALES = ["", "", "", "", "", "", "es", "es", "de", "en"]  # mostly the default language, some Spanish and German


def create_invitations(n: int, *, prefix: str = "customer") -> list[int]:
    from surveys.invitations import services
    from surveys.models import Customer, Invitation, Touchpoint

    touchpoint, _ = Touchpoint.objects.get_or_create(slug="delivery", defaults={"name": "Home delivery"})
    Customer.objects.bulk_create(
        [Customer(email=f"{prefix}{i}@example.com", name=f"Customer {i}", locale=LOCALES[i % len(LOCALES)])
         for i in range(n)],
        batch_size=5000,
    )
    ids = []
    for customer in Customer.objects.filter(email__startswith=prefix).order_by("pk").iterator(chunk_size=2000):
        outcome = services.invitation_request(
            touchpoint=touchpoint, customer=customer, source=Invitation.Source.IMPORT, enqueue=False
        )
        assert not outcome.skipped, outcome.skip_reason
        ids.append(outcome.invitation.pk)
    return ids


def render_envelopes() -> list[tuple[str, list[str], bytes]]:
    """The same messages the worker sent, as the bytes Django's SMTP backend would hand to smtplib."""
    from django.core.mail.message import sanitize_address

    from surveys.mail import messages as emails
    from surveys.models import Invitation

    envelopes = []
    invitations = list(Invitation.objects.select_related("customer", "touchpoint").order_by("pk"))
    for message in emails.invitation_messages(invitations):
        envelopes.append(
            (
                sanitize_address(message.from_email, message.encoding or "utf-8"),
                [sanitize_address(address, message.encoding or "utf-8") for address in message.recipients()],
                message.message().as_bytes(linesep="\r\n"),
            )
        )
    return envelopes


def profile_one_batch(size: int) -> None:
    """cProfile `invitations_send_batch` on a fresh batch in this process, and say where the time goes.

    The SMTP sink for this runs in a process of its own (as it is for the worker), so
    waiting for its replies is not inflated by sharing this interpreter.
    """
    import cProfile
    import pstats
    import socket

    from django.conf import settings

    from surveys.invitations import services
    from surveys.models import Customer, Invitation, Touchpoint

    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        settings.EMAIL_PORT = port
        touchpoint = Touchpoint.objects.get(slug="delivery")
        Customer.objects.bulk_create(
            [Customer(email=f"profile{i}@example.com", name=f"Profile {i}", locale=LOCALES[i % len(LOCALES)])
             for i in range(size * 5)]
        )
        ids = [
            services.invitation_request(touchpoint=touchpoint, customer=customer, enqueue=False).invitation.pk
            for customer in Customer.objects.filter(email__startswith="profile")
        ]
        services.invitations_send_batch(invitation_ids=ids[:size])  # warm up: templates, translations, connection
        plain, profiled = ids[size : size * 3], ids[size * 3 :]
        began, cpu = time.perf_counter(), time.process_time()
        for first in range(0, len(plain), size):
            services.invitations_send_batch(invitation_ids=plain[first : first + size])
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        profiler = cProfile.Profile()
        profiler.enable()
        for first in range(0, len(profiled), size):
            services.invitations_send_batch(invitation_ids=profiled[first : first + size])
        profiler.disable()
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    assert Invitation.objects.filter(pk__in=ids, status=Invitation.Status.SENT).count() == len(ids)
    stats = pstats.Stats(profiler)

    def cumulative(path_end: str, function: str) -> float:
        return sum(
            entry[3] for (path, _, name), entry in stats.stats.items() if path.endswith(path_end) and name == function
        )

    def own(function: str) -> float:
        return sum(entry[2] for (path, _, name), entry in stats.stats.items() if name == function)

    total = cumulative("surveys/invitations/services.py", "invitations_send_batch")
    render = cumulative("surveys/mail/messages.py", "invitation_messages")
    mime = sum(
        cumulative(path, function)
        for path in ("django/core/mail/message.py", "surveys/mail/mime.py")
        for function in ("message", "as_bytes")
    )
    smtp = cumulative("smtplib.py", "sendmail")
    database = own("<method 'execute' of 'psycopg2.extensions.cursor' objects>")
    print(f"\ninvitations_send_batch in this process, batches of {size}, sink in its own process: "
          f"{wall / len(plain) * 1000:.2f} ms per message, of which {cpu / len(plain) * 1000:.2f} ms CPU "
          f"({len(plain)} invitations). Under cProfile ({len(profiled)} more), per message:")
    for label, seconds in (
        ("rendering the templates (emails.invitation_messages)", render),
        ("building the MIME message and its bytes", mime),
        ("smtplib sendmail, waiting for the sink included", smtp),
        ("PostgreSQL statements, waiting included", database),
        ("everything else", total - render - mime - smtp - database),
    ):
        print(f"  {label:52}{seconds / len(profiled) * 1000:>7.2f} ms {seconds / total:>6.0%}")
    print("Top functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


PY_SPY = Path(sys.executable).with_name("py-spy")
PROFILE_CATEGORIES = [  # (what, frame markers), the frame nearest the leaf decides
    ("rendering the templates (emails.invitation_messages)", ("invitation_messages (surveys/mail/messages.py",)),
    ("building the MIME message and its bytes", ("django/core/mail/message.py", "surveys/mail/mime.py")),
    ("smtplib: sending and reading the sink's replies", ("smtplib.py",)),
    ("PostgreSQL: psycopg2 and the ORM", ("django/db/",)),
    ("Redis / Celery messaging (kombu)", ("kombu/",)),
]


def profile_worker(*, n: int, env: dict, broker: str, var_dir: Path, sink: SinkHandler) -> None:
    """Sample the worker's processes with py-spy while they send n more invitations; say where their CPU goes.

    Only samples holding the GIL count (--gil): Python at work, not waiting for PostgreSQL or the sink.
    """
    from nps_app import celery_app
    from surveys.invitations import services

    ids = create_invitations(n, prefix="spy")
    queue = f"bench-{secrets.token_hex(6)}"
    log_path = var_dir / f"celery-worker-{queue}.log"
    raw_path = var_dir / "py-spy.txt"
    worker = start_worker(queue=queue, env=env, log_path=log_path)
    spy = None
    try:
        wait_worker_ready(worker, queue, log_path)
        spy = subprocess.Popen(
            [str(PY_SPY), "record", "--pid", str(worker.pid), "--subprocesses", "--nonblocking", "--gil", "--rate", "250",
             "--format", "raw", "--output", str(raw_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        time.sleep(2)  # let it attach to the pool processes
        celery_app.conf.task_default_queue = queue
        sink.reset()
        services.invitations_enqueue(ids)
        wait_for_messages(sink, len(ids), timeout=max(300, len(ids) / 5), worker=worker)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            _, errors = spy.communicate(timeout=60)
        stop_worker(worker)
        delete_queue_keys(broker, queue)
    if not raw_path.exists():
        print(f"\npy-spy wrote no profile ({errors.decode(errors='replace').strip()[-500:]})")
        return
    samples: dict[str, int] = {}
    functions: dict[str, int] = {}
    for line in raw_path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        category = "the rest of the worker (Celery, Django, Python)"
        for frame in reversed(frames):
            matched = [what for what, markers in PROFILE_CATEGORIES if any(marker in frame for marker in markers)]
            if matched:
                category = matched[0]
                break
        samples[category] = samples.get(category, 0) + int(count)
        functions[frames[-1]] = functions.get(frames[-1], 0) + int(count)
    total = sum(samples.values()) or 1
    print(f"\nWhere the worker's CPU goes: py-spy --gil, {total:,} samples of its processes running Python "
          f"while they sent {len(ids):,} more invitations (time waiting on sockets does not count):")
    for what, _ in [*PROFILE_CATEGORIES, ("the rest of the worker (Celery, Django, Python)", "")]:
        print(f"  {what:52}{samples.get(what, 0) / total:>6.0%}")
    print("  busiest functions (own samples):")
    for frame, count in sorted(functions.items(), key=lambda item: -item[1])[:8]:
        print(f"    {count / total:>5.1%}  {frame[:110]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000, help="invitations to send (default 10,000)")
    parser.add_argument("--profile", action="store_true", help="also profile one batch with cProfile")
    parser.add_argument("--baseline-send", nargs=2, metavar=("FILE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_send:
        baseline_send(args.baseline_send[0], int(args.baseline_send[1]))
        return

    load_at_start = os.getloadavg()[0]
    url = bench_database_url(BENCH_DB)
    broker = broker_url()
    recreate_database(url)
    controller, sink, port = start_sink()
    var_dir = Path(tempfile.mkdtemp(prefix="lp-bench-send-"))
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "EMAIL_", "CELERY_", "NPS_", "DATABASE_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="nps_app.settings",
        DATABASE_URL=url,
        CELERY_BROKER_URL=broker,
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        EMAIL_USE_TLS="0",
        SITE_URL=SITE_URL,
        NPS_VAR_DIR=str(var_dir),
        NPS_COMPANY_NAME="Acme",
        # Production settings, as a deployed worker runs them.
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="surveys.example.com",
        PYTHONUNBUFFERED="1",
    )
    for key in ("NPS_SEND_BATCH_SIZE", "NPS_SEND_RATE_PER_MINUTE"):
        if key in os.environ:
            env[key] = os.environ[key]
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.clear()
    os.environ.update(env)
    import django

    django.setup()
    import logging

    from django.conf import settings

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter

    from nps_app import celery_app
    from surveys.invitations import services
    from surveys.models import Invitation

    print(f"Machine: {machine()}; PostgreSQL at {urlsplit(url).hostname}, Redis at {urlsplit(broker).hostname}, "
          f"aiosmtpd sink in a thread; worker: prefork, 2 processes; batch size {settings.NPS_SEND_BATCH_SIZE}, "
          f"rate cap {settings.NPS_SEND_RATE_PER_MINUTE or 'none'}")

    began = time.perf_counter()
    ids = create_invitations(args.n)
    print(f"Created {len(ids):,} invitations with invitation_request(enqueue=False) in {time.perf_counter() - began:.1f} s (not timed below)")

    # The baseline's messages, rendered before any is sent (the same bytes the worker builds).
    began = time.perf_counter()
    envelopes = render_envelopes()
    render_seconds = time.perf_counter() - began
    size_kb = sum(len(raw) for _, _, raw in envelopes) / len(envelopes) / 1024
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as file:
        pickle.dump(envelopes, file)

    def run_baseline() -> dict:
        sink.reset()
        sink_cpu = time.process_time()
        out = subprocess.run(
            [sys.executable, __file__, "--baseline-send", file.name, str(port)],
            cwd=ROOT, env=env, check=True, capture_output=True, text=True,
        )
        figures = {key: float(value) for key, value in (line.split("=", 1) for line in out.stdout.split())}
        wait_for_messages(sink, len(envelopes), timeout=10)
        with sink.lock:
            figures["connections"] = sink.connections
        figures["sink_cpu"] = time.process_time() - sink_cpu
        return figures

    # Other work on the machine comes and goes: the baseline runs before and after the product.
    baselines = [run_baseline()]

    queue = f"bench-{secrets.token_hex(6)}"
    log_path = var_dir / f"celery-worker-{queue}.log"
    worker = start_worker(queue=queue, env=env, log_path=log_path)
    try:
        wait_worker_ready(worker, queue, log_path)
        celery_app.conf.task_default_queue = queue
        sink.reset()
        load_before_product = os.getloadavg()[0]
        cpu_before = time.process_time(), cpu_seconds(process_group=worker.pid), cpu_seconds(command="postgres")
        started = time.perf_counter()
        batches = services.invitations_enqueue(ids)
        enqueued = time.perf_counter()
        finished = wait_for_messages(sink, len(ids), timeout=max(300, len(ids) / 5), worker=worker)
        product_seconds = finished - started
        cpu_after = time.process_time(), cpu_seconds(process_group=worker.pid), cpu_seconds(command="postgres")
        load_after_product = os.getloadavg()[0]
        product_cpu = [after - before for before, after in zip(cpu_before, cpu_after)]
        with sink.lock:
            product_connections = sink.connections
        sent = Invitation.objects.filter(status=Invitation.Status.SENT).count()
        worker_log = log_path.read_text()
        received = len(re.findall(r"invitations_send_batch_task\[[0-9a-f-]+\] received", worker_log))
        batch_seconds = sorted(
            float(seconds)
            for seconds in re.findall(r"invitations_send_batch_task\[[0-9a-f-]+\] succeeded in ([\d.]+)s", worker_log)
        )
    finally:
        stop_worker(worker)
        delete_queue_keys(broker, queue)
    assert sent == len(ids), f"{sent:,} invitations are marked sent, expected {len(ids):,}"
    baselines.append(run_baseline())
    os.unlink(file.name)

    n = len(ids)
    product_rate = n / product_seconds
    baseline_seconds = sum(baseline["seconds"] for baseline in baselines) / len(baselines)
    baseline_rate = n / baseline_seconds
    ratio = product_rate / baseline_rate
    print()
    print(f"{n:,} invitations, {size_kb:.1f} KiB each (HTML and text parts)")
    print(f"{'':48}{'seconds':>9}{'msg/s':>9}{'SMTP conn.':>12}")
    print(f"{'product: enqueue -> worker -> SMTP sink':48}{product_seconds:>9.2f}{product_rate:>9.0f}{product_connections:>12,}")
    for when, baseline in zip(("before", "after"), baselines):
        label = f"baseline {when}: smtplib, pre-rendered, 1 conn."
        print(f"{label:48}{baseline['seconds']:>9.2f}{n / baseline['seconds']:>9.0f}{int(baseline['connections']):>12,}")
    print(f"{'(rendering them for the baseline, 1 process)':48}{render_seconds:>9.2f}{n / render_seconds:>9.0f}")
    print(f"Product publish: {batches} broker messages in {(enqueued - started) * 1000:.0f} ms "
          f"(ceil({n:,}/{settings.NPS_SEND_BATCH_SIZE}) = {math.ceil(n / settings.NPS_SEND_BATCH_SIZE)}); "
          f"the worker received {received}")
    if batch_seconds:
        median = batch_seconds[len(batch_seconds) // 2]
        print(f"Worker: a batch of {settings.NPS_SEND_BATCH_SIZE} took {median:.2f} s (median; slowest {batch_seconds[-1]:.2f} s), "
              f"{median / settings.NPS_SEND_BATCH_SIZE * 1000:.1f} ms per message in each of the 2 processes")
    ms = 1000 / n
    print(f"CPU per message, product: worker {product_cpu[1] * ms:.2f} ms, SMTP sink {product_cpu[0] * ms:.2f} ms, "
          f"PostgreSQL server {product_cpu[2] * ms:.2f} ms (all of it, other databases too)")
    print(f"CPU per message, baseline: SMTP sink {baselines[-1]['sink_cpu'] * ms:.2f} ms, "
          f"smtplib sender {baselines[-1]['cpu'] * ms:.2f} ms")
    print(f"Load average (1 min): {load_at_start:.2f} at the start, {load_before_product:.2f} and "
          f"{load_after_product:.2f} around the product run, {os.getloadavg()[0]:.2f} at the end "
          f"(other work on the machine slows whichever side it meets)")
    verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
    print(f"product / baseline (mean of the two runs): {ratio:.2f}x ({verdict} the target of >= {TARGET_RATIO}x)")
    summary(f"{n:,} invitations sent at {ratio:.2f}x plain smtplib's rate", f">= {TARGET_RATIO}x",
                   ratio >= TARGET_RATIO)

    if args.profile or ratio < TARGET_RATIO:
        if PY_SPY.exists():
            profile_worker(n=min(n, 3000), env=env, broker=broker, var_dir=var_dir, sink=sink)
        profile_one_batch(settings.NPS_SEND_BATCH_SIZE)
    controller.stop()


if __name__ == "__main__":
    main()
