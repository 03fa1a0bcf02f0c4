"""`python manage.py import_responses FILE.csv [--touchpoint SLUG] [--dry-run]`: bring NPS history along."""

import sys

from django.core.management.base import BaseCommand, CommandError

from surveys.imports import history
from surveys.imports.reader import ImportFileError
from surveys.touchpoints.selectors import touchpoint_for_slug


class Command(BaseCommand):
    help = (
        "Import past survey responses from a CSV (Delighted's export, or email,score,comment,created_at; "
        "other columns become properties). They count in the dashboard at their dates and send nothing. "
        "Bad rows are reported as 'line N: reason' on standard error (exit status 1); re-importing adds nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--touchpoint", help="Slug of the touchpoint the answers were about.")
        parser.add_argument("--dry-run", action="store_true", help="Check every row and report; write nothing.")

    def handle(self, *args, file: str, touchpoint: str | None, dry_run: bool, **options):
        touchpoint_obj = None
        if touchpoint:
            touchpoint_obj = touchpoint_for_slug(slug=touchpoint)
            if touchpoint_obj is None:
                raise CommandError(f"No touchpoint has the slug {touchpoint!r}.")
        try:
            with open(file, "rb") as binary:
                summary = history.responses_import(
                    binary=binary,
                    touchpoint=touchpoint_obj,
                    dry_run=dry_run,
                    on_error=lambda message: self.stderr.write(message),
                )
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except ImportFileError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(summary.as_text())
        if summary.errors:
            sys.exit(1)
