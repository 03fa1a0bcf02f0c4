"""customers_import: the CSV of customers, row by row, as the command and the admin upload run it."""

import codecs
import csv
import io

import pytest
from celery.signals import after_task_publish
from django.core import mail
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surveys.customers.services import customer_unsubscribe
from surveys.imports import customers as imports
from surveys.models import Customer, Invitation, SurveySkip
from surveys.privacy.services import customer_erase

from ..factories import CustomerFactory, InvitationFactory, TouchpointFactory

pytestmark = pytest.mark.django_db


def _import(text: str | bytes, touchpoint=None, **options):
    """Run the import; returns the summary and the messages reported for bad rows."""
    errors = []
    binary = io.BytesIO(text.encode() if isinstance(text, str) else text)
    summary = imports.customers_import(binary=binary, touchpoint=touchpoint, on_error=errors.append, **options)
    return summary, errors


def _emails() -> list[str]:
    return sorted(Customer.objects.values_list("email", flat=True))


@pytest.fixture
def broker_messages():
    """Publish to an in-memory broker instead of running tasks inline; yields the (task, args) published."""
    from nps_app.celery import app

    saved = (app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool)
    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    app._pool = app.amqp._producer_pool = None
    published = []

    def record(sender=None, body=None, **kwargs):
        published.append((sender, list(body[0])))

    after_task_publish.connect(record, weak=False)
    try:
        yield published
    finally:
        after_task_publish.disconnect(record)
        app.conf.task_always_eager, app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


# --- Reading the file -------------------------------------------------------------------


def test_it_creates_a_customer_for_each_row(touchpoint):
    summary, errors = _import(
        "email,name,external_id,phone,locale\n"
        "ana@example.com,Ana López,crm-1,+34 600 000 000,es\n"
        "bob@example.com,Bob,,,\n",
        touchpoint,
    )

    assert errors == []
    assert (summary.rows, summary.created, summary.errors) == (2, 2, 0)
    ana = Customer.objects.get(email="ana@example.com")
    assert (ana.name, ana.external_id, ana.phone, ana.locale) == ("Ana López", "crm-1", "+34 600 000 000", "es")
    bob = Customer.objects.get(email="bob@example.com")
    assert (bob.name, bob.external_id, bob.locale) == ("Bob", None, "en")


def test_it_reads_a_file_that_starts_with_a_byte_order_mark(touchpoint):
    summary, errors = _import("\ufeffemail,name\nana@example.com,Ana\n".encode(), touchpoint)

    assert errors == []
    assert summary.created == 1
    assert _emails() == ["ana@example.com"]


def test_it_reads_a_file_separated_by_semicolons(touchpoint):
    summary, errors = _import("email;name;locale\nana@example.com;López, Ana;es\n", touchpoint)

    assert errors == []
    assert summary.created == 1
    assert Customer.objects.get().name == "López, Ana"


def test_it_reads_columns_in_any_order_and_case(touchpoint):
    summary, _ = _import("Name,EMAIL\nAna,ana@example.com\n", touchpoint)

    assert summary.created == 1
    assert Customer.objects.get().name == "Ana"


def test_it_reads_windows_line_endings_and_quoted_fields(touchpoint):
    summary, errors = _import('email,name\r\nana@example.com,"Ana ""the boss"" López"\r\nbob@example.com,Bob\r\n', touchpoint)

    assert errors == []
    assert summary.created == 2
    assert Customer.objects.get(email="ana@example.com").name == 'Ana "the boss" López'


def test_it_skips_blank_lines_and_keeps_counting_them(touchpoint):
    summary, errors = _import("email,name\nana@example.com,Ana\n\n,\nnot-an-email,Bob\n", touchpoint)

    assert errors == ["line 5: invalid email 'not-an-email'"]
    assert (summary.rows, summary.created, summary.errors) == (2, 1, 1)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "line 1: the file is empty"),
        ("\n", "line 1: the file is empty"),
        ("name,phone\nAna,1\n", "line 1: missing column(s) email"),
        ("email\nana@example.com\n", "line 1: missing column(s) name"),
        ("email,name,birthday\nana@example.com,Ana,1990-01-01\n", "line 1: unknown column(s) birthday"),
        ("email,name,email\nana@example.com,Ana,ana@example.com\n", "line 1: a column appears twice"),
    ],
)
def test_it_refuses_a_file_without_a_usable_header(touchpoint, content, message):
    with pytest.raises(imports.ImportFileError) as refused:
        _import(content, touchpoint)

    assert str(refused.value).startswith(message)
    assert not Customer.objects.exists()


