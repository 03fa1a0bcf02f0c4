"""CSV import of customers: `email,name[,external_id,phone,locale]`, streamed in flat memory.

The file is read in chunks of rows (UTF-8 with or without BOM, comma or
semicolon; see reader.py). Memory does not grow with the file's length: the addresses and
external ids already seen, needed to report a row that repeats an earlier one,
are kept in a scratch SQLite file on disk for the length of the import, and
only a bounded sample of the bad rows is kept for the admin page (the command
reports every one as it goes). A bad row is reported as `line N: <reason>` and
never half imported; good rows go in. Each chunk is written with a few bulk
queries; should that meet a concurrent writer, the chunk is written again row
by row, each row in its own savepoint. With `send`, each imported customer is
invited through the same `invitation_request` as the API.
"""

import csv
import sqlite3
from collections import Counter
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone

from surveys.core import validation
from surveys.customers import services as customers
from surveys.invitations import services as invitations
from surveys.models import Customer, FormerAddress, Invitation, Touchpoint

from .reader import NOT_UTF8 as _NOT_UTF8
from .reader import ImportFileError, UnreadableLine, header_cells, open_text, rows_in_chunks

COLUMNS = ["email", "name", "external_id", "phone", "locale"]
REQUIRED = ["email", "name"]
CHUNK_ROWS = 1000
MAX_LINE_ERRORS_KEPT = 1000
# Customer fields an import may set, in the order `customers.customer_import_row` compares them.
WRITTEN_FIELDS = ["email", "name", "external_id", "phone", "locale"]


# The checks of one row: the one validator's, called directly (a Form for each of a million
# rows cost more than everything else together).
ROW_CHECKS = {
    "email": validation.clean_email,
    "name": validation.clean_name,
    "external_id": validation.clean_external_id,
    "phone": validation.clean_phone,
    "locale": validation.clean_locale,
}


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invited: int = 0
    skipped: Counter = field(default_factory=Counter)
    errors: int = 0
    error_lines: list[str] = field(default_factory=list)  # the first MAX_LINE_ERRORS_KEPT, for the admin page
    dry_run: bool = False

    def as_text(self) -> str:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items())) or "none"
        prefix = "Dry run, nothing written: would have " if self.dry_run else ""
        return (
            f"{prefix}{self.rows} rows: {self.created} created, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.invited} invited, skipped: {skipped}, {self.errors} errors."
        )


def _reader(text) -> tuple[csv.reader, list[str]]:
    cells, delimiter = header_cells(text, example="email,name")
    header = [column.strip().lower() for column in cells]
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


