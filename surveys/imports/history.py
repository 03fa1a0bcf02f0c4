"""Import of past responses (Delighted exports, or plain `email,score,comment,created_at`).

Imported answers count in the dashboard at their original dates and set
nothing in motion: no coupon, no follow-up case, no alert, no webhook, no
email. Each row carries an import key (the export's response id, or a
fingerprint of the row), so importing the same file again adds nothing.
"""

import csv
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from surveys.core import validation
from surveys.customers import services as customers
from surveys.dashboard import services as dashboard
from surveys.models import REASON_MAX_LENGTH, Response, StatsWatermark, Touchpoint
from surveys.responses import services as responses
from surveys.touchpoints.selectors import default_touchpoint

from .reader import NOT_UTF8, ImportFileError, UnreadableLine, header_cells, open_text, rows_in_chunks

# Header names seen in exports, lower-cased, mapped to what they mean here.
COLUMN_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "person email": "email",
    "person_email": "email",
    "name": "name",
    "person name": "name",
    "person_name": "name",
    "score": "score",
    "nps": "score",
    "rating": "score",
    "comment": "comment",
    "comments": "comment",
    "reason": "comment",
    "created_at": "created_at",
    "created at": "created_at",
    "response timestamp": "created_at",
    "response_timestamp": "created_at",
    "timestamp": "created_at",
    "date": "created_at",
    "responded_at": "created_at",
    "response id": "response_id",
    "response_id": "response_id",
    "id": "response_id",
    "touchpoint": "touchpoint",
}
REQUIRED = ("email", "score", "created_at")
CHUNK_ROWS = 500


@dataclass
class HistorySummary:
    rows: int = 0
    imported: int = 0
    already_imported: int = 0
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)
    dry_run: bool = False
    first_day: object = None
    last_day: object = None

    def as_text(self) -> str:
        prefix = "Dry run, nothing written: would have " if self.dry_run else ""
        return (
            f"{prefix}{self.rows} rows: {self.imported} imported, {self.already_imported} already imported, "
            f"{self.errors} errors."
        )


def _parse_moment(raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw), tz=dt_timezone.utc)
    # Delighted's exports write "2024-03-01 10:00:00 -0800"; ISO 8601 wants the offset joined.
    candidate = raw.replace(" +", "+").replace(" -", "-").replace("Z", "+00:00")
    moment = parse_datetime(candidate)
    if moment is None:
        day = parse_date(raw)
        if day is None:
            return None
        moment = datetime(day.year, day.month, day.day)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def responses_import(
    *, binary, touchpoint: Touchpoint | None, dry_run: bool = False, on_error=None
) -> HistorySummary:
    summary = HistorySummary(dry_run=dry_run)
    text = open_text(binary)
    raw_header, delimiter = header_cells(text, example="email,score,comment,created_at")
    header = [COLUMN_ALIASES.get(column.strip().lower(), column.strip()) for column in raw_header]
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        raise ImportFileError(f"line 1: missing column(s) {', '.join(missing)} (e.g. email,score,comment,created_at)")
    if touchpoint is None and "touchpoint" not in header:
        touchpoint = default_touchpoint()
        if touchpoint is None:
            raise ImportFileError("choose a touchpoint with --touchpoint SLUG (or add a touchpoint column)")
    touchpoints = {tp.slug: tp for tp in Touchpoint.objects.all()}
    reader = csv.reader(text, delimiter=delimiter)

    def fail(line: int, reason: str) -> None:
        summary.errors += 1
        message = f"line {line}: {reason}"
        if len(summary.error_lines) < 1000:
            summary.error_lines.append(message)
        if on_error:
            on_error(message)

    try:
        for chunk in rows_in_chunks(reader, size=CHUNK_ROWS):
            with transaction.atomic():
                for line, values in chunk:
                    _import_row(line, values, header, touchpoint, touchpoints, summary, fail)
                if dry_run:
                    transaction.set_rollback(True)
    except UnreadableLine as exc:
        fail(exc.line, f"cannot be read ({exc.cause}); the rest of the file was not read")
    if not dry_run and summary.imported:
        # Count the imported days in the dashboard's rollup right away.
        watermark = StatsWatermark.objects.filter(pk=1).values_list("rolled_until", flat=True).first()
        if watermark and summary.first_day < watermark:
            dashboard.daily_stats_rebuild(
                start=summary.first_day, end=min(summary.last_day, watermark - timedelta(days=1))
            )
    return summary


def _import_row(line, values, header, touchpoint, touchpoints, summary, fail) -> None:
    if not any(value.strip() for value in values):
        return
    summary.rows += 1
    if any(NOT_UTF8.search(value) for value in values):
        # Bytes that are not UTF-8 (a Latin-1 export) cannot be stored; the row is reported, not guessed at.
        fail(line, "not UTF-8 text (save the file as UTF-8 and import again)")
        return
    if any("\x00" in value for value in values):
        fail(line, "contains a NUL character")  # which PostgreSQL cannot store
        return
    row = {column: (values[i].strip() if i < len(values) else "") for i, column in enumerate(header)}
    email = row.get("email", "")
    try:
        email = validation.clean_email(email)
    except ValidationError:
        fail(line, f"invalid email {email!r}")
        return
    try:
        score = validation.score_from_text(row.get("score", ""))
    except ValidationError:
        fail(line, f"score must be a whole number from 0 to 10, not {row.get('score', '')!r}")
        return
    moment = _parse_moment(row.get("created_at", ""))
    if moment is None:
        fail(line, f"cannot read the date {row.get('created_at', '')!r} (use ISO 8601 or a Unix timestamp)")
        return
    if moment > timezone.now():
        fail(line, "the date is in the future")
        return
    try:
        comment = validation.clean_text(row.get("comment", ""), label="comment", max_length=REASON_MAX_LENGTH)
        name = validation.clean_name(row.get("name", ""))
    except ValidationError as exc:
        fail(line, exc.messages[0])
        return
    row_touchpoint = touchpoint
    if row.get("touchpoint"):
        row_touchpoint = touchpoints.get(row["touchpoint"])
        if row_touchpoint is None:
            fail(line, f"unknown touchpoint {row['touchpoint']!r}")
            return
    if customers.address_is_suppressed(email):
        fail(line, "this address was erased on request; its history is not imported")
        return
    if row.get("response_id"):
        import_key = f"id:{row['response_id']}"[:200]
    else:
        fingerprint = "|".join([email, moment.isoformat(), str(score), comment])
        import_key = "row:" + hashlib.sha256(fingerprint.encode()).hexdigest()
    if Response.objects.filter(import_key=import_key).exists():
        summary.already_imported += 1
        return
    properties = {
        column: value
        for column, value in row.items()
        if column not in ("email", "name", "score", "comment", "created_at", "response_id", "touchpoint") and value
    }
    try:
        with transaction.atomic():
            customer = customers.customer_upsert(email=email, name=name)
            responses.response_import(
                customer=customer, touchpoint=row_touchpoint, score=score, reason=comment, created_at=moment,
                import_key=import_key, properties=properties,
            )
    except customers.CustomerConflict as exc:
        fail(line, str(exc))
        return
    except IntegrityError:
        summary.already_imported += 1
        return
    summary.imported += 1
    day = timezone.localdate(moment)
    summary.first_day = min(summary.first_day or day, day)
    summary.last_day = max(summary.last_day or day, day)