def test_it_refuses_a_file_that_is_not_utf8_from_its_first_line(touchpoint):
    with pytest.raises(imports.ImportFileError) as refused:
        _import("email,name\n".encode("utf-16"), touchpoint)

    assert str(refused.value).startswith("line 1:")
    assert not Customer.objects.exists()


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_it_refuses_utf16_without_a_byte_order_mark_as_the_history_import_does(touchpoint, encoding):
    with pytest.raises(imports.ImportFileError) as refused:
        _import("email,name\nana@example.com,Ana\n".encode(encoding), touchpoint)

    assert str(refused.value) == "line 1: the header contains a NUL character"
    assert not Customer.objects.exists()


# --- Bad rows -----------------------------------------------------------------------------


def test_it_reports_each_bad_row_with_its_line_number_and_imports_the_good_ones(touchpoint):
    summary, errors = _import(
        "email,name,external_id,phone,locale\n"
        "ana@example.com,Ana,,,\n"  # line 2
        "not-an-email,Bob,,,\n"  # line 3
        "carl@example.com,Carl,,,xx\n"  # line 4
        "ANA@example.com,Ana again,,,\n"  # line 5
        "dora@example.com,Dora,crm-7,,\n"  # line 6
        "eve@example.com,Eve,crm-7,,\n"  # line 7
        f"fred@example.com,{'F' * 201},,,\n"  # line 8
        "gina@example.com,Gina,,,,extra\n"  # line 9
        "hank@example.com,Hank,,,de\n",  # line 10
        touchpoint,
    )

    assert [error.split(":")[0] for error in errors] == [f"line {n}" for n in (3, 4, 5, 7, 8, 9)]
    assert errors[0] == "line 3: invalid email 'not-an-email'"
    assert "unknown locale 'xx'" in errors[1]
    assert errors[2].startswith("line 5: duplicate of line 2")
    assert errors[3] == "line 7: external_id 'crm-7' duplicates line 6"
    assert errors[4].startswith("line 8: name is too long")
    assert errors[5] == "line 9: 6 fields, but the header has 5"
    assert _emails() == ["ana@example.com", "dora@example.com", "hank@example.com"]
    assert (summary.rows, summary.created, summary.errors) == (9, 3, 6)
    assert summary.error_lines == errors


@pytest.mark.parametrize(
    "column, value",
    [("email", "a" * 250 + "@example.com"), ("external_id", "x" * 121), ("phone", "1" * 41)],
)
def test_it_reports_an_overlong_field(touchpoint, column, value):
    row = {"email": "ana@example.com", "name": "Ana", "external_id": "", "phone": ""}
    row[column] = value

    summary, errors = _import("email,name,external_id,phone\n" + ",".join(row.values()) + "\n", touchpoint)

    assert len(errors) == 1
    assert errors[0].startswith(f"line 2: {column} is too long")
    assert (summary.errors, summary.created) == (1, 0)
    assert not Customer.objects.exists()


def test_a_line_break_in_a_name_is_refused(touchpoint):
    summary, errors = _import('email,name\nana@example.com,"Ana\nBcc: victim@example.com"\n', touchpoint)

    assert summary.errors == 1
    assert len(errors) == 1 and errors[0].startswith("line ")
    assert "name" in errors[0]
    assert not Customer.objects.exists()


def test_a_locale_is_accepted_in_any_case_and_with_an_underscore(touchpoint):
    _, errors = _import("email,name,locale\nana@example.com,Ana,ES\nbob@example.com,Bob,de\n", touchpoint)

    assert errors == []
    assert dict(Customer.objects.values_list("email", "locale")) == {"ana@example.com": "es", "bob@example.com": "de"}


