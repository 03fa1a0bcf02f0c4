"""`python manage.py import_customers FILE.csv --touchpoint SLUG [--send] [--dry-run]`."""

import os
import stat
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from surveys.imports import customers as imports
from surveys.touchpoints.selectors import touchpoint_for_slug

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Import customers from a CSV file with the columns email,name[,external_id,phone,locale] "
        "(header row; comma or semicolon; UTF-8). Bad rows are reported as 'line N: reason' on "
        "standard error and the exit status is 1; good rows are imported. On a terminal a progress "
        "bar shows how far the file has been read."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The CSV file ('-' reads standard input).")
        parser.add_argument("--touchpoint", required=True, help="Slug of the touchpoint the survey is about.")
        parser.add_argument("--send", action="store_true", help="Invite each imported customer (policy applies).")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")

    def handle(self, *args, file: str, touchpoint: str, send: bool, dry_run: bool, **options):
        touchpoint_obj = touchpoint_for_slug(slug=touchpoint)
        if touchpoint_obj is None:
            raise CommandError(f"No touchpoint has the slug {touchpoint!r}.")
        show_progress = self.stderr.isatty() if hasattr(self.stderr, "isatty") else False
        try:
            if file == "-":
                summary = self._run(sys.stdin.buffer, touchpoint_obj, send, dry_run, show_progress)
            else:
                with open(file, "rb") as binary:
                    summary = self._run(binary, touchpoint_obj, send, dry_run, show_progress)
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except imports.ImportFileError as exc:
            raise CommandError(str(exc)) from None
        if show_progress:
            self.stderr.write("")
        self.stdout.write(summary.as_text())
        if summary.errors:
            sys.exit(1)

    def _run(self, binary, touchpoint, send, dry_run, show_progress):
        progress = _ProgressBar(binary, self.stderr) if show_progress else None

        def report(message: str) -> None:
            if progress:
                progress.clear()  # the bar's line gives way to the report, and is drawn again below it
            self.stderr.write(message)

        return imports.customers_import(
            binary=binary,
            touchpoint=touchpoint,
            send=send,
            dry_run=dry_run,
            on_error=report,
            on_progress=progress.show if progress else None,
        )


class _ProgressBar:
    """`[#####-----]  42%  420,000 rows  5,000 rows/s` on one terminal line, redrawn after each chunk.

    The share is of the file's bytes read so far (a pipe has no size: then rows and speed only).
    """

    def __init__(self, binary, out):
        self.binary = binary
        self.out = out
        self.started = time.monotonic()
        self.size = None
        try:
            status = os.fstat(binary.fileno())
            if stat.S_ISREG(status.st_mode) and status.st_size:
                self.size = status.st_size
        except (AttributeError, OSError, ValueError):
            pass
        self.width = 0

    def show(self, rows: int) -> None:
        speed = rows / max(time.monotonic() - self.started, 1e-6)
        text = f"{rows:,} rows…  {speed:,.0f} rows/s"
        if self.size:
            try:
                share = min(self.binary.tell() / self.size, 1.0)
            except (OSError, ValueError):
                share = 0.0
            done = round(share * BAR_WIDTH)
            text = f"[{'#' * done}{'-' * (BAR_WIDTH - done)}] {share:4.0%}  {text}"
        line = f"  {text}"
        self.out.write(f"\r{line.ljust(self.width)}", ending="")
        self.width = len(line)
        self.out.flush()

    def clear(self) -> None:
        if self.width:
            self.out.write("\r" + " " * self.width + "\r", ending="")
            self.width = 0
