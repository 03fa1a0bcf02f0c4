"""What the benchmark scripts share: the machine they ran on, their own PostgreSQL database, an SMTP sink.

The scripts run as `python bench/X.py`, which puts bench/ first on the import
path; each swaps it for the project root before importing this module as
`bench._common` (bench/http.py shares its name with the standard library's
`http` package).
"""

import os
import platform
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


def machine() -> str:
    """CPU count and model, memory, operating system and Python, as Linux reports them."""
    model = platform.processor() or "unknown CPU"
    memory = ""
    try:
        model = next(
            (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")),
            model,
        )
        memory_kib = next(
            int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f", {memory_kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}){memory}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def bench_database_url(name: str) -> str:
    """DATABASE_URL (PostgreSQL) pointed at the benchmark's own database `name`."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base.startswith(("postgres://", "postgresql://")):
        sys.exit(f"bench/{Path(sys.argv[0]).name} needs DATABASE_URL pointing at PostgreSQL.")
    return urlunsplit(urlsplit(base)._replace(path="/" + name))


def recreate_database(url: str) -> None:
    """Drop the database of `url` (whoever is still connected to it) and create it empty."""
    import psycopg2
    from psycopg2 import sql

    name = sql.Identifier(urlsplit(url).path.lstrip("/"))
    admin = psycopg2.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        # FORCE: a server or worker left over from an interrupted run must not keep the drop waiting.
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(name))
    admin.close()


# --- The SMTP sink -------------------------------------------------------------------------


class SinkHandler:
    """Counts messages and the connections that greeted it; keeps no content."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = 0
        self.connections = 0

    def reset(self) -> None:
        with self.lock:
            self.messages = 0
            self.connections = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        return f"250 {server.hostname}"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages += 1
        return "250 Message accepted for delivery"


def free_port() -> int:
    """A localhost TCP port nobody listens on (port=0 would not tell a server's caller the port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sink():
    """An aiosmtpd server on a free localhost port, in a thread: (controller, handler, port)."""
    from aiosmtpd.controller import Controller

    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, handler, port


# --- The summary make bench prints -----------------------------------------------------------

SUMMARY_PREFIX = "summary: "


def summary(figure: str, target: str, met: bool) -> None:
    """One line bench/run.py gathers into its closing table: this run's headline figure against its target."""
    print(f"{SUMMARY_PREFIX}{Path(sys.argv[0]).name} | {figure} | {target} | {'met' if met else 'MISSED'}", flush=True)