def test_a_bad_row_never_half_imports_a_customer(touchpoint):
    """Every column is checked before anything is written: a valid email with a bad locale adds no one."""
    summary, errors = _import("email,name,external_id,locale\nana@example.com,Ana,crm-1,klingon\n", touchpoint)

    assert len(errors) == 1
    assert summary.created == 0
    assert not Customer.objects.exists()


def test_a_row_whose_external_id_belongs_to_someone_else_changes_no_one(touchpoint):
    ana = CustomerFactory(email="ana@example.com", name="Ana", external_id="crm-1")
    bob = CustomerFactory(email="bob@example.com", name="Bob", external_id="crm-2")

    summary, errors = _import(
        "email,name,external_id\nana@example.com,Ana Renamed,crm-2\ncarl@example.com,Carl,crm-3\n", touchpoint
    )

    assert len(errors) == 1 and errors[0].startswith("line 2: ")
    assert "crm-2" in errors[0]
    ana.refresh_from_db()
    bob.refresh_from_db()
    assert (ana.name, ana.external_id) == ("Ana", "crm-1")
    assert (bob.name, bob.external_id) == ("Bob", "crm-2")
    assert summary.created == 1
    assert Customer.objects.filter(email="carl@example.com").exists()


def test_a_row_that_is_not_utf8_is_reported_on_its_own_line(touchpoint):
    content = b"email,name\nana@example.com,Ana\nbob@example.com,Jos\xe9\ncarl@example.com,Carl\n"

    summary, errors = _import(content, touchpoint)

    assert len(errors) == 1
    assert errors[0].startswith("line 3: ")
    assert "UTF-8" in errors[0]
    assert _emails() == ["ana@example.com", "carl@example.com"]
    assert (summary.created, summary.errors) == (2, 1)


def test_rows_read_before_a_line_that_cannot_be_read_are_imported(touchpoint):
    huge = "x" * 200_000  # more than the csv module accepts in one field
    content = f"email,name\nana@example.com,Ana\nbob@example.com,Bob\ncarl@example.com,{huge}\n"

    summary, errors = _import(content, touchpoint)

    assert _emails() == ["ana@example.com", "bob@example.com"]
    assert summary.created == 2
    assert len(errors) == 1
    assert errors[0].startswith("line 4: ")
    assert "the rest of the file was not read" in errors[0]


def test_text_that_stops_decoding_stops_the_reading_at_its_own_line_after_the_rows_before_it():
    """The import decodes leniently and reports a non-UTF-8 row itself (above); a stream that decodes
    strictly stops the reading at the line at fault, with the line number, instead of a traceback."""
    strict = codecs.getreader("utf-8")(io.BytesIO(
        b'email,name\nana@example.com,Ana\nbob@example.com,"Bob\nSmith"\ncarl@example.com,Jos\xe9\ndan@example.com,Dan\n'
    ))
    strict.readline()
    chunks = imports.rows_in_chunks(csv.reader(strict), size=10)

    assert next(chunks) == [(2, ["ana@example.com", "Ana"]), (3, ["bob@example.com", "Bob\nSmith"])]
    with pytest.raises(imports.UnreadableLine) as unreadable:
        next(chunks)
    assert unreadable.value.line == 5
    assert isinstance(unreadable.value.cause, UnicodeDecodeError)


# --- Creating and updating ----------------------------------------------------------------


def test_it_updates_a_customer_found_by_email_and_says_what_changed(touchpoint):
    CustomerFactory(email="ana@example.com", name="Ana", locale="en")
    CustomerFactory(email="bob@example.com", name="Bob")

    summary, errors = _import("email,name,locale\nANA@example.com,Ana López,es\nbob@example.com,Bob,\n", touchpoint)

    assert errors == []
    assert (summary.created, summary.updated, summary.unchanged) == (0, 1, 1)
    assert Customer.objects.count() == 2
    ana = Customer.objects.get(email__iexact="ana@example.com")
    assert (ana.name, ana.locale) == ("Ana López", "es")


