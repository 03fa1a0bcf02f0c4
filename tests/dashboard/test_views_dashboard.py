"""The manager dashboard page and its CSV export: access, filters, figures, safety, query count."""

import csv
import io
import re
from datetime import date, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from surveys.dashboard.services import daily_stats_rollup
from surveys.models import Coupon, FollowUpCase

from ..factories import CustomerFactory, ResponseFactory, TouchpointFactory

pytestmark = pytest.mark.django_db

EXPORT_HEADER = "created_at,touchpoint,customer_email,customer_name,external_id,score,category,reason"


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def respond(touchpoint, score: int, day: date, *, hour: int = 12, minute: int = 0, reason: str = "", **extra):
    return ResponseFactory(
        invitation__touchpoint=touchpoint,
        invitation__sent_at=at(day, 0),
        created_at=at(day, hour, minute),
        score=score,
        reason=reason,
        **extra,
    )


@pytest.fixture
def today():
    return timezone.localdate()


@pytest.fixture
def manager(django_user_model):
    user = django_user_model.objects.create_user("morgan", "morgan@example.com", "a-long-password")
    user.groups.add(Group.objects.get(name="Managers"))
    return user


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def responses_shown(response) -> int:
    match = re.search(r'id="responses-count">(\d+)<', response.content.decode())
    assert match, "no response count on the page"
    return int(match.group(1))


def nps_shown(response) -> str:
    match = re.search(r'id="nps-score">([^<]*)<', response.content.decode())
    assert match, "no NPS on the page"
    return match.group(1).strip()


def comment_texts(response) -> list[str]:
    html = response.content.decode()
    if 'id="comment-list"' not in html:
        return []
    block = html.split('id="comment-list"', 1)[1].split("</ul>", 1)[0]
    return [text.strip() for text in re.findall(r"<div>(.*?)</div>", block, re.DOTALL)]


def error_text(response) -> str:
    html = response.content.decode()
    match = re.search(r'<div class="alert alert-warning[^"]*" role="alert">(.*?)</div>', html, re.DOTALL)
    return match.group(1) if match else ""


# --- access ---------------------------------------------------------------------


def test_the_managers_group_carries_the_dashboard_permission():
    group = Group.objects.get(name="Managers")
    assert group.permissions.filter(content_type__app_label="surveys", codename="view_dashboard").exists()


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/export.csv"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/export.csv"])
def test_it_refuses_a_user_without_the_permission(client, django_user_model, path):
    user = django_user_model.objects.create_user("casey", "casey@example.com", "pw")
    client.force_login(user)
    assert client.get(path).status_code == 403
    staff = django_user_model.objects.create_user("sam", "sam@example.com", "pw", is_staff=True)
    client.force_login(staff)
    assert client.get(path).status_code == 403


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/export.csv"])
def test_it_lets_a_manager_in(manager_client, path):
    assert manager_client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/export.csv"])
def test_it_lets_a_superuser_in(client, django_user_model, path):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    assert client.get(path).status_code == 200


