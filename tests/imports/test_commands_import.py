"""`manage.py import_customers FILE.csv --touchpoint SLUG [--send] [--dry-run]`."""

import io
import os
import sys
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from surveys.imports import customers as imports
from surveys.models import Customer, Invitation

pytestmark = pytest.mark.django_db

GOOD_AND_BAD = (
    "email,name,external_id,phone,locale\n"
    "ana@example.com,Ana,crm-1,,es\n"
    "not-an-email,Bob,,,\n"
    "carl@example.com,Carl,,,xx\n"
    "dora@example.com,Dora,,,\n"
)


def _run(*args) -> tuple[int, str, str]:
    """Run the command as the shell would; returns (exit status, stdout, stderr)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command("import_customers", *args, stdout=stdout, stderr=stderr)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def csv_file(tmp_path):
    def write(content: str | bytes, name: str = "customers.csv"):
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return write


def test_it_imports_a_clean_file_and_exits_zero(touchpoint, csv_file):
    status, stdout, stderr = _run(csv_file("email,name\nana@example.com,Ana\nbob@example.com,Bob\n"), "--touchpoint", "delivery")

    assert status == 0
    assert stderr == ""
    assert stdout.strip() == "2 rows: 2 created, 0 updated, 0 unchanged, 0 invited, skipped: none, 0 errors."
    assert Customer.objects.count() == 2


def test_it_reports_bad_rows_on_stderr_imports_the_rest_and_exits_one(touchpoint, csv_file):
    status, stdout, stderr = _run(csv_file(GOOD_AND_BAD), "--touchpoint", "delivery")

    assert status == 1
    lines = stderr.splitlines()
    assert lines[0] == "line 3: invalid email 'not-an-email'"
    assert lines[1].startswith("line 4: unknown locale 'xx'")
    assert len(lines) == 2
    assert "line " not in stdout
    assert "2 created" in stdout and "2 errors" in stdout
    assert sorted(Customer.objects.values_list("email", flat=True)) == ["ana@example.com", "dora@example.com"]


def test_without_send_no_email_is_sent(touchpoint, csv_file, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        status, stdout, _ = _run(csv_file("email,name\nana@example.com,Ana\n"), "--touchpoint", "delivery")

    assert status == 0
    assert "0 invited" in stdout
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_with_send_each_good_row_is_surveyed(touchpoint, csv_file, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        status, stdout, _ = _run(csv_file(GOOD_AND_BAD), "--touchpoint", "delivery", "--send")

    assert status == 1
    assert "2 invited" in stdout
    assert sorted(message.to[0] for message in mail.outbox) == ["ana@example.com", "dora@example.com"]
    assert set(Invitation.objects.values_list("touchpoint__slug", "status")) == {("delivery", "sent")}


def test_a_dry_run_reports_the_same_and_writes_nothing(touchpoint, csv_file, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        status, stdout, stderr = _run(csv_file(GOOD_AND_BAD), "--touchpoint", "delivery", "--send", "--dry-run")

    assert status == 1
    assert stderr.splitlines()[0] == "line 3: invalid email 'not-an-email'"
    assert stdout.startswith("Dry run, nothing written: would have 4 rows: 2 created")
    assert not Customer.objects.exists()
    assert not Invitation.objects.exists()
    assert mail.outbox == []


def test_an_unknown_touchpoint_is_refused_before_reading_the_file(touchpoint, csv_file):
    with pytest.raises(CommandError, match="No touchpoint has the slug 'nowhere'"):
        _run(csv_file("email,name\nana@example.com,Ana\n"), "--touchpoint", "nowhere")

    assert not Customer.objects.exists()


def test_a_missing_file_is_refused(touchpoint, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        _run(str(tmp_path / "missing.csv"), "--touchpoint", "delivery")


def test_a_file_without_a_usable_header_is_refused(touchpoint, csv_file):
    with pytest.raises(CommandError, match="line 1: missing column"):
        _run(csv_file("mail,fullname\nana@example.com,Ana\n"), "--touchpoint", "delivery")

    assert not Customer.objects.exists()


def test_the_touchpoint_is_required(touchpoint, csv_file):
    with pytest.raises(CommandError, match="--touchpoint"):
        _run(csv_file("email,name\n"))


def test_it_reads_standard_input_when_the_file_is_a_dash(touchpoint, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO("\ufeffemail;name\nana@example.com;Ana López\n".encode()), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)

    status, stdout, _ = _run("-", "--touchpoint", "delivery")

    assert status == 0
    assert "1 created" in stdout
    assert Customer.objects.get().name == "Ana López"


def test_it_prints_no_progress_when_stderr_is_not_a_terminal(touchpoint, csv_file, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 100)
    rows = "".join(f"c{n}@example.com,C{n}\n" for n in range(250))

    status, _, stderr = _run(csv_file(f"email,name\n{rows}"), "--touchpoint", "delivery")

    assert status == 0
    assert stderr == ""
    assert Customer.objects.count() == 250


def test_it_shows_its_progress_on_a_terminal(touchpoint, csv_file, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 100)
    rows = "".join(f"c{n}@example.com,C{n}\n" for n in range(250))
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", encoding="utf-8") as stderr:
            call_command(
                "import_customers", csv_file(f"email,name\n{rows}"), "--touchpoint", "delivery",
                stdout=StringIO(), stderr=stderr,
            )
        shown = b""
        while True:  # the terminal is closed: read what it showed, to the end
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)

    redrawn = [frame.strip() for frame in shown.decode().split("\r") if frame.strip()]
    assert any(frame.endswith("rows/s") and "100 rows…" in frame for frame in redrawn)
    assert redrawn[-1].startswith("[" + "#" * 30 + "] 100%  250 rows…")
    assert Customer.objects.count() == 250


def test_bad_rows_shown_on_a_terminal_are_not_mixed_with_the_progress_bar(touchpoint, csv_file, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    controller, terminal = os.openpty()
    try:
        with open(terminal, "w", encoding="utf-8") as stderr:
            with pytest.raises(SystemExit):
                call_command(
                    "import_customers", csv_file("email,name\nana@example.com,Ana\nbob@example.com,Bob\nbad,Bad\n"),
                    "--touchpoint", "delivery", stdout=StringIO(), stderr=stderr,
                )
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)

    lines = [line.split("\r")[-1] for line in shown.decode().replace("\r\n", "\n").split("\n")]
    assert "line 4: invalid email 'bad'" in lines