class _LinesSeen:
    """The first line of each address and external id met in the file so far.

    Kept in a private SQLite file that SQLite deletes when it is closed, with a
    small page cache, so a million rows cost disk, not memory. It lives apart
    from the import's own database: a dry run rolls every chunk back, and what
    was seen must outlast that; and PostgreSQL and SQLite are served alike.
    """

    _BATCH = 500  # keys per query, well under SQLite's limit on parameters

    def __init__(self):
        self._db = sqlite3.connect("", isolation_level=None)  # "": a temporary file, gone on close
        self._db.execute("PRAGMA cache_size = -4096")  # KiB of pages kept in memory
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (key TEXT PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")

    def first_lines(self, keys: list[str]) -> dict[str, int]:
        found = {}
        for start in range(0, len(keys), self._BATCH):
            batch = keys[start : start + self._BATCH]
            marks = ",".join("?" * len(batch))
            found.update(self._db.execute(f"SELECT key, line FROM seen WHERE key IN ({marks})", batch))
        return found

    def add(self, lines: dict[str, int]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO seen (key, line) VALUES (?, ?)", lines.items())
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


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
    text = open_text(binary)
    reader, header = _reader(text)

    def fail(line: int, reason: str) -> None:
        summary.errors += 1
        message = f"line {line}: {reason}"
        if len(summary.error_lines) < MAX_LINE_ERRORS_KEPT:
            summary.error_lines.append(message)
        if on_error:
            on_error(message)

    seen = _LinesSeen()
    try:
        for chunk in rows_in_chunks(reader, size=CHUNK_ROWS):
            errors = _import_chunk(chunk, header, touchpoint, send, dry_run, summary, seen)
            for line, reason in sorted(errors):
                fail(line, reason)
            if on_progress:
                on_progress(summary.rows)
    except UnreadableLine as exc:
        fail(exc.line, f"cannot be read as CSV ({exc.cause}); the rest of the file was not read")
    finally:
        seen.close()
    return summary


def _import_chunk(chunk, header, touchpoint, send, dry_run, summary, seen) -> list[tuple[int, str]]:
    """Check, then write, one chunk of rows. Returns the bad rows as (line, reason)."""
    errors: list[tuple[int, str]] = []
    checked = []
    for line, values in chunk:
        if not any(value.strip() for value in values):
            continue  # blank line
        summary.rows += 1
        cleaned, reason = _check_row(values, header)
        if reason:
            errors.append((line, reason))
        else:
            checked.append((line, cleaned))
    accepted = _drop_repeated_rows(checked, seen, errors)
    if not accepted:
        return errors
    with transaction.atomic():
        try:
            # Bulk writes are only used where Python's lower() is surely the database's LOWER().
            if not all(cleaned["email"].isascii() for _, cleaned in accepted):
                raise _WriteRowByRow
            with transaction.atomic():
                outcomes, conflicts = _write_in_bulk(accepted, touchpoint, send)
        except (_WriteRowByRow, IntegrityError):
            # A concurrent writer took an address or id first, or two rows swapped one: one savepoint per row.
            outcomes, conflicts = _write_row_by_row(accepted, touchpoint, send)
        errors.extend(conflicts)
        invited = []
        for change, outcome in outcomes:
            setattr(summary, change, getattr(summary, change) + 1)
            if outcome is None:
                continue
            if outcome.skipped:
                summary.skipped[outcome.skip_reason] += 1
            else:
                summary.invited += 1
                invited.append(outcome.invitation.pk)
        if dry_run:
            transaction.set_rollback(True)
        elif invited:
            # A chunk's invitations go out in a few batched messages once it commits.
            transaction.on_commit(lambda ids=invited: invitations.invitations_enqueue(ids), robust=True)
    return errors


class _WriteRowByRow(Exception):
    pass


def _check_row(values: list[str], header: list[str]) -> tuple[dict | None, str | None]:
    """The row's cleaned values, or why it cannot be imported (the first column at fault)."""
    if len(values) > len(header):
        return None, f"{len(values)} fields, but the header has {len(header)}"
    if any(_NOT_UTF8.search(value) for value in values):
        return None, "not valid UTF-8 text (save the file as UTF-8)"
    data = {column: (values[i].strip() if i < len(values) else "") for i, column in enumerate(header)}
    cleaned = {}
    for column, check in ROW_CHECKS.items():
        try:
            cleaned[column] = check(data.get(column, ""))
        except ValidationError as exc:
            reason = str(exc.messages[0])
            if column == "email" and exc.code != "max_length":
                reason = f"invalid email {data.get('email', '')!r}"
                if exc.code == "erased":
                    reason += ": the placeholder of an erased person"
            return None, reason
    return cleaned, None


def _drop_repeated_rows(checked, seen: _LinesSeen, errors) -> list:
    """The rows whose address and external id no earlier row of the file had; the others go to `errors`."""
    keys = []
    for _, cleaned in checked:
        keys.append("e:" + cleaned["email"].lower())
        if cleaned["external_id"]:
            keys.append("x:" + cleaned["external_id"])
    first_lines = seen.first_lines(keys)
    new_here: dict[str, int] = {}
    accepted = []
    for line, cleaned in checked:
        email_key = "e:" + cleaned["email"].lower()
        first = first_lines.get(email_key) or new_here.get(email_key)
        if first:
            errors.append((line, f"duplicate of line {first} ({cleaned['email']})"))
            continue
        external_key = "x:" + cleaned["external_id"] if cleaned["external_id"] else None
        first = external_key and (first_lines.get(external_key) or new_here.get(external_key))
        if first:
            errors.append((line, f"external_id {cleaned['external_id']!r} duplicates line {first}"))
            continue
        new_here[email_key] = line
        if external_key:
            new_here[external_key] = line
        accepted.append((line, cleaned))
    seen.add(new_here)
    return accepted


def _invite(customer, touchpoint, send):
    if not send or touchpoint is None:
        return None
    return invitations.invitation_request(
        touchpoint=touchpoint, customer=customer, source=Invitation.Source.IMPORT, enqueue=False
    )


def _write_row_by_row(accepted, touchpoint, send):
    """`customers.customer_import_row` for each row, in its own savepoint. Returns (outcomes, conflicts)."""
    outcomes, conflicts = [], []
    for line, cleaned in accepted:
        try:
            with transaction.atomic():
                customer, change = customers.customer_import_row(
                    email=cleaned["email"],
                    name=cleaned["name"],
                    external_id=cleaned["external_id"] or None,
                    phone=cleaned["phone"],
                    locale=cleaned["locale"],
                )
                outcome = _invite(customer, touchpoint, send)
        except customers.CustomerConflict as exc:
            conflicts.append((line, str(exc)))
            continue
        except IntegrityError:
            conflicts.append((line, "conflicts with another customer (email or external_id already used)"))
            continue
        outcomes.append((change, outcome))
    return outcomes, conflicts


def _write_in_bulk(accepted, touchpoint, send):
    """What `_write_row_by_row` does, in a few queries for the whole chunk.

    The customers the rows name are locked and loaded at once; the rows are then
    applied in file order to those objects, kept findable by address and
    external id as they change, so a row sees what the rows before it wrote,
    exactly as one by one. Changed customers are saved before new ones are
    created, as a new one may take an address or id an earlier row moved away.
    """
    emails = [cleaned["email"].lower() for _, cleaned in accepted]
    externals = [cleaned["external_id"] for _, cleaned in accepted if cleaned["external_id"]]
    locked = Customer.objects.select_for_update().annotate(email_lower=Lower("email")).order_by("pk")
    # Two queries, not one with OR: each alone is planned on its unique index even before
    # PostgreSQL has statistics on a table the import is filling; the OR was a full scan.
    found = {customer.pk: customer for customer in locked.filter(email_lower__in=emails)}
    if externals:
        for customer in locked.filter(external_id__in=externals).exclude(pk__in=list(found)):
            found[customer.pk] = customer
    by_email: dict[str, Customer] = {}
    by_external: dict[str, Customer] = {}
    for customer in found.values():
        by_email.setdefault(customer.email_lower, customer)
        if customer.external_id:
            by_external[customer.external_id] = customer
    suppressed = customers.addresses_suppressed(emails)

    now = timezone.now()
    changes, conflicts = [], []
    given_up: list[FormerAddress] = []
    created: list[Customer] = []
    updated: dict[int, Customer] = {}
    for line, cleaned in accepted:
        email, external_id = cleaned["email"], cleaned["external_id"] or None
        customer = by_email.get(email.lower())
        if external_id:
            owner = by_external.get(external_id)
            if customer is None:
                customer = owner
            elif owner is not None and owner is not customer:
                conflicts.append((line, f"The external id {external_id!r} belongs to another customer than {email}."))
                continue
        if customer is not None and customer.erased_at is not None:
            conflicts.append((line, str(customers.CustomerErased())))
            continue
        if customer is None:
            customer = Customer(email=email)
            customer.email_lower = None
            change = "created"
        else:
            change = "unchanged"
        before = (customer.email_lower, customer.external_id)
        for name in WRITTEN_FIELDS:
            value = external_id if name == "external_id" else cleaned[name]
            if value and getattr(customer, name) != value:
                setattr(customer, name, value)
                if change == "unchanged":
                    change = "updated"
        if change == "unchanged":
            changes.append((line, customer, change))
            continue
        if customer.email.lower() != before[0] and customer.unsubscribed_at is None and email.lower() in suppressed:
            # An erased person asked never to be emailed again, whatever record their address turns up on.
            customer.unsubscribed_at = now
        if before[0] and before[0] != customer.email.lower():
            given_up.append(FormerAddress(customer_id=customer.pk, address_hash=customers.address_hash(before[0])))
        customer.updated_at = now
        if change == "created":
            created.append(customer)
        else:
            updated[customer.pk] = customer
        # Keep the customer findable under what it now holds, no longer under what it gave up.
        # (email_lower is the database's LOWER() of what is stored; the row's address is ASCII.)
        customer.email_lower = customer.email.lower()
        if before[0] and before[0] != customer.email_lower and by_email.get(before[0]) is customer:
            del by_email[before[0]]
        by_email[customer.email_lower] = customer
        if before[1] and before[1] != customer.external_id and by_external.get(before[1]) is customer:
            del by_external[before[1]]
        if customer.external_id:
            by_external[customer.external_id] = customer
        changes.append((line, customer, change))

    if updated:
        Customer.objects.bulk_update(list(updated.values()), [*WRITTEN_FIELDS, "unsubscribed_at", "updated_at"])
    if given_up:
        FormerAddress.objects.bulk_create(given_up, ignore_conflicts=True)
    if created:
        Customer.objects.bulk_create(created)
    outcomes = [(change, _invite(customer, touchpoint, send)) for _, customer, change in changes]
    return outcomes, conflicts
