"""Benchmark: `manage.py import_customers` on generated CSV files of 10,000 and 100,000 rows.

Prints rows per second and the peak memory (maximum resident set size) of the
import process for each size, then how much the peak grew per added row, so
one run shows whether memory stays flat as the file grows tenfold. Each size is
imported into a freshly created database. `--rows 1000000` adds a third size.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/import_customers.py [--rows 1000000]

It creates (and drops at the start of each size) its own database
`lp_bench_import`. With `--send` every imported customer is also invited (the
broker is Celery's filesystem transport in a temporary folder; nothing is
emailed, as no worker runs).
"""

import argparse
import csv
import os
import resource
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

from bench._common import bench_database_url, machine, recreate_database, summary

BENCH_DB = "lp_bench_import"
SMALL_ROWS = 10_000
MEDIUM_ROWS = 100_000
LOCALES = ["", "en", "es", "de", "", "", "es", "", "de", ""]


def write_csv(path: Path, rows: int) -> None:
    """Customers as a CRM would export them: every column, a few accents, some without phone or locale."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "external_id", "phone", "locale"])
        for i in range(rows):
            writer.writerow([
                f"customer{i}@example.com",
                f"Zoë Müller-García {i}" if i % 7 == 0 else f"Customer {i}",
                f"CRM-{i:08d}",
                f"+34 600 {i % 1000:03d} {i % 997:03d}" if i % 3 else "",
                LOCALES[i % len(LOCALES)],
            ])


def measure_import(path: Path, *, env: dict, send: bool) -> None:
    """In a fresh process (so its only child is the import): run the command, print seconds and peak RSS."""
    command = [sys.executable, "manage.py", "import_customers", str(path), "--touchpoint", "delivery"]
    if send:
        command.append("--send")
    began = time.perf_counter()
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        sys.exit(f"import_customers exited with {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}")
    # On Linux ru_maxrss is in KiB: the largest resident set any waited-for child reached.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"seconds={seconds}")
    print(f"peak_kib={peak_kib}")
    print(f"summary={result.stdout.strip().splitlines()[-1]}")


def run_size(rows: int, *, url: str, env: dict, folder: Path, send: bool) -> dict:
    recreate_database(url)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c",
         "from surveys.models import Touchpoint; Touchpoint.objects.create(name='Home delivery', slug='delivery')"],
        cwd=ROOT, env=env, check=True,
    )
    path = folder / f"customers-{rows}.csv"
    write_csv(path, rows)
    measure = [sys.executable, __file__, "--measure", str(path)] + (["--send"] if send else [])
    out = subprocess.run(measure, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    figures = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    return {
        "rows": rows,
        "bytes": path.stat().st_size,
        "seconds": float(figures["seconds"]),
        "peak_mib": int(figures["peak_kib"]) / 1024,
        "summary": figures["summary"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=MEDIUM_ROWS,
                        help="rows of the largest file (default 100,000; above that, 100,000 is measured too)")
    parser.add_argument("--small", type=int, default=SMALL_ROWS, help="rows of the smallest file (default 10,000)")
    parser.add_argument("--send", action="store_true", help="also invite every imported customer")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    url = bench_database_url(BENCH_DB)
    if args.measure:
        measure_import(Path(args.measure), env=os.environ.copy(), send=args.send)
        return

    load_at_start = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="lp-bench-import-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "CELERY_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="nps_app.settings",
        DATABASE_URL=url,
        DEBUG="0",  # as in production: no query log growing in memory
        SECRET_KEY="bench-import-" + "x" * 20 + "abcdefghijklmnopqrstuvwxyz0123456789",
        ALLOWED_HOSTS="localhost",
        NPS_VAR_DIR=str(folder / "var"),
        CELERY_BROKER_URL="filesystem://",
        EMAIL_BACKEND="surveys.mail.files.EmlFileBackend",  # production settings want it named
    )
    sizes = sorted({args.small, min(args.rows, MEDIUM_ROWS), args.rows})
    print(f"Machine: {machine()}, PostgreSQL at {urlsplit(url).hostname}; "
          f"import_customers {'with' if args.send else 'without'} --send, DEBUG off; sizes {', '.join(f'{n:,}' for n in sizes)}")
    results = []
    for rows in sizes:
        results.append(run_size(rows, url=url, env=env, folder=folder, send=args.send))
        (folder / f"customers-{rows}.csv").unlink()

    print()
    print(f"{'rows':>10}{'file MiB':>10}{'seconds':>10}{'rows/s':>10}{'peak RSS MiB':>14}{'growth/row':>12}")
    smallest = results[0]
    for previous, result in zip([None, *results], results):
        growth = ""
        if previous is not None:
            per_row = (result["peak_mib"] - previous["peak_mib"]) * 2**20 / (result["rows"] - previous["rows"])
            growth = f"{per_row:+.1f} B"
        print(f"{result['rows']:>10,}{result['bytes'] / 2**20:>10.1f}{result['seconds']:>10.1f}"
              f"{result['rows'] / result['seconds']:>10,.0f}{result['peak_mib']:>14.1f}{growth:>12}")
    largest = results[-1]
    print(f"Summary of the {largest['rows']:,}-row import: {largest['summary']}")
    for result in results[1:]:
        print(f"Peak memory at {result['rows']:,} rows / at {smallest['rows']:,} rows: "
              f"{result['peak_mib'] / smallest['peak_mib']:.2f}x "
              f"({result['peak_mib'] - smallest['peak_mib']:+.1f} MiB for {result['rows'] - smallest['rows']:,} more rows)")
    print("growth/row: peak RSS added per added row since the size above (flat memory: about 0 bytes; "
          "the importer's scratch SQLite page cache fills up to 4 MiB).")
    print(f"Load average (1 min) at the start and the end: {load_at_start:.2f}, {os.getloadavg()[0]:.2f}")
    print("Seconds include starting Django (about a second).")
    growth = largest["peak_mib"] - smallest["peak_mib"]
    summary(
        f"{largest['rows']:,} rows at {largest['rows'] / largest['seconds']:,.0f} rows/s, peak {largest['peak_mib']:.1f} MiB "
        f"({growth:+.1f} MiB from {smallest['rows']:,} rows)",
        "flat memory (< 8 MiB more; the scratch cache takes up to 4)", growth < 8,
    )


if __name__ == "__main__":
    main()
