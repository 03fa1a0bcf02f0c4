"""`manage.py import_responses FILE.csv [--touchpoint SLUG] [--dry-run]`: NPS history from Delighted and others."""

from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from surveys.dashboard import selectors as selectors_dashboard
from surveys.dashboard.services import daily_stats_rollup
from surveys.followups.services import case_alerts_sweep
from surveys.models import (
    Coupon,
    Customer,
    DailyStat,
    FollowUpCase,
    Invitation,
    ReferralLink,
    Response,
    SurveySkip,
    WebhookDelivery,
    WebhookEndpoint,
)
from surveys.privacy.services import customer_erase
from surveys.promoters.services import promoters_sweep

from ..factories import CustomerFactory, TouchpointFactory

pytestmark = pytest.mark.django_db

DELIGHTED_EXPORT = (
    "Response ID,Email,Name,Score,Comment,Created At,Plan,Region\n"
    '1001,ann@example.com,Ann Lee,10,"Great, fast",2024-03-01 10:00:00 -0800,pro,EU\n'
    '1002,bob@example.com,Bob Stone,3,"Slow ""support""",2024-03-02 09:30:00 -0800,basic,\n'
    "1003,ann@example.com,Ann Lee,8,,2024-03-05 23:30:00 -0800,pro,US\n"
)

PLAIN = (
    "email,score,comment,created_at\n"
    "ann@example.com,9,Good,2024-05-01T09:30:00Z\n"
    "bob@example.com,6,Meh,2024-05-02T10:00:00+02:00\n"
    "cat@example.com,7,,1714558200\n"
    "dan@example.com,10,Yes,2024-05-03\n"
)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


def run(*args) -> tuple[int, str, str]:
    """Run the command as the shell would; returns (exit status, stdout, stderr)."""
    stdout, stderr = StringIO(), StringIO()
    try:
        call_command("import_responses", *args, stdout=stdout, stderr=stderr)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def touchpoint(db):
    return TouchpointFactory(name="Web shop", slug="web", alert_recipients="cx@acme.test")


@pytest.fixture
def csv_file(tmp_path):
    def write(content: str | bytes, name: str = "history.csv") -> str:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    return write


def imported() -> list[tuple]:
    return list(
        Response.objects.order_by("created_at").values_list("customer__email", "score", "reason", "created_at")
    )


# --- Recognised formats ------------------------------------------------------------------


def test_a_delighted_export_is_imported_with_its_dates_names_and_extra_columns(touchpoint, csv_file):
    status, stdout, stderr = run(csv_file(DELIGHTED_EXPORT), "--touchpoint", "web")

    assert (status, stderr) == (0, "")
    assert stdout.strip() == "3 rows: 3 imported, 0 already imported, 0 errors."
    assert imported() == [
        ("ann@example.com", 10, "Great, fast", utc(2024, 3, 1, 18, 0)),
        ("bob@example.com", 3, 'Slow "support"', utc(2024, 3, 2, 17, 30)),
        ("ann@example.com", 8, "", utc(2024, 3, 6, 7, 30)),
    ]
    assert dict(Customer.objects.values_list("email", "name")) == {
        "ann@example.com": "Ann Lee",
        "bob@example.com": "Bob Stone",
    }
    properties = [
        invitation.properties for invitation in Invitation.objects.order_by("created_at")
    ]
    assert properties == [{"Plan": "pro", "Region": "EU"}, {"Plan": "basic"}, {"Plan": "pro", "Region": "US"}]
    response = Response.objects.get(reason="Great, fast")
    assert (response.touchpoint, response.category) == (touchpoint, "promoter")
    invitation = response.invitation
    assert (invitation.source, invitation.status) == ("history", "sent")
    assert invitation.sent_at == invitation.answered_at == response.created_at


def test_a_response_timestamp_header_is_recognised_too(touchpoint, csv_file):
    content = "Response ID,Email,Score,Comment,Response Timestamp\n7,ann@example.com,9,Hi,2024-03-01 10:00:00 +0100\n"

    assert run(csv_file(content), "--touchpoint", "web")[0] == 0

    assert imported() == [("ann@example.com", 9, "Hi", utc(2024, 3, 1, 9, 0))]


