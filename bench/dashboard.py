"""Benchmark: the full dashboard page at 10,000 and 1,000,000 responses on PostgreSQL.

Next to it, in the same run and on the same data, the hand-written single SQL
aggregate for the headline NPS (the least any dashboard must do). Prints the
median server time of several requests and the ratios.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/dashboard.py [--large 1000000]

It creates (and drops at the start) its own database `lp_bench_dashboard`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# `python bench/X.py` puts bench/ first on the import path: put the project root there instead, so that
# bench._common and the project import, and bench/http.py does not hide the standard library's `http`.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

from bench._common import bench_database_url, machine, recreate_database, summary

BENCH_DB = "lp_bench_dashboard"


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def median_ms(action, repeat: int) -> float:
    action()  # warm caches and connections
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


def measure(repeat: int) -> dict:
    """Run in a fresh process so Django sees the seeded database."""
    out = subprocess.run(
        [sys.executable, __file__, "--measure", str(repeat)], cwd=ROOT, env=os.environ, check=True,
        capture_output=True, text=True,
    )
    figures = {}
    for line in out.stdout.splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            figures[key] = float(value)
    return figures


def measure_here(repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nps_app.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from surveys.models import Response

    user, _ = User.objects.get_or_create(username="bench", defaults={"is_superuser": True, "is_staff": True})
    client = Client()
    client.force_login(user)

    def page():
        response = client.get("/dashboard/")
        assert response.status_code == 200, response.status_code

    today = timezone.localdate()
    start = timezone.make_aware(timezone.datetime.combine(today - timezone.timedelta(days=89), timezone.datetime.min.time()))

    def single_sql():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COUNT(*) FILTER (WHERE score >= 9), COUNT(*) FILTER (WHERE score <= 6), COUNT(*) "
                "FROM surveys_response WHERE created_at >= %s",
                [start],
            )
            cursor.fetchone()

    print(f"responses={Response.objects.count()}")
    print(f"page_ms={median_ms(page, repeat)}")
    print(f"sql_ms={median_ms(single_sql, repeat)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--measure", type=int)
    args = parser.parse_args()
    if args.measure:
        measure_here(args.measure)
        return

    url = bench_database_url(BENCH_DB)
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "nps_app.settings"}
    os.environ.update(env)
    recreate_database(url)
    manage("migrate", "--noinput", "-v0", env=env)
    print(f"Machine: {machine()}, PostgreSQL at {urlsplit(url).hostname}; 10 touchpoints, two years of answers")

    began = time.monotonic()
    manage("seed_demo", "--responses", str(args.small), "--touchpoints", "10", "--days", "730", env=env)
    print(f"Seeded {args.small:,} responses in {time.monotonic() - began:.0f} s")
    small = measure(args.repeat)

    began = time.monotonic()
    manage("seed_demo", "--responses", str(args.large - args.small), "--touchpoints", "10", "--days", "730",
           "--seed", "8", env=env)
    print(f"Seeded up to {args.large:,} responses in {time.monotonic() - began:.0f} s")
    subprocess.run(["psql", url, "-qc", "VACUUM ANALYZE"], check=False)
    large = measure(args.repeat)

    print()
    print(f"{'':28}{int(small['responses']):>14,}{int(large['responses']):>14,}")
    print(f"{'dashboard page, median ms':28}{small['page_ms']:>14.1f}{large['page_ms']:>14.1f}")
    print(f"{'single SQL NPS, median ms':28}{small['sql_ms']:>14.1f}{large['sql_ms']:>14.1f}")
    print(f"{'page / single SQL':28}{small['page_ms'] / small['sql_ms']:>14.1f}{large['page_ms'] / large['sql_ms']:>14.1f}")
    print(f"page at {int(large['responses']):,} / page at {int(small['responses']):,}: {large['page_ms'] / small['page_ms']:.2f}x "
          f"(target ≤ 2x); page at {int(large['responses']):,}: {large['page_ms']:.0f} ms (target < 300 ms)")
    growth = large["page_ms"] / small["page_ms"]
    summary(
        f"page at {int(large['responses']):,} responses {large['page_ms']:.0f} ms, "
        f"{growth:.2f}x the page at {int(small['responses']):,}",
        "< 300 ms, ≤ 2x", large["page_ms"] < 300 and growth <= 2,
    )


if __name__ == "__main__":
    main()
