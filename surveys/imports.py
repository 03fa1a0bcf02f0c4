"""CSV import of customers: `email,name[,external_id,phone,locale]`, streamed.

The file is read row by row (UTF-8 with or without BOM, comma or semicolon),
so memory does not grow with its length, except for a 8-byte fingerprint
per address to report duplicates. Each row is validated and written in its
own savepoint: a bad row is reported as `line N: <reason>` and never half
imported; good rows go in. With `send`, each imported customer is invited
through the same `invitation_request` as the API.
"""

import codecs
import csv
import hashlib
import io
import re
from collections import Counter
from dataclasses import dataclass, field

from django import forms
from django.conf import settings
from django.db import IntegrityError, transaction

from . import services
from .forms import reject_control_characters
from .models import Invitation, Touchpoint

COLUMNS = ["email", "name", "external_id", "phone", "locale"]
REQUIRED = ["email", "name"]
CHUNK_ROWS = 500
MAX_LINE_ERRORS_KEPT = 1000


class ImportFileError(Exception):
    """The file as a whole cannot be read (no header, wrong columns, not UTF-8)."""


class ImportRowForm(forms.Form):
    email = forms.EmailField(max_length=254)
    name = forms.CharField(max_length=200, required=False, validators=[reject_control_characters])
    external_id = forms.CharField(max_length=120, required=False, validators=[reject_control_characters])
    phone = forms.CharField(max_length=40, required=False, validators=[reject_control_characters])
    locale = forms.CharField(max_length=10, required=False)

    def clean_locale(self):
        locale = self.cleaned_data["locale"].strip().lower().replace("_", "-")
        if locale and locale not in dict(settings.LANGUAGES):
            codes = ", ".join(code for code, _ in settings.LANGUAGES)
            raise forms.ValidationError(f"unknown locale {locale!r} (use one of {codes})")
        return locale


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invited: int = 0
    skipped: Counter = field(default_factory=Counter)
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_text(self) -> str:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items())) or "none"
        prefix = "Dry run, nothing written: would have " if self.dry_run else ""
        return (
            f"{prefix}{self.rows} rows: {self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.invited} invited, skipped: {skipped}, {self.errors} errors."
        )


# Bytes that are not UTF-8 are decoded as lone surrogates, so that the reader,
# which reads ahead, does not fail on a line it has not reached: the row that
# holds them is reported with its own line number.
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _open_text(binary) -> io.TextIOBase:
    # utf-8-sig drops a BOM when there is one.
    return codecs.getreader("utf-8-sig")(binary, errors="surrogateescape")


def _reader(text) -> tuple[csv.reader, list[str]]:
    header_line = text.readline()
    if _NOT_UTF8.search(header_line):
        raise ImportFileError("line 1: the file is not UTF-8 text")
    if not header_line.strip():
        raise ImportFileError("line 1: the file is empty; the first line must be a header such as email,name")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    header = [column.strip().lower() for column in next(csv.reader([header_line], delimiter=delimiter))]
    unknown = [column for column in header if column not in COLUMNS]
    missing = [column for column in REQUIRED if column not in header]
    if unknown or missing:
        problems = []
        if missing:
            problems.append("missing column(s) " + ", ".join(missing))
        if unknown:
            problems.append("unknown column(s) " + ", ".join(unknown))
        raise ImportFileError(f"line 1: {'; '.join(problems)} (expected {','.join(COLUMNS)})")
    if len(set(header)) != len(header):
        raise ImportFileError("line 1: a column appears twice")
    return csv.reader(text, delimiter=delimiter), header


def _fingerprint(value: str) -> bytes:
    return hashlib.blake2b(value.encode(), digest_size=8).digest()