def test_it_finds_a_customer_by_external_id_when_the_email_changed(touchpoint):
    ana = CustomerFactory(email="ana@old.example.com", name="Ana", external_id="crm-1")

    summary, _ = _import("email,name,external_id\nana@new.example.com,Ana,crm-1\n", touchpoint)

    assert summary.updated == 1
    ana.refresh_from_db()
    assert ana.email == "ana@new.example.com"
    assert Customer.objects.count() == 1


def test_an_empty_cell_never_erases_what_is_stored(touchpoint):
    ana = CustomerFactory(email="ana@example.com", name="Ana", phone="+1 555", external_id="crm-1", locale="de")

    summary, _ = _import("email,name,external_id,phone,locale\nana@example.com,,,,\n", touchpoint)

    assert summary.unchanged == 1
    ana.refresh_from_db()
    assert (ana.name, ana.phone, ana.external_id, ana.locale) == ("Ana", "+1 555", "crm-1", "de")


def test_the_summary_says_what_happened_in_words(touchpoint):
    CustomerFactory(email="bob@example.com", name="Bob")

    summary, _ = _import("email,name\nana@example.com,Ana\nbob@example.com,Robert\nbad,X\n", touchpoint)

    assert summary.as_text() == (
        "3 rows: 1 created, 1 updated, 0 unchanged, 0 invited, skipped: none, 1 errors."
    )