def test_a_manager_logs_in_through_the_login_page_and_lands_on_the_dashboard(client, manager):
    response = client.post(
        "/accounts/login/", {"username": "morgan", "password": "a-long-password", "next": "/dashboard/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200


def test_it_accepts_no_post(manager_client):
    assert manager_client.post("/dashboard/").status_code == 405


# --- figures and filters ----------------------------------------------------------


@pytest.fixture
def spread_out(today):
    """Answers spread over the past year and more, at two touchpoints.

    delivery: 10 today, 9 on today−3, 0 on today−20, 8 on today−60, 2 on today−200, 10 on today−400
    store:    6 on today−3
    """
    delivery = TouchpointFactory(name="Home delivery", slug="delivery")
    store = TouchpointFactory(name="Store visit", slug="store")
    offsets = {0: 10, 3: 9, 20: 0, 60: 8, 200: 2, 400: 10}
    for offset, score in offsets.items():
        respond(delivery, score, today - timedelta(days=offset), hour=0, reason=f"delivery {offset} days ago")
    respond(store, 6, today - timedelta(days=3), hour=0, reason="store 3 days ago")
    return {"delivery": delivery, "store": store, "offsets": [*offsets, 3]}


def expected_since(spread_out, today, start: date) -> int:
    return sum(1 for offset in spread_out["offsets"] if today - timedelta(days=offset) >= start)


def test_it_shows_the_headline_figures(manager_client, spread_out):
    """Default: the last 90 days → 10, 9, 0, 8 (delivery) and 6 (store): P 2, passives 1, D 2, n 5 → 0."""
    response = manager_client.get("/dashboard/")
    assert responses_shown(response) == 5
    assert nps_shown(response) == "0"
    html = response.content.decode()
    assert "Only 5 responses: fewer than 30" in html
    assert "Home delivery" in html and "Store visit" in html


@pytest.mark.parametrize(
    ("preset", "days"),
    [("7", 7), ("30", 30), ("90", 90)],
)
def test_the_period_presets_change_the_figures(manager_client, spread_out, today, preset, days):
    response = manager_client.get(f"/dashboard/?range={preset}")
    assert response.status_code == 200
    assert responses_shown(response) == expected_since(spread_out, today, today - timedelta(days=days - 1))
    html = response.content.decode()
    assert f"{today - timedelta(days=days - 1):%Y-%m-%d} – {today:%Y-%m-%d}" in html
    assert f'class="btn btn-sm btn-primary" href="?range={preset}"' in html


def test_the_7_day_preset_shows_what_the_last_week_holds(manager_client, spread_out):
    """10 today, 9 and 6 three days ago: P 2, D 1, n 3 → 33."""
    response = manager_client.get("/dashboard/?range=7")
    assert responses_shown(response) == 3
    assert nps_shown(response) == "+33"


def test_the_quarter_and_year_presets(manager_client, spread_out, today):
    quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    response = manager_client.get("/dashboard/?range=quarter")
    assert responses_shown(response) == expected_since(spread_out, today, quarter_start)
    assert f"{quarter_start:%Y-%m-%d} – {today:%Y-%m-%d}" in response.content.decode()
    response = manager_client.get("/dashboard/?range=year")
    assert responses_shown(response) == expected_since(spread_out, today, date(today.year, 1, 1))
    assert f"{today.year}-01-01 – {today:%Y-%m-%d}" in response.content.decode()


def test_a_custom_range(manager_client, spread_out, today):
    start, end = today - timedelta(days=25), today - timedelta(days=15)
    response = manager_client.get(f"/dashboard/?from={start:%Y-%m-%d}&to={end:%Y-%m-%d}")
    assert responses_shown(response) == 1
    assert nps_shown(response) == "−100"
    html = response.content.decode()
    assert f"{start:%Y-%m-%d} – {end:%Y-%m-%d}" in html
    assert f'name="from" value="{start:%Y-%m-%d}"' in html
    assert f'name="to" value="{end:%Y-%m-%d}"' in html
    # A single day, long ago: one 10.
    day = today - timedelta(days=400)
    response = manager_client.get(f"/dashboard/?from={day:%Y-%m-%d}&to={day:%Y-%m-%d}")
    assert (responses_shown(response), nps_shown(response)) == (1, "+100")


def test_the_touchpoint_filter(manager_client, spread_out):
    response = manager_client.get("/dashboard/?range=7&touchpoint=store")
    assert responses_shown(response) == 1
    assert nps_shown(response) == "−100"
    html = response.content.decode()
    assert "· Store visit</div>" in html
    assert '<option value="store" selected>' in html
    assert comment_texts(response) == ["store 3 days ago"]
    # The presets keep the touchpoint.
    assert 'href="?range=30&amp;touchpoint=store"' in html
    response = manager_client.get("/dashboard/?range=7&touchpoint=delivery")
    assert (responses_shown(response), nps_shown(response)) == (2, "+100")


def test_the_category_filter_on_comments(manager_client, spread_out):
    response = manager_client.get("/dashboard/?range=30&category=detractor")
    assert comment_texts(response) == ["store 3 days ago", "delivery 20 days ago"]
    assert responses_shown(response) == 4  # the headline is not filtered by category
    response = manager_client.get("/dashboard/?range=30&category=promoter")
    assert comment_texts(response) == ["delivery 0 days ago", "delivery 3 days ago"]
    assert '<option value="promoter" selected>' in response.content.decode()


def test_the_comment_search(manager_client, spread_out):
    response = manager_client.get("/dashboard/?range=90&q=STORE")
    assert comment_texts(response) == ["store 3 days ago"]
    assert 'value="STORE"' in response.content.decode()
    response = manager_client.get("/dashboard/?range=90&q=no+such+words")
    assert comment_texts(response) == []
    assert "No comments match." in response.content.decode()


def test_comment_pages(manager_client, today):
    touchpoint = TouchpointFactory()
    for minute in range(25):
        respond(touchpoint, 9, today, hour=0, minute=minute, reason=f"comment number {minute}")
    first = manager_client.get("/dashboard/?range=7")
    assert len(comment_texts(first)) == 20
    assert comment_texts(first)[0] == "comment number 24"
    assert 'href="?range=7&amp;page=2#comments">Older</a>' in first.content.decode()
    second = manager_client.get("/dashboard/?range=7&page=2")
    assert comment_texts(second) == [f"comment number {minute}" for minute in range(4, -1, -1)]
    assert ">Newer</a>" in second.content.decode()
    assert ">Older</a>" not in second.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2025-02-30&to=2025-03-10", "Enter a valid date."),
        ("from=yesterday", "Enter a valid date."),
        ("from=2025-03-10&to=2025-03-01", "The start date must be on or before the end date."),
        ("from=1990-01-01&to=2025-01-01", "at most ten years"),
        ("range=fortnight", "Select a valid choice."),
        ("page=0", "greater than or equal to 1"),
        ("page=abc", "Enter a whole number."),
        ("touchpoint=%3Cscript%3E", "slug"),
        ("from=0001-01-01&to=0001-01-05", "Choose dates between 1970-01-01 and 2999-12-31."),
        ("from=9999-12-25&to=9999-12-31", "Choose dates between 1970-01-01 and 2999-12-31."),
        ("from=0001-01-01", ""),
        ("q=%00", "Null characters are not allowed."),
    ],
)
def test_bad_parameters_show_a_message_not_an_error_page(manager_client, spread_out, query, message):
    response = manager_client.get(f"/dashboard/?{query}")
    assert response.status_code == 200
    shown = error_text(response)
    assert shown.strip(), "no visible message"
    assert message in shown
    # The default view (the last 90 days) is shown instead.
    assert responses_shown(response) == 5


