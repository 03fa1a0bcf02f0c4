"""`python manage.py import_customers FILE.csv --touchpoint SLUG [--send] [--dry-run]`."""

import sys

from django.core.management.base import BaseCommand, CommandError

from surveys import imports, selectors


class Command(BaseCommand):
    help = (
        "Import customers from a CSV file with the columns email,name[,external_id,phone,locale] "
        "(header row; comma or semicolon; UTF-8). Bad rows are reported as 'line N: reason' on "
        "standard error and the exit status is 1; good rows are imported."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The CSV file ('-' reads standard input).")
        parser.add_argument("--touchpoint", required=True, help="Slug of the touchpoint the survey is about.")
        parser.add_argument("--send", action="store_true", help="Invite each imported customer (policy applies).")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")

    def handle(self, *args, file: str, touchpoint: str, send: bool, dry_run: bool, **options):
        touchpoint_obj = selectors.touchpoint_for_slug(slug=touchpoint)
        if touchpoint_obj is None:
            raise CommandError(f"No touchpoint has the slug {touchpoint!r}.")
        show_progress = self.stderr.isatty() if hasattr(self.stderr, "isatty") else False

        def progress(rows: int) -> None:
            if show_progress:
                self.stderr.write(f"\r  {rows:,} rows…", ending="")

        try:
            if file == "-":
                summary = self._run(sys.stdin.buffer, touchpoint_obj, send, dry_run, progress)
            else:
                with open(file, "rb") as binary:
                    summary = self._run(binary, touchpoint_obj, send, dry_run, progress)
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except imports.ImportFileError as exc:
            raise CommandError(str(exc)) from None
        if show_progress:
            self.stderr.write("")
        self.stdout.write(summary.as_text())
        if summary.errors:
            sys.exit(1)

    def _run(self, binary, touchpoint, send, dry_run, progress):
        return imports.customers_import(
            binary=binary,
            touchpoint=touchpoint,
            send=send,
            dry_run=dry_run,
            on_error=lambda message: self.stderr.write(message),
            on_progress=progress,
        )
