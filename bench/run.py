"""`make bench`: every benchmark in turn, each with its defaults, then a table of their headline
figures against their targets (the `summary:` line each prints).

    DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://... .venv/bin/python bench/run.py

1. bench/dashboard.py         the dashboard at 10,000 and 1,000,000 responses (about 5 minutes)
2. bench/send_invitations.py  10,000 invitations through a real Celery worker vs plain smtplib
3. bench/import_customers.py  import_customers with 100,000 and 10,000 rows
4. bench/http.py              survey page and answer over HTTP (gunicorn, wrk) vs read/write baselines
                              (about 4 minutes; `bench/http.py --soak 600` adds the 10-minute memory soak)

Each needs PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres)
and creates its own database; send_invitations also needs Redis (CELERY_BROKER_URL,
default redis://127.0.0.1:6379/0), http needs Redis at 127.0.0.1:6379 (database 15) and wrk.
"""

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
# As the benchmarks do: the project root on the import path instead of bench/ (bench/http.py would hide `http`).
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path[0] = str(BENCH.parent)

from bench._common import SUMMARY_PREFIX  # noqa: E402

BENCHMARKS = ["dashboard.py", "send_invitations.py", "import_customers.py", "http.py"]


def main() -> int:
    failed, summaries = [], []
    for name in BENCHMARKS:
        print(f"\n=== bench/{name} ===", flush=True)
        began = time.monotonic()
        # Shown as it comes, and each benchmark's summary line kept for the table at the end.
        process = subprocess.Popen([sys.executable, str(BENCH / name)], cwd=BENCH.parent, stdout=subprocess.PIPE,
                                   text=True, bufsize=1)
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(SUMMARY_PREFIX):
                summaries.append(line[len(SUMMARY_PREFIX):].rstrip("\n").split(" | "))
        status = process.wait()
        print(f"=== bench/{name}: {'done' if status == 0 else f'FAILED (exit status {status})'} "
              f"in {time.monotonic() - began:.0f} s ===", flush=True)
        if status != 0:
            failed.append(name)
    print_table(summaries)
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    return 1 if failed else 0


def print_table(rows: list[list[str]]) -> None:
    header = ["benchmark", "figure", "target", "status"]
    rows = [row for row in rows if len(row) == len(header)]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    print("\nSummary")
    for row in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


if __name__ == "__main__":
    sys.exit(main())