@pytest.mark.parametrize(
    "query", ["from=2025-03-10&to=2025-03-01", "from=0001-01-01&to=0001-01-05", "from=9999-12-25&to=9999-12-31"]
)
def test_bad_parameters_do_not_break_the_export(manager_client, spread_out, query):
    response = manager_client.get(f"/dashboard/export.csv?{query}")
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))
    assert len(rows) == 1 + 5


def test_an_unknown_touchpoint_is_reported(manager_client, spread_out):
    response = manager_client.get("/dashboard/?touchpoint=nowhere")
    assert response.status_code == 200
    assert "No touchpoint" in error_text(response)
    assert "nowhere" in error_text(response)
    assert "showing all touchpoints" in error_text(response)
    assert responses_shown(response) == 5


def test_not_enough_data_without_responses(manager_client):
    TouchpointFactory()
    response = manager_client.get("/dashboard/")
    assert response.status_code == 200
    assert nps_shown(response) == "Not enough data"
    assert responses_shown(response) == 0


def test_the_small_sample_warning_follows_the_minimum(manager_client, settings, today):
    settings.NPS_MIN_RESPONSES = 5
    touchpoint = TouchpointFactory()
    for _ in range(4):
        respond(touchpoint, 10, today, hour=0)
    response = manager_client.get("/dashboard/?range=7")
    assert "Only 4 responses: fewer than 5" in response.content.decode()
    assert "adjusted-Wald" in response.content.decode()
    respond(touchpoint, 10, today, hour=0)
    response = manager_client.get("/dashboard/?range=7")
    assert "fewer than 5" not in response.content.decode()
    assert nps_shown(response) == "+100"
    assert "(±0.0)" in response.content.decode()


def test_the_change_and_its_significance_are_shown(manager_client, today):
    """Now 40 promoters (100), the 7 days before 40 detractors (−100): +200 points, significant."""
    touchpoint = TouchpointFactory()
    for minute in range(40):
        respond(touchpoint, 10, today, hour=0, minute=minute)
        respond(touchpoint, 0, today - timedelta(days=10), minute=minute)
    response = manager_client.get("/dashboard/?range=7")
    html = response.content.decode()
    assert "+200.0 points vs" in html
    assert "statistically significant" in html