def test_a_plain_file_with_iso_and_unix_timestamps_is_imported(touchpoint, csv_file):
    status, _, _ = run(csv_file(PLAIN), "--touchpoint", "web")

    assert status == 0
    assert sorted(imported(), key=lambda row: row[0]) == [
        ("ann@example.com", 9, "Good", utc(2024, 5, 1, 9, 30)),
        ("bob@example.com", 6, "Meh", utc(2024, 5, 2, 8, 0)),
        ("cat@example.com", 7, "", utc(2024, 5, 1, 10, 10)),
        ("dan@example.com", 10, "Yes", utc(2024, 5, 3)),
    ]
    assert not any(Invitation.objects.values_list("properties", flat=True))


def test_a_semicolon_separated_file_is_imported(touchpoint, csv_file):
    content = "email;score;comment;created_at\nann@example.com;9;Gut, sehr gut;2024-05-01T09:30:00Z\n"

    assert run(csv_file(content), "--touchpoint", "web")[0] == 0

    assert imported() == [("ann@example.com", 9, "Gut, sehr gut", utc(2024, 5, 1, 9, 30))]


def test_a_file_with_a_byte_order_mark_is_imported(touchpoint, csv_file):
    status, _, stderr = run(csv_file(b"\xef\xbb\xbf" + PLAIN.encode()), "--touchpoint", "web")

    assert (status, stderr) == (0, "")
    assert Response.objects.count() == 4


def test_utf8_text_is_kept(touchpoint, csv_file):
    content = "email,name,score,comment,created_at\nana@example.com,José Ñúñez,9,Très bien 👍,2024-05-01T09:30:00Z\n"

    run(csv_file(content), "--touchpoint", "web")

    assert Customer.objects.get().name == "José Ñúñez"
    assert Response.objects.get().reason == "Très bien 👍"


def test_latin1_bytes_are_reported_by_line_not_a_crash(touchpoint, csv_file):
    content = (
        b"email,name,score,comment,created_at\n"
        b"ann@example.com,Ann,9,fine,2024-05-01T09:30:00Z\n"
        b"jose@example.com,Jos\xe9,9,Tr\xe8s bien,2024-05-01T09:30:00Z\n"
        b"bob@example.com,Bob,8,ok,2024-05-02T09:30:00Z\n"
    )

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1
    assert stderr.startswith("line 3: ")
    assert "UTF-8" in stderr
    assert sorted(email for email, *_ in imported()) == ["ann@example.com", "bob@example.com"]
    assert not Customer.objects.filter(email="jose@example.com").exists()


def test_nul_characters_are_reported_by_line_not_a_crash(touchpoint, csv_file):
    content = (
        "email,name,score,comment,created_at,plan\n"
        "ann@example.com,An\x00n,9,,2024-05-01T09:30:00Z,pro\n"
        "bob@example.com,Bob,9,,2024-05-01T09:30:00Z,p\x00ro\n"
        "cat@example.com,Cat,9,x\x00y,2024-05-01T09:30:00Z,pro\n"
        "dan@example.com,Dan,9,,2024-05-01T09:30:00Z,pro\n"
    )

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1
    assert [line.split(":")[0] for line in stderr.splitlines()] == ["line 2", "line 3", "line 4"]
    assert [email for email, *_ in imported()] == ["dan@example.com"]


def test_rows_before_a_line_that_cannot_be_read_are_imported_and_the_line_reported_last(touchpoint, csv_file):
    huge = "x" * 200_000  # more than the csv module accepts in one field
    content = (
        "email,score,created_at,comment\n"
        "ann@example.com,9,2024-05-01,fine\n"
        "bob@example.com,11,2024-05-01,too high\n"
        f"cat@example.com,8,2024-05-01,{huge}\n"
        "dan@example.com,9,2024-05-01,never read\n"
    )

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1
    lines = stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == ["line 3", "line 4"]
    assert lines[1].startswith("line 4: cannot be read (field larger than field limit")
    assert lines[1].endswith("the rest of the file was not read")
    assert [email for email, *_ in imported()] == ["ann@example.com"]