def test_it_reports_progress_as_it_goes(touchpoint, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    seen = []
    rows = "".join(f"c{n}@example.com,C{n}\n" for n in range(5))

    imports.customers_import(
        binary=io.BytesIO(f"email,name\n{rows}".encode()), touchpoint=touchpoint, on_progress=seen.append
    )

    assert seen == [2, 4, 5]
    assert Customer.objects.count() == 5


# --- Dry run --------------------------------------------------------------------------------


def test_a_dry_run_checks_every_row_and_writes_nothing(touchpoint, django_capture_on_commit_callbacks):
    CustomerFactory(email="bob@example.com", name="Bob")

    with django_capture_on_commit_callbacks(execute=True):
        summary, errors = _import(
            "email,name\nana@example.com,Ana\nbob@example.com,Robert\nbad,X\n", touchpoint, send=True, dry_run=True
        )

    assert errors == ["line 4: invalid email 'bad'"]
    assert (summary.created, summary.updated, summary.invited, summary.errors) == (1, 1, 2, 1)
    assert summary.as_text().startswith("Dry run, nothing written: would have 3 rows")
    assert _emails() == ["bob@example.com"]
    assert Customer.objects.get().name == "Bob"
    assert not Invitation.objects.exists()
    assert not SurveySkip.objects.exists()
    assert mail.outbox == []


# --- Sending ------------------------------------------------------------------------------


def test_without_send_no_one_is_invited(touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        summary, _ = _import("email,name\nana@example.com,Ana\n", touchpoint)

    assert summary.invited == 0
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_with_send_each_imported_customer_gets_the_survey(touchpoint, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        summary, _ = _import("email,name\nana@example.com,Ana\nbob@example.com,Bob\nbad,X\n", touchpoint, send=True)

    assert summary.invited == 2
    assert sorted(message.to[0] for message in mail.outbox) == ["ana@example.com", "bob@example.com"]
    invitations = Invitation.objects.all()
    assert {(i.status, i.source, i.touchpoint_id) for i in invitations} == {("sent", "import", touchpoint.pk)}


def test_with_send_policy_still_applies_and_skips_are_counted_by_reason(touchpoint, django_capture_on_commit_callbacks):
    gone = CustomerFactory(email="gone@example.com")
    customer_unsubscribe(customer=gone)
    recent = CustomerFactory(email="recent@example.com")
    InvitationFactory(customer=recent, touchpoint=TouchpointFactory())

    with django_capture_on_commit_callbacks(execute=True):
        summary, errors = _import(
            "email,name\ngone@example.com,Gone\nrecent@example.com,Recent\nnew@example.com,New\n", touchpoint, send=True
        )

    assert errors == []
    assert summary.invited == 1
    assert dict(summary.skipped) == {"unsubscribed": 1, "cooldown": 1}
    assert "skipped: cooldown 1, unsubscribed 1" in summary.as_text()
    assert [message.to for message in mail.outbox] == [["new@example.com"]]
    assert set(SurveySkip.objects.values_list("customer__email", "reason", "source")) == {
        ("gone@example.com", "unsubscribed", "import"),
        ("recent@example.com", "cooldown", "import"),
    }


def test_with_send_for_an_inactive_touchpoint_no_one_is_emailed(django_capture_on_commit_callbacks):
    closed = TouchpointFactory(is_active=False)

    with django_capture_on_commit_callbacks(execute=True):
        summary, _ = _import("email,name\nana@example.com,Ana\n", closed, send=True)

    assert summary.created == 1
    assert dict(summary.skipped) == {"inactive_touchpoint": 1}
    assert mail.outbox == []


def test_with_send_invitations_travel_in_batches_not_one_message_each(
    touchpoint, settings, broker_messages, django_capture_on_commit_callbacks
):
    settings.NPS_SEND_BATCH_SIZE = 2
    rows = "".join(f"c{n}@example.com,C{n}\n" for n in range(5))

    with django_capture_on_commit_callbacks(execute=True):
        summary, _ = _import(f"email,name\n{rows}", touchpoint, send=True)

    assert summary.invited == 5
    ids = list(Invitation.objects.order_by("pk").values_list("pk", flat=True))
    assert broker_messages == [
        ("surveys.tasks.invitations_send_batch_task", [ids[0:2]]),
        ("surveys.tasks.invitations_send_batch_task", [ids[2:4]]),
        ("surveys.tasks.invitations_send_batch_task", [ids[4:5]]),
    ]
    assert set(Invitation.objects.values_list("status", flat=True)) == {"pending"}


def test_with_send_each_chunk_is_enqueued_once_it_is_written(
    touchpoint, settings, broker_messages, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    settings.NPS_SEND_BATCH_SIZE = 50
    rows = "".join(f"c{n}@example.com,C{n}\n" for n in range(5))

    with django_capture_on_commit_callbacks(execute=True):
        _import(f"email,name\n{rows}", touchpoint, send=True)

    assert [len(args[0]) for _, args in broker_messages] == [3, 2]


def test_it_reads_the_file_as_it_goes_not_all_at_once(touchpoint, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 100)
    rows = "".join(f"customer{n}@example.com,Customer {n}\n" for n in range(1000))
    binary = io.BytesIO(f"email,name\n{rows}".encode())
    read_when_first_chunk_was_written = []

    def progress(count):
        if not read_when_first_chunk_was_written:
            read_when_first_chunk_was_written.append(binary.tell())

    summary = imports.customers_import(binary=binary, touchpoint=touchpoint, on_progress=progress)

    assert summary.created == 1000
    assert read_when_first_chunk_was_written[0] < len(binary.getvalue()) / 5


def test_a_row_spread_over_several_lines_is_reported_at_the_line_where_it_starts(touchpoint):
    content = 'email,name\nana@example.com,Ana\nbad,"Bob\nthe builder"\ncarl@example.com,Carl\nworse,X\n'

    summary, errors = _import(content, touchpoint)

    assert errors == ["line 3: invalid email 'bad'", "line 6: invalid email 'worse'"]
    assert summary.created == 2


# --- Flat memory: what an import keeps across chunks --------------------------------------


def test_a_duplicate_in_a_later_chunk_is_reported_with_the_line_of_the_first(touchpoint, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)

    summary, errors = _import(
        "email,name,external_id\n"
        "ana@example.com,Ana,crm-1\n"  # line 2, chunk 1
        "bob@example.com,Bob,crm-2\n"  # line 3, chunk 1
        "carl@example.com,Carl,\n"  # line 4, chunk 2
        "ANA@example.com,Ana again,\n"  # line 5, chunk 2
        "dora@example.com,Dora,crm-2\n"  # line 6, chunk 3
        "eve@example.com,Eve,crm-5\n"  # line 7, chunk 3
        "CARL@EXAMPLE.COM,Carl again,\n",  # line 8, chunk 4
        touchpoint,
    )

    assert errors == [
        "line 5: duplicate of line 2 (ana@example.com)",
        "line 6: external_id 'crm-2' duplicates line 3",
        "line 8: duplicate of line 4 (carl@example.com)",
    ]
    assert _emails() == ["ana@example.com", "bob@example.com", "carl@example.com", "eve@example.com"]
    assert Customer.objects.get(email="ana@example.com").name == "Ana"
    assert (summary.rows, summary.created, summary.errors) == (7, 4, 3)


def test_a_bad_row_does_not_count_as_the_first_of_its_address(touchpoint, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 1)

    summary, errors = _import(
        "email,name,locale\nana@example.com,Ana,xx\nana@example.com,Ana,es\nana@example.com,Ana,de\n", touchpoint
    )

    assert [error[:9] for error in errors] == ["line 2: u", "line 4: d"]
    assert errors[1] == "line 4: duplicate of line 3 (ana@example.com)"
    assert Customer.objects.get().locale == "es"
    assert summary.created == 1


def test_every_bad_row_is_reported_but_only_a_sample_is_kept(touchpoint, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    monkeypatch.setattr(imports, "MAX_LINE_ERRORS_KEPT", 3)
    rows = "".join(f"bad{n},Bad\n" for n in range(10))

    summary, errors = _import(f"email,name\n{rows}ok@example.com,Ok\n", touchpoint)

    assert errors == [f"line {n + 2}: invalid email 'bad{n}'" for n in range(10)]
    assert summary.error_lines == errors[:3]
    assert (summary.errors, summary.created) == (10, 1)


def test_what_the_file_repeats_is_remembered_on_disk_not_in_memory(touchpoint, monkeypatch):
    """The addresses seen so far go to a scratch SQLite file, not to a Python dict that grows with the file."""
    stores = []

    class Recording(imports._LinesSeen):
        def __init__(self):
            super().__init__()
            stores.append(self)

    monkeypatch.setattr(imports, "_LinesSeen", Recording)
    monkeypatch.setattr(imports, "CHUNK_ROWS", 10)
    rows = "".join(f"c{n}@example.com,C{n},crm-{n}\n" for n in range(50))

    summary, errors = _import(f"email,name,external_id\n{rows}c7@example.com,Again,\n", touchpoint)

    assert errors == ["line 52: duplicate of line 9 (c7@example.com)"]
    assert summary.created == 50
    [store] = stores
    with pytest.raises(Exception, match="closed"):
        store.first_lines(["e:c7@example.com"])  # closed, and so deleted, at the end of the import


# --- Rows that change the same customers, written a chunk at a time ----------------------


def _state():
    return sorted(Customer.objects.values_list("email", "name", "external_id", "phone", "locale", "unsubscribed_at"))


def _import_row_by_row(monkeypatch, content, touchpoint):
    """The same import with every chunk written one row at a time (the path taken after a conflict)."""
    with monkeypatch.context() as patched:
        patched.setattr(imports, "_write_in_bulk", lambda *args: (_ for _ in ()).throw(imports._WriteRowByRow()))
        return _import(content, touchpoint)


@pytest.mark.parametrize(
    "existing, content, expected",
    [
        # The address an earlier row moved away from is free for a later row.
        (
            [("ana@example.com", "crm-1")],
            "email,name,external_id\nana@new.example.com,Ana,crm-1\nana@example.com,Someone else,\n",
            {("ana@new.example.com", "crm-1"), ("ana@example.com", None)},
        ),
        # The external id an earlier row replaced is free for a new customer.
        (
            [("ana@example.com", "crm-1")],
            "email,name,external_id\nana@example.com,Ana,crm-2\nbob@example.com,Bob,crm-1\n",
            {("ana@example.com", "crm-2"), ("bob@example.com", "crm-1")},
        ),
        # Two rows find the same customer, by address and then by external id.
        (
            [("ana@example.com", "crm-1")],
            "email,name,external_id\nana@example.com,Ana López,\nana@new.example.com,,crm-1\n",
            {("ana@new.example.com", "crm-1")},
        ),
        # An address moves to another customer once its holder has left it.
        (
            [("bob@example.com", "crm-2"), ("ana@example.com", "crm-1")],
            "email,name,external_id\nana@new.example.com,,crm-1\nana@example.com,,crm-2\n",
            {("ana@new.example.com", "crm-1"), ("ana@example.com", "crm-2")},
        ),
        # The external id of one customer named with the address of another: refused, nothing changes.
        (
            [("ana@example.com", "crm-1"), ("bob@example.com", "crm-2")],
            "email,name,external_id\nana@example.com,Ana,crm-2\nbob@example.com,Bob,\n",
            {("ana@example.com", "crm-1"), ("bob@example.com", "crm-2")},
        ),
    ],
)
def test_rows_in_one_chunk_see_what_the_rows_before_them_wrote(touchpoint, monkeypatch, existing, content, expected):
    for email, external_id in existing:
        CustomerFactory(email=email, external_id=external_id)
    start = _state()
    with transaction.atomic():
        one_by_one = _import_row_by_row(monkeypatch, content, touchpoint)
        state_one_by_one = _state()
        transaction.set_rollback(True)
    assert _state() == start

    summary, errors = _import(content, touchpoint)

    assert set(Customer.objects.values_list("email", "external_id")) == expected
    assert _state() == state_one_by_one
    assert (summary.as_text(), errors) == (one_by_one[0].as_text(), one_by_one[1])


def test_a_customer_created_anew_for_an_erased_address_starts_unsubscribed(touchpoint):
    erased = CustomerFactory(email="gone@example.com")
    customer_erase(customer=erased)

    summary, errors = _import("email,name\nGONE@example.com,Back\nnew@example.com,New\n", touchpoint)

    assert errors == []
    assert summary.created == 2
    # Stored in its canonical form, and still recognised under the erased person's spelling.
    assert Customer.objects.get(email="gone@example.com").unsubscribed_at is not None
    assert Customer.objects.get(email="new@example.com").unsubscribed_at is None


def test_an_address_with_an_international_domain_is_imported(touchpoint):
    summary, errors = _import("email,name\nana@bücher.example,Ana\nbob@example.com,Bob\n", touchpoint)

    assert errors == []
    assert summary.created == 2
    # Kept in the domain's IDNA form, what mail servers use: the Unicode spelling finds the same customer.
    assert _emails() == ["ana@xn--bcher-kva.example", "bob@example.com"]
    again, errors = _import("email,name\nAna@BÜCHER.example,Ana B.\n", touchpoint)
    assert (errors, again.created, again.updated) == ([], 0, 1)


ADDRESSES = ["a@example.com", "A@example.com", "b@example.com", "c@example.com", "d@example.com"]
EXTERNAL_IDS = ["", "crm-1", "crm-2", "crm-3"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    existing=st.lists(st.tuples(st.sampled_from(ADDRESSES), st.sampled_from(EXTERNAL_IDS)), max_size=4),
    rows=st.lists(
        st.tuples(
            st.sampled_from(ADDRESSES + ["not-an-email"]),
            st.sampled_from(["", "Ann", "Bob"]),
            st.sampled_from(EXTERNAL_IDS),
            st.sampled_from(["", "es", "xx"]),
        ),
        max_size=8,
    ),
    chunk_rows=st.sampled_from([1, 3, 1000]),
)
def test_writing_a_chunk_at_once_ends_as_writing_it_row_by_row(touchpoint, monkeypatch, existing, rows, chunk_rows):
    monkeypatch.setattr(imports, "CHUNK_ROWS", chunk_rows)
    content = "email,name,external_id,locale\n" + "".join(",".join(row) + "\n" for row in rows)
    with transaction.atomic():
        taken = set()
        for email, external_id in existing:
            if email.lower() not in taken and external_id not in taken:
                CustomerFactory(email=email, external_id=external_id or None)
                taken |= {email.lower(), external_id or None}
        with transaction.atomic():
            one_by_one = _import_row_by_row(monkeypatch, content, touchpoint)
            expected = _state()
            transaction.set_rollback(True)

        summary, errors = _import(content, touchpoint)

        assert _state() == expected
        assert (summary.as_text(), errors) == (one_by_one[0].as_text(), one_by_one[1])
        transaction.set_rollback(True)