def test_the_chart_data_is_embedded(manager_client, spread_out):
    response = manager_client.get("/dashboard/?range=7")
    html = response.content.decode()
    assert '<script id="dashboard-data" type="application/json">' in html
    assert '"distribution": [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 1]' in html
    assert '"granularity": "week"' in html
    for canvas in ("chart-trend", "chart-distribution", "chart-shares"):
        assert f'<canvas id="{canvas}"' in html
    assert "vendor/chartjs/chart.umd.min.js" in html


def test_the_follow_up_and_promoter_panels(manager_client, today):
    touchpoint = TouchpointFactory()
    detractor = respond(touchpoint, 2, today - timedelta(days=5))
    FollowUpCase.objects.create(
        response=detractor,
        customer=detractor.customer,
        touchpoint=touchpoint,
        opened_at=detractor.created_at,
        due_at=detractor.created_at + timedelta(hours=48),
    )
    promoter = respond(touchpoint, 10, today - timedelta(days=5))
    Coupon.objects.create(
        response=promoter,
        customer=promoter.customer,
        issued_at=promoter.created_at,
        expires_at=promoter.created_at + timedelta(days=30),
        emailed_at=promoter.created_at,
    )
    html = manager_client.get("/dashboard/?range=30").content.decode()
    assert "Detractor follow-up" in html
    assert "0 of 1 opened in period" in html
    assert "Promoter results" in html


# --- escaping -------------------------------------------------------------------


def test_customer_text_is_escaped(manager_client, today):
    payload = "<script>alert(1)</script>"
    touchpoint = TouchpointFactory(name="<b>Shop</b>")
    customer = CustomerFactory(name=payload, external_id=payload)
    respond(touchpoint, 0, today, hour=0, reason=payload, invitation__customer=customer)
    response = manager_client.get("/dashboard/?range=7")
    html = response.content.decode()
    assert response.status_code == 200
    assert payload not in html
    assert "<b>Shop</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert comment_texts(response) == ["&lt;script&gt;alert(1)&lt;/script&gt;"]
    response = manager_client.get("/dashboard/?range=7&q=%3Cscript%3E")
    assert payload not in response.content.decode()
    assert comment_texts(response) == ["&lt;script&gt;alert(1)&lt;/script&gt;"]


# --- query count ----------------------------------------------------------------


def _populate(touchpoints, today, count: int, first: int = 0) -> None:
    for index in range(first, first + count):
        day = today - timedelta(days=index % 80)
        response = respond(touchpoints[index % len(touchpoints)], index % 11, day, hour=0, minute=index % 60,
                           reason=f"reason {index}" if index % 3 else "")
        if response.score <= 6:
            FollowUpCase.objects.create(
                response=response,
                customer=response.customer,
                touchpoint=response.touchpoint,
                opened_at=response.created_at,
                due_at=response.created_at + timedelta(hours=48),
                status="resolved" if index % 2 else "open",
                resolved_at=response.created_at + timedelta(hours=index % 50) if index % 2 else None,
            )
        elif response.score >= 9:
            Coupon.objects.create(
                response=response,
                customer=response.customer,
                issued_at=response.created_at,
                expires_at=response.created_at + timedelta(days=30),
            )


def _count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/?range=year&category=detractor&q=reason"])
def test_the_number_of_queries_does_not_grow_with_the_data(manager_client, today, url):
    touchpoints = [TouchpointFactory(), TouchpointFactory(), TouchpointFactory()]
    _populate(touchpoints, today, 10)
    small = _count_queries(manager_client, url)
    _populate(touchpoints, today, 290, first=10)
    large = _count_queries(manager_client, url)
    daily_stats_rollup(full=True)
    rolled = _count_queries(manager_client, url)
    _populate(touchpoints, today, 300, first=300)
    daily_stats_rollup(full=True)
    rolled_larger = _count_queries(manager_client, url)
    print(
        f"dashboard {url}: {small} queries with 10 responses, {large} with 300, "
        f"{rolled} with the rollup, {rolled_larger} with the rollup at 600"
    )
    assert small == large
    # With the rollup, each panel adds one aggregate over the rolled days: still fixed, never per row.
    assert rolled == rolled_larger
    assert large <= 30 and rolled <= 30