def test_a_latin1_header_is_refused_as_a_whole(touchpoint, csv_file):
    with pytest.raises(CommandError, match="line 1: the file is not UTF-8"):
        run(csv_file(b"e-mail,score,comment,cr\xe9\xe9 le\nann@example.com,9,,2024-05-01\n"), "--touchpoint", "web")

    assert not Response.objects.exists()


def test_a_touchpoint_column_sends_each_row_to_its_touchpoint(touchpoint, csv_file):
    TouchpointFactory(slug="store")
    content = (
        "email,score,created_at,touchpoint\n"
        "ann@example.com,9,2024-05-01,web\n"
        "bob@example.com,9,2024-05-01,store\n"
        "cat@example.com,9,2024-05-01,nowhere\n"
    )

    status, _, stderr = run(csv_file(content))

    assert status == 1
    assert stderr.strip() == "line 4: unknown touchpoint 'nowhere'"
    assert dict(Response.objects.values_list("customer__email", "touchpoint__slug")) == {
        "ann@example.com": "web",
        "bob@example.com": "store",
    }


def test_without_touchpoint_the_api_default_touchpoint_is_used(touchpoint, csv_file):
    default = TouchpointFactory(slug="default", is_api_default=True)

    assert run(csv_file(PLAIN))[0] == 0

    assert set(Response.objects.values_list("touchpoint", flat=True)) == {default.pk}


# --- Bad rows --------------------------------------------------------------------------


def test_bad_rows_are_reported_by_line_and_the_good_rows_imported(touchpoint, csv_file):
    future = (timezone.now() + timedelta(days=2)).isoformat()
    content = (
        "email,score,comment,created_at\n"  # 1
        "ann@example.com,9,ok,2024-05-01T09:30:00Z\n"  # 2
        "not-an-email,9,,2024-05-01T09:30:00Z\n"  # 3
        "bob@example.com,11,,2024-05-01T09:30:00Z\n"  # 4
        "cat@example.com,8,,last tuesday\n"  # 5
        f"dan@example.com,8,,{future}\n"  # 6
        'eve@example.com,7,"two\nlines",2024-05-02T09:30:00Z\n'  # 7-8
        "fay@example.com,x,,2024-05-02T09:30:00Z\n"  # 9
        "\n"  # 10
        "gus@example.com,5,,2024-05-03T09:30:00Z\n"  # 11
        "hal@example.com,-1,,2024-05-03T09:30:00Z\n"  # 12
        "ivy@example.com,9,,\n"  # 13
    )

    status, stdout, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1
    lines = stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "line 3", "line 4", "line 5", "line 6", "line 9", "line 12", "line 13"
    ]
    assert lines[0] == "line 3: invalid email 'not-an-email'"
    assert "0 to 10" in lines[1] and "'11'" in lines[1]
    assert "date" in lines[2] and "last tuesday" in lines[2]
    assert lines[3] == "line 6: the date is in the future"
    assert stdout.strip() == "10 rows: 3 imported, 0 already imported, 7 errors."
    assert sorted(email for email, *_ in imported()) == ["ann@example.com", "eve@example.com", "gus@example.com"]
    assert Response.objects.get(customer__email="eve@example.com").reason == "two\nlines"
    assert not Customer.objects.exclude(email__in=["ann@example.com", "eve@example.com", "gus@example.com"]).exists()


def test_an_address_too_long_to_store_is_reported(touchpoint, csv_file):
    # Valid by RFC 5321's 320 characters, but longer than the 254 an address field holds.
    long_email = "a" * 64 + "@" + ".".join(["b" * 60] * 4) + ".com"
    content = f"email,score,created_at\n{long_email},9,2024-05-01\nbob@example.com,9,2024-05-01\n"

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1 and stderr.startswith("line 2: ")
    assert [email for email, *_ in imported()] == ["bob@example.com"]


def test_a_bad_row_spanning_several_lines_is_reported_where_it_starts(touchpoint, csv_file):
    content = (
        "email,score,comment,created_at\n"  # 1
        'ann@example.com,11,"first\nsecond\nthird",2024-05-01\n'  # 2-4
        "bob@example.com,12,,2024-05-01\n"  # 5
    )

    _, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert [line.split(":")[0] for line in stderr.splitlines()] == ["line 2", "line 5"]