def customers_import(
    *,
    binary,
    touchpoint: Touchpoint | None,
    send: bool = False,
    dry_run: bool = False,
    on_error=None,
    on_progress=None,
) -> ImportSummary:
    """Import customers from a binary CSV stream. Returns the summary; reports each bad row via `on_error`."""
    summary = ImportSummary(dry_run=dry_run)
    text = _open_text(binary)
    reader, header = _reader(text)
    seen_emails: dict[bytes, int] = {}
    seen_external: dict[bytes, int] = {}

    def fail(line: int, reason: str) -> None:
        summary.errors += 1
        message = f"line {line}: {reason}"
        if len(summary.error_lines) < MAX_LINE_ERRORS_KEPT:
            summary.error_lines.append(message)
        if on_error:
            on_error(message)

    line = 1
    rows = iter(reader)
    unreadable = None
    while unreadable is None:
        chunk = []
        try:
            for _ in range(CHUNK_ROWS):
                # Where the row starts: a quoted field may carry it over several lines.
                line = reader.line_num + 2  # the header, read apart, is line 1
                values = next(rows)
                chunk.append((line, values))
        except StopIteration:
            pass
        except csv.Error as exc:
            # Reported once the rows read before it are in, in line order.
            unreadable = (reader.line_num + 1, f"cannot be read as CSV ({exc}); the rest of the file was not read")
        if not chunk:
            break
        with transaction.atomic():
            invited: list[int] = []
            for line_number, values in chunk:
                _import_row(
                    line_number, values, header, touchpoint, send, summary, fail, seen_emails, seen_external, invited
                )
            if dry_run:
                transaction.set_rollback(True)
            elif invited:
                # A chunk's invitations go out in a few batched messages once it commits.
                transaction.on_commit(lambda ids=invited: services.invitations_enqueue(ids), robust=True)
        if on_progress:
            on_progress(summary.rows)
    if unreadable is not None:
        fail(*unreadable)
    return summary


def _import_row(line, values, header, touchpoint, send, summary, fail, seen_emails, seen_external, invited):
    if not any(value.strip() for value in values):
        return  # blank line
    summary.rows += 1
    if len(values) > len(header):
        fail(line, f"{len(values)} fields, but the header has {len(header)}")
        return
    if any(_NOT_UTF8.search(value) for value in values):
        fail(line, "not valid UTF-8 text (save the file as UTF-8)")
        return
    data = {column: (values[i].strip() if i < len(values) else "") for i, column in enumerate(header)}
    form = ImportRowForm(data)
    if not form.is_valid():
        column, errors = next(iter(form.errors.items()))
        reason = errors[0]
        if column in ("email", "name", "external_id", "phone") and "at most" in reason:
            reason = f"{column} is too long ({reason})"
        elif column == "email":
            reason = f"invalid email {data.get('email', '')!r}"
        elif column != "locale":
            reason = f"{column}: {reason}"
        fail(line, reason)
        return
    cleaned = form.cleaned_data
    email_key = _fingerprint(cleaned["email"].lower())
    if email_key in seen_emails:
        fail(line, f"duplicate of line {seen_emails[email_key]} ({cleaned['email']})")
        return
    external_key = _fingerprint(cleaned["external_id"]) if cleaned["external_id"] else None
    if external_key and external_key in seen_external:
        fail(line, f"external_id {cleaned['external_id']!r} duplicates line {seen_external[external_key]}")
        return
    seen_emails[email_key] = line
    if external_key:
        seen_external[external_key] = line
    try:
        with transaction.atomic():
            customer, change = services.customer_import_row(
                email=cleaned["email"],
                name=cleaned["name"],
                external_id=cleaned["external_id"] or None,
                phone=cleaned["phone"],
                locale=cleaned["locale"],
            )
            outcome = None
            if send and touchpoint is not None:
                outcome = services.invitation_request(
                    touchpoint=touchpoint, customer=customer, source=Invitation.Source.IMPORT, enqueue=False
                )
    except services.CustomerConflict as exc:
        fail(line, str(exc))
        return
    except IntegrityError:
        fail(line, "conflicts with another customer (email or external_id already used)")
        return
    setattr(summary, change, getattr(summary, change) + 1)
    if outcome is not None:
        if outcome.skipped:
            summary.skipped[outcome.skip_reason] += 1
        else:
            summary.invited += 1
            invited.append(outcome.invitation.pk)