# --- CSV export -----------------------------------------------------------------


def export(client, query: str = "") -> tuple[object, list[list[str]]]:
    response = client.get(f"/dashboard/export.csv{query}")
    assert response.status_code == 200
    assert response.streaming is True
    body = b"".join(response.streaming_content)
    return response, list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))


def test_the_export_streams_utf8_csv_with_the_header(manager_client, spread_out):
    response, rows = export(manager_client)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="responses-')
    assert ",".join(rows[0]) == EXPORT_HEADER
    assert len(rows) == 1 + 5  # the last 90 days, one row per response
    assert sorted(int(row[5]) for row in rows[1:]) == [0, 6, 8, 9, 10]


def test_the_export_follows_range_and_touchpoint(manager_client, spread_out, today):
    _, rows = export(manager_client, "?range=7&touchpoint=store")
    assert [(row[1], row[5], row[6]) for row in rows[1:]] == [("store", "6", "detractor")]
    _, rows = export(manager_client, "?range=year&touchpoint=delivery")
    assert all(row[1] == "delivery" for row in rows[1:])
    start = today - timedelta(days=500)
    _, rows = export(manager_client, f"?from={start:%Y-%m-%d}&to={today:%Y-%m-%d}")
    assert len(rows) == 1 + 7
    # Oldest first, ISO 8601 timestamps.
    assert rows[1][0] == at(today - timedelta(days=400), 0).isoformat()
    assert [row[0] for row in rows[1:]] == sorted(row[0] for row in rows[1:])


def test_the_export_keeps_non_ascii_text(manager_client, today):
    touchpoint = TouchpointFactory(slug="cafe")
    customer = CustomerFactory(name="Zoë Ångström-Łukasz 東京", email="zoe@example.com", external_id="crm-7")
    respond(touchpoint, 9, today, hour=0, reason="Très bien, merci — 👍", invitation__customer=customer)
    _, rows = export(manager_client, "?range=7")
    assert rows[1][1:] == ["cafe", "zoe@example.com", "Zoë Ångström-Łukasz 東京", "crm-7", "9", "promoter",
                           "Très bien, merci — 👍"]


def test_the_export_neutralises_spreadsheet_formulas(manager_client, today):
    touchpoint = TouchpointFactory()
    cases = [
        ('=HYPERLINK("http://evil.example","click")', "+1 great service", "-42"),
        ("@SUM(A1:A9)", "=1+1", "+33"),
        ("-minus", "@here", "=cmd|' /C calc'!A0"),
        ("\t=tab", "\r=cr", "ok-id"),
    ]
    for index, (name, reason, external_id) in enumerate(cases):
        customer = CustomerFactory(name=name, external_id=external_id)
        respond(touchpoint, 5, today, hour=0, minute=index, reason=reason, invitation__customer=customer)
    respond(touchpoint, 10, today, hour=0, minute=30, reason="Plain = fine",
            invitation__customer=CustomerFactory(name="Ann Lee", external_id=None))
    _, rows = export(manager_client, "?range=7")
    body = rows[1:]
    dangerous = ("=", "+", "-", "@", "\t", "\r")
    for row in body:
        for cell in row:
            assert not cell.startswith(dangerous), row
    by_name = {row[3]: row for row in body}
    assert by_name["'=HYPERLINK(\"http://evil.example\",\"click\")"][7] == "'+1 great service"
    assert by_name["'=HYPERLINK(\"http://evil.example\",\"click\")"][4] == "'-42"
    assert by_name["'@SUM(A1:A9)"][7] == "'=1+1"
    assert by_name["'-minus"][4] == "'=cmd|' /C calc'!A0"
    assert by_name["'\t=tab"][7] == "'\r=cr"
    plain = by_name["Ann Lee"]
    assert plain[4:] == ["", "10", "promoter", "Plain = fine"]
    # The score and time cells are left alone.
    assert all(row[5].isdigit() for row in body)


def test_the_export_with_nothing_in_range_is_just_the_header(manager_client):
    _, rows = export(manager_client, "?range=7")
    assert rows == [EXPORT_HEADER.split(",")]