def test_a_comment_over_the_length_limit_is_reported(touchpoint, csv_file):
    content = f"email,score,comment,created_at\nann@example.com,9,{'x' * 2001},2024-05-01\n"

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1 and stderr.startswith("line 2: ")
    assert not Response.objects.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty"),
        ("email,comment\nann@example.com,hi\n", "missing column(s) score, created_at"),
        ("name,score,created_at\nAnn,9,2024-05-01\n", "missing column(s) email"),
    ],
)
def test_a_file_without_the_needed_columns_is_refused(touchpoint, csv_file, content, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run(csv_file(content), "--touchpoint", "web")


def test_an_unknown_touchpoint_is_a_command_error(touchpoint, csv_file):
    with pytest.raises(CommandError, match="nowhere"):
        run(csv_file(PLAIN), "--touchpoint", "nowhere")

    assert not Response.objects.exists()


def test_with_several_touchpoints_and_no_default_the_command_asks_which(touchpoint, csv_file):
    TouchpointFactory(slug="store")

    with pytest.raises(CommandError, match="--touchpoint"):
        run(csv_file(PLAIN))
    assert not Response.objects.exists()


def test_with_one_touchpoint_and_no_default_the_history_is_about_that_one(touchpoint, csv_file):
    run(csv_file(PLAIN))

    assert set(Response.objects.values_list("touchpoint", flat=True)) == {touchpoint.pk}


def test_a_missing_file_is_a_command_error(touchpoint, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        run(str(tmp_path / "nope.csv"), "--touchpoint", "web")


# --- Re-import ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", [DELIGHTED_EXPORT, PLAIN], ids=["with-response-id", "without-response-id"])
def test_importing_the_same_file_again_adds_nothing(touchpoint, csv_file, content):
    path = csv_file(content)
    run(path, "--touchpoint", "web")
    before = (Customer.objects.count(), Invitation.objects.count(), imported())

    status, stdout, stderr = run(path, "--touchpoint", "web")

    assert (status, stderr) == (0, "")
    rows = content.count("\n") - 1
    assert stdout.strip() == f"{rows} rows: 0 imported, {rows} already imported, 0 errors."
    assert (Customer.objects.count(), Invitation.objects.count(), imported()) == before


def test_a_response_id_seen_before_is_not_imported_again_even_if_the_row_changed(touchpoint, csv_file):
    run(csv_file(DELIGHTED_EXPORT), "--touchpoint", "web")
    edited = DELIGHTED_EXPORT.replace('"Great, fast"', "Edited later")

    status, stdout, _ = run(csv_file(edited, "edited.csv"), "--touchpoint", "web")

    assert status == 0
    assert "0 imported, 3 already imported" in stdout
    assert not Response.objects.filter(reason="Edited later").exists()


def test_a_file_that_extends_an_earlier_one_adds_only_the_new_rows(touchpoint, csv_file):
    run(csv_file(PLAIN), "--touchpoint", "web")

    status, stdout, _ = run(
        csv_file(PLAIN + "eve@example.com,8,New,2024-05-04T09:00:00Z\n", "more.csv"), "--touchpoint", "web"
    )

    assert status == 0
    assert "1 imported, 4 already imported" in stdout
    assert Response.objects.count() == 5


# --- Dashboard, and nothing set in motion -------------------------------------------------


def march_headline(start=date(2024, 3, 1), end=date(2024, 3, 31)):
    return selectors_dashboard.headline(start=start, end=end, touchpoint=None)


def test_imported_responses_count_in_the_dashboard_at_their_dates(touchpoint, csv_file):
    run(csv_file(DELIGHTED_EXPORT), "--touchpoint", "web")

    month = march_headline()
    sixth = march_headline(date(2024, 3, 6), date(2024, 3, 6))
    fifth = march_headline(date(2024, 3, 5), date(2024, 3, 5))

    assert month["counts"].responses == 3
    assert (month["nps"].promoters, month["nps"].passives, month["nps"].detractors) == (1, 1, 1)
    assert month["nps"].score == 0
    assert month["counts"].invitations_sent == 3
    # 23:30 on 5 March in California is 6 March in UTC, the company's time zone here.
    assert (sixth["counts"].responses, fifth["counts"].responses) == (1, 0)
    # April's comparison period is 2–31 March: the answer of 1 March falls outside it.
    assert march_headline(date(2024, 4, 1), date(2024, 4, 30))["previous"].responses == 2


def test_imported_responses_stay_in_the_dashboard_after_the_rollup(touchpoint, csv_file):
    run(csv_file(DELIGHTED_EXPORT), "--touchpoint", "web")
    live = march_headline()

    daily_stats_rollup()

    assert DailyStat.objects.filter(day=date(2024, 3, 1), score_10=1).exists()
    rolled = march_headline()
    assert rolled["counts"].scores == live["counts"].scores
    assert rolled["nps"] == live["nps"]


def test_history_imported_after_a_rollup_is_counted_at_once(touchpoint, csv_file):
    daily_stats_rollup()  # the dashboard now reads closed days from the rollup

    run(csv_file(DELIGHTED_EXPORT), "--touchpoint", "web")

    assert march_headline()["counts"].responses == 3
    assert march_headline(date(2024, 3, 6), date(2024, 3, 6))["counts"].scores[8] == 1


def test_imported_history_sets_nothing_in_motion(touchpoint, csv_file, django_capture_on_commit_callbacks):
    WebhookEndpoint.objects.create(
        name="CRM", url="https://crm.example.com/hook", events=["response.created", "case.opened", "coupon.redeemed"]
    )
    recent = (timezone.now() - timedelta(days=2)).strftime("%Y-%m-%d %H:%M:%S +0000")
    content = (
        "email,score,comment,created_at\n"
        f"ann@example.com,10,Love it,{recent}\n"
        f"bob@example.com,0,Awful,{recent}\n"
        f"cat@example.com,7,Fine,{recent}\n"
    )

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        status, _, _ = run(csv_file(content), "--touchpoint", "web")
    promoters_sweep()
    case_alerts_sweep()

    assert status == 0
    assert Response.objects.count() == 3
    assert callbacks == []
    assert not Coupon.objects.exists()
    assert not ReferralLink.objects.exists()
    assert not FollowUpCase.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert mail.outbox == []


def test_a_dry_run_writes_nothing_and_reports_what_would_happen(touchpoint, csv_file):
    CustomerFactory(email="ann@example.com", name="Current name")
    content = DELIGHTED_EXPORT + "1004,not-an-email,X,9,,2024-03-07 10:00:00 -0800,pro,EU\n"

    status, stdout, stderr = run(csv_file(content), "--touchpoint", "web", "--dry-run")

    assert status == 1
    assert stderr.strip() == "line 5: invalid email 'not-an-email'"
    assert stdout.strip() == "Dry run, nothing written: would have 4 rows: 3 imported, 0 already imported, 1 errors."
    assert list(Customer.objects.values_list("email", "name")) == [("ann@example.com", "Current name")]
    assert not Invitation.objects.exists()
    assert not Response.objects.exists()
    assert not DailyStat.objects.exists()


def test_a_dry_run_after_an_import_reports_the_rows_as_already_imported(touchpoint, csv_file):
    path = csv_file(DELIGHTED_EXPORT)
    run(path, "--touchpoint", "web")

    status, stdout, _ = run(path, "--touchpoint", "web", "--dry-run")

    assert status == 0
    assert "0 imported, 3 already imported" in stdout


# --- Erased addresses -------------------------------------------------------------------------


def test_an_erased_address_is_not_imported(touchpoint, csv_file):
    ann = CustomerFactory(email="ann@example.com")
    customer_erase(customer=ann)
    content = (
        "email,score,comment,created_at\n"
        "ANN@Example.com,9,Ann's words,2024-05-01T09:30:00Z\n"
        "bob@example.com,8,ok,2024-05-01T09:30:00Z\n"
    )

    status, _, stderr = run(csv_file(content), "--touchpoint", "web")

    assert status == 1
    assert stderr.startswith("line 2: ") and "erased" in stderr
    assert not Customer.objects.filter(email__iexact="ann@example.com").exists()
    assert not Response.objects.filter(reason="Ann's words").exists()
    assert [email for email, *_ in imported()] == ["bob@example.com"]
    assert not SurveySkip.objects.exists()
