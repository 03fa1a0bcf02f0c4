"""Dashboard reads against known data sets and figures computed by hand.

Every NPS figure must be the same whether a day is read from the `DailyStat`
rollup (days before `StatsWatermark.rolled_until`) or counted live.
"""

from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone

from surveys.dashboard import comments as dashboard_comments
from surveys.dashboard import selectors as selectors_dashboard
from surveys.dashboard.services import daily_stats_rebuild, daily_stats_rollup
from surveys.models import (
    Coupon,
    DailyStat,
    FollowUpCase,
    ReferralConversion,
    ReferralLink,
    ReferralVisit,
    StatsWatermark,
)

from ..factories import (
    CustomerFactory,
    InvitationFactory,
    ResponseFactory,
    TouchpointFactory,
)

pytestmark = pytest.mark.django_db


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime.combine(day, time(hour, minute)))


def respond(touchpoint, score: int, day: date, *, hour: int = 12, minute: int = 0, reason: str = "", **extra):
    """A response on `day`, its invitation sent at the start of that day."""
    return ResponseFactory(
        invitation__touchpoint=touchpoint,
        invitation__sent_at=at(day, 0),
        created_at=at(day, hour, minute),
        score=score,
        reason=reason,
        **extra,
    )


def send(touchpoint, day: date, count: int = 1):
    for _ in range(count):
        InvitationFactory(touchpoint=touchpoint, sent_at=at(day, 9))


def watermark_set(day: date | None) -> None:
    StatsWatermark.objects.update_or_create(pk=1, defaults={"rolled_until": day})


@pytest.fixture
def today():
    return timezone.localdate()


@pytest.fixture
def known(today):
    """A month of answers at two touchpoints, today and on closed days, plus the month before.

    Last 30 days (today−29 … today):
      delivery: today−20: 10 9 9 8 3 · today−5: 10 7 5 · today: 9 2
                → P 5, passives 2, D 3, n 10, NPS 20
      store:    today−20: 0 6 · today−5: 9 9 10 · today: 8
                → P 3, passives 1, D 2, n 6, NPS 100·1/6 = 16.67 → 17
      all:      P 8, passives 3, D 5, n 16, NPS 100·3/16 = 18.75 → 19
    Invitations sent in range: one per response (16), plus delivery 4 on
    today−10 and store 2 today → 22; delivery 14, store 8. One more is pending
    (never sent) and does not count.
    Previous 30 days (today−59 … today−30):
      delivery today−40: 0 0 0; store today−31: 10 → P 1, D 3, n 4, NPS −50
      (and one delivery invitation sent on today−45 without an answer).
    Outside both: delivery 10 on today−60.
    """
    delivery = TouchpointFactory(name="Home delivery", slug="delivery")
    store = TouchpointFactory(name="Store visit", slug="store")
    for day, scores in {today - timedelta(days=20): [10, 9, 9, 8, 3], today - timedelta(days=5): [10, 7, 5], today: [9, 2]}.items():
        for score in scores:
            respond(delivery, score, day, hour=0 if day == today else 12)
    for day, scores in {today - timedelta(days=20): [0, 6], today - timedelta(days=5): [9, 9, 10], today: [8]}.items():
        for score in scores:
            respond(store, score, day, hour=0 if day == today else 12)
    send(delivery, today - timedelta(days=10), 4)
    send(store, today, 2)
    InvitationFactory(touchpoint=delivery, sent_at=None, status="pending")
    for score in [0, 0, 0]:
        respond(delivery, score, today - timedelta(days=40))
    respond(store, 10, today - timedelta(days=31))
    send(delivery, today - timedelta(days=45))
    respond(delivery, 10, today - timedelta(days=60))
    return {"delivery": delivery, "store": store, "start": today - timedelta(days=29), "end": today}


MODES = ["live", "rollup", "split", "split_after_full_rollup"]


def use_mode(mode: str, today: date) -> None:
    """Where the closed days are read from."""
    if mode == "live":
        StatsWatermark.objects.all().delete()
        DailyStat.objects.all().delete()
    elif mode == "rollup":
        daily_stats_rollup(full=True)
        assert StatsWatermark.objects.get(pk=1).rolled_until == today
    elif mode == "split":
        # Days before today−10 rolled up, today−10 onwards counted live.
        DailyStat.objects.all().delete()
        daily_stats_rebuild(start=today - timedelta(days=400), end=today - timedelta(days=11))
        watermark_set(today - timedelta(days=10))
    elif mode == "split_after_full_rollup":
        # Rows exist for the live days too: they must not be counted twice.
        daily_stats_rollup(full=True)
        watermark_set(today - timedelta(days=10))


def snapshot(*, start, end, touchpoint=None) -> dict:
    """Every NPS figure of the page, as plain data that can be compared."""
    data = selectors_dashboard.dashboard(start=start, end=end, touchpoint=touchpoint)
    headline = data["headline"]
    return {
        "scores": headline["counts"].scores,
        "sent": headline["counts"].invitations_sent,
        "rate": headline["counts"].response_rate,
        "nps": headline["nps"],
        "previous": headline["previous"],
        "change": headline["change"],
        "touchpoints": [
            (row["touchpoint"].slug, row["counts"].scores, row["counts"].invitations_sent, row["nps"], row["change"])
            for row in data["touchpoints"]
        ],
        "trend": data["trend"],
    }


@pytest.mark.parametrize("mode", MODES)
def test_headline_matches_hand_computed_figures(known, today, mode):
    use_mode(mode, today)
    data = selectors_dashboard.dashboard(start=known["start"], end=known["end"], touchpoint=None)
    headline = data["headline"]
    counts, nps = headline["counts"], headline["nps"]
    #                      0  1  2  3  4  5  6  7  8  9 10
    assert counts.scores == [1, 0, 1, 1, 0, 1, 1, 1, 2, 5, 3]
    assert (nps.responses, nps.promoters, nps.passives, nps.detractors) == (16, 8, 3, 5)
    assert nps.score == 19  # 18.75
    assert nps.promoter_share == 50
    assert nps.passive_share == pytest.approx(18.75)
    assert nps.detractor_share == pytest.approx(31.25)
    # n = 16 < 30: adjusted-Wald, n′ = 19, p′ = 8.75/19, d′ = 5.75/19, centre 15.78947,
    # half = 1.96·sqrt((14.5/19 − (3/19)²)/19)·100 = 38.63441.
    assert nps.is_small_sample is True
    low, high = nps.interval
    assert low == pytest.approx(-22.84494, abs=1e-4)
    assert high == pytest.approx(54.42388, abs=1e-4)
    assert counts.invitations_sent == 22
    assert counts.response_rate == pytest.approx(100 * 16 / 22)


@pytest.mark.parametrize("mode", MODES)
def test_previous_period_and_change(known, today, mode):
    """Previous 30 days: P 1, D 3, n 4 → −50. Change 18.75 − (−50) = 68.75 points.

    SE now = sqrt((0.8125 − 0.1875²)/16)·100 = 22.04177; before = sqrt((1 − 0.25)/4)·100 = 43.30127
    z = 68.75 / sqrt(22.04177² + 43.30127²) = 1.41494 < 1.96 → not significant.
    """
    use_mode(mode, today)
    headline = selectors_dashboard.dashboard(start=known["start"], end=known["end"], touchpoint=None)["headline"]
    assert headline["previous_start"] == today - timedelta(days=59)
    assert headline["previous_end"] == today - timedelta(days=30)
    previous = headline["previous"]
    assert (previous.responses, previous.promoters, previous.detractors, previous.score) == (4, 1, 3, -50)
    change = headline["change"]
    assert change.points == pytest.approx(68.75)
    assert change.z == pytest.approx(1.41494, abs=1e-4)
    assert change.significant is False


@pytest.mark.parametrize("mode", MODES)
def test_touchpoint_filter_and_table(known, today, mode):
    """delivery: n 10, NPS 20, 14 sent (71.4%); before: three 0s (−100) → +120 points,
    z = 120 / sqrt((0.8 − 0.04)/10)·100 = 120 / 27.56810 = 4.35 → significant.
    store: n 6, NPS 16.67 → 17, 8 sent (75%); before: one 10 (100, SE 0) → −83.33 points,
    z = 83.33 / sqrt((5/6 − (1/6)²)/6)·100 = 83.33 / 36.64 = 2.27 → significant.
    """
    use_mode(mode, today)
    delivery = selectors_dashboard.dashboard(start=known["start"], end=known["end"], touchpoint=known["delivery"])
    nps = delivery["headline"]["nps"]
    assert (nps.responses, nps.promoters, nps.passives, nps.detractors, nps.score) == (10, 5, 2, 3, 20)
    assert delivery["headline"]["counts"].invitations_sent == 14
    assert delivery["headline"]["previous"].score == -100
    assert delivery["headline"]["change"].points == pytest.approx(120)

    store = selectors_dashboard.dashboard(start=known["start"], end=known["end"], touchpoint=known["store"])
    nps = store["headline"]["nps"]
    assert (nps.responses, nps.promoters, nps.passives, nps.detractors, nps.score) == (6, 3, 1, 2, 17)
    assert store["headline"]["counts"].invitations_sent == 8
    assert store["headline"]["counts"].response_rate == pytest.approx(75)

    rows = {row["touchpoint"].slug: row for row in delivery["touchpoints"]}
    assert set(rows) == {"delivery", "store"}  # the table always shows every touchpoint
    assert rows["delivery"]["nps"].score == 20
    assert rows["delivery"]["counts"].response_rate == pytest.approx(100 * 10 / 14)
    assert rows["delivery"]["change"].points == pytest.approx(120)
    assert rows["delivery"]["change"].z == pytest.approx(4.35286, abs=1e-4)
    assert rows["delivery"]["change"].significant is True
    assert rows["store"]["nps"].score == 17
    assert rows["store"]["counts"].response_rate == pytest.approx(75)
    assert rows["store"]["change"].points == pytest.approx(100 / 6 - 100)
    assert rows["store"]["change"].z == pytest.approx(2.27429, abs=1e-4)
    assert rows["store"]["change"].significant is True


def test_the_figures_are_the_same_from_the_rollup_and_live(known, today):
    start, end = known["start"], known["end"]
    results = {}
    for mode in MODES:
        use_mode(mode, today)
        results[mode] = [
            snapshot(start=start, end=end),
            snapshot(start=start, end=end, touchpoint=known["delivery"]),
            snapshot(start=today - timedelta(days=89), end=today),
            snapshot(start=today - timedelta(days=200), end=today),  # monthly trend
            snapshot(start=today - timedelta(days=20), end=today - timedelta(days=5)),
        ]
    assert results["live"][0]["nps"].responses == 16
    for mode in MODES[1:]:
        assert results[mode] == results["live"], mode


def test_the_rollup_holds_closed_days_only(known, today):
    daily_stats_rollup(full=True)
    day = today - timedelta(days=20)
    row = DailyStat.objects.get(day=day, touchpoint=known["delivery"])
    assert (row.score_10, row.score_9, row.score_8, row.score_3, row.invitations_sent) == (1, 2, 1, 1, 5)
    assert not DailyStat.objects.filter(day__gte=today).exists()


def test_a_late_answer_on_a_rolled_day_is_counted_after_the_next_rollup(known, today):
    daily_stats_rollup(full=True)
    yesterday = today - timedelta(days=1)
    respond(known["delivery"], 0, yesterday)
    daily_stats_rollup()  # recounts the last rolled days
    nps = selectors_dashboard.dashboard(start=yesterday, end=yesterday, touchpoint=None)["headline"]["nps"]
    assert (nps.responses, nps.detractors) == (1, 1)


@pytest.mark.parametrize("mode", ["live", "rollup"])
def test_days_follow_the_local_time_zone(settings, today, mode):
    """23:30 and 00:30 local time on either side of midnight land on their local days."""
    settings.TIME_ZONE = "America/New_York"
    today = timezone.localdate()
    touchpoint = TouchpointFactory()
    day = today - timedelta(days=3)
    respond(touchpoint, 10, day, hour=23, minute=30)
    respond(touchpoint, 0, day + timedelta(days=1), hour=0, minute=30)
    use_mode(mode, today)
    first = selectors_dashboard.dashboard(start=day, end=day, touchpoint=None)["headline"]["nps"]
    second = selectors_dashboard.dashboard(start=day + timedelta(days=1), end=day + timedelta(days=1), touchpoint=None)[
        "headline"
    ]["nps"]
    assert (first.responses, first.score) == (1, 100)
    assert (second.responses, second.score) == (1, -100)


def test_no_responses_means_no_score(today):
    TouchpointFactory()
    headline = selectors_dashboard.dashboard(start=today - timedelta(days=6), end=today, touchpoint=None)["headline"]
    assert headline["nps"].responses == 0
    assert headline["nps"].score is None
    assert headline["nps"].interval is None
    assert headline["change"] is None
    assert headline["counts"].response_rate is None


@pytest.mark.parametrize("mode", ["live", "rollup"])
def test_all_promoters_and_all_detractors(today, mode):
    promoters, detractors = TouchpointFactory(slug="happy"), TouchpointFactory(slug="sad")
    for offset in range(40):
        respond(promoters, 9 + offset % 2, today - timedelta(days=offset % 7))
        respond(detractors, offset % 7, today - timedelta(days=offset % 7))
    use_mode(mode, today)
    start = today - timedelta(days=6)
    happy = selectors_dashboard.dashboard(start=start, end=today, touchpoint=promoters)["headline"]["nps"]
    sad = selectors_dashboard.dashboard(start=start, end=today, touchpoint=detractors)["headline"]["nps"]
    both = selectors_dashboard.dashboard(start=start, end=today, touchpoint=None)["headline"]["nps"]
    assert (happy.responses, happy.score, happy.margin_of_error, happy.interval) == (40, 100, 0, (100.0, 100.0))
    assert (sad.responses, sad.score, sad.margin_of_error, sad.interval) == (40, -100, 0, (-100.0, -100.0))
    # 40 promoters, 40 detractors: NPS 0; p = d = 0.5 → SE = sqrt(1/80)·100 = 11.18034, margin 21.91347.
    assert both.score == 0
    assert both.margin_of_error == pytest.approx(21.91347, abs=1e-4)


@pytest.mark.parametrize("mode", ["live", "rollup"])
def test_a_tie_at_one_half_rounds_away_from_zero(today, mode):
    """1 promoter and 7 passives: 12.5 → 13; 1 detractor and 7 passives: −12.5 → −13."""
    up, down = TouchpointFactory(slug="up"), TouchpointFactory(slug="down")
    day = today - timedelta(days=2)
    respond(up, 9, day)
    respond(down, 6, day)
    for _ in range(7):
        respond(up, 7, day)
        respond(down, 8, day)
    use_mode(mode, today)
    assert selectors_dashboard.dashboard(start=day, end=today, touchpoint=up)["headline"]["nps"].score == 13
    assert selectors_dashboard.dashboard(start=day, end=today, touchpoint=down)["headline"]["nps"].score == -13


# --- trend ----------------------------------------------------------------------


@pytest.fixture
def january():
    """Four weeks, Monday 2025-01-06 to Sunday 2025-02-02.

    week of 01-06: 10 (Mon 01-06), 0 (01-08), 9 (Sun 01-12) → P 2, D 1, n 3, NPS 33
                   adjusted-Wald: n′ 6, p′ 2.75/6, d′ 1.75/6 → (−51.3, 84.7)
    week of 01-13: nothing
    week of 01-20: 8, 7 → NPS 0
    week of 01-27: 6 on Sunday 02-02 → NPS −100
    """
    touchpoint = TouchpointFactory()
    respond(touchpoint, 10, date(2025, 1, 6), hour=0, minute=5)
    respond(touchpoint, 0, date(2025, 1, 8))
    respond(touchpoint, 9, date(2025, 1, 12), hour=23, minute=55)
    respond(touchpoint, 8, date(2025, 1, 20))
    respond(touchpoint, 7, date(2025, 1, 21))
    respond(touchpoint, 6, date(2025, 2, 2), hour=23, minute=55)
    respond(touchpoint, 10, date(2025, 2, 3))  # outside the range
    return touchpoint


@pytest.mark.parametrize("mode", ["live", "rollup", "split"])
def test_the_trend_is_weekly_for_short_ranges(january, today, mode):
    if mode == "split":
        daily_stats_rebuild(start=date(2025, 1, 1), end=date(2025, 1, 14))
        watermark_set(date(2025, 1, 15))
    else:
        use_mode(mode, today)
    trend = selectors_dashboard.trend(
        start=date(2025, 1, 6), end=date(2025, 2, 2), touchpoint=None, watermark=selectors_dashboard._rollup_watermark()
    )
    assert trend["granularity"] == "week"
    points = {point["period"]: point for point in trend["points"]}
    assert points["2025-01-06"] == {
        "period": "2025-01-06",
        "n": 3,
        "nps": 33,
        "low": -51.3,
        "high": 84.7,
        "promoters": 66.7,
        "passives": 0.0,
        "detractors": 33.3,
    }
    # Every week is on the axis, the empty one as a gap.
    assert [point["period"] for point in trend["points"]] == ["2025-01-06", "2025-01-13", "2025-01-20", "2025-01-27"]
    assert points["2025-01-13"] == {
        "period": "2025-01-13", "n": 0, "nps": None, "low": None, "high": None,
        "promoters": None, "passives": None, "detractors": None,
    }
    assert (points["2025-01-20"]["n"], points["2025-01-20"]["nps"], points["2025-01-20"]["passives"]) == (2, 0, 100.0)
    assert (points["2025-01-27"]["n"], points["2025-01-27"]["nps"]) == (1, -100)
    assert sum(point["n"] for point in trend["points"]) == 6


@pytest.mark.parametrize("mode", ["live", "rollup"])
def test_the_trend_is_monthly_for_long_ranges(today, mode):
    """Late on 30 November and early on 1 December fall in different months."""
    touchpoint = TouchpointFactory()
    respond(touchpoint, 10, date(2024, 11, 30), hour=23, minute=30)
    respond(touchpoint, 0, date(2024, 12, 1), hour=0, minute=30)
    respond(touchpoint, 9, date(2024, 12, 31))
    respond(touchpoint, 8, date(2025, 3, 15))
    use_mode(mode, today)
    trend = selectors_dashboard.trend(
        start=date(2024, 10, 1), end=date(2025, 3, 31), touchpoint=None, watermark=selectors_dashboard._rollup_watermark()
    )
    assert trend["granularity"] == "month"
    points = [(point["period"], point["n"], point["nps"]) for point in trend["points"]]
    assert points == [
        ("2024-10-01", 0, None),
        ("2024-11-01", 1, 100),
        ("2024-12-01", 2, 0),
        ("2025-01-01", 0, None),
        ("2025-02-01", 0, None),
        ("2025-03-01", 1, 0),
    ]


def test_a_trend_starting_mid_week_or_mid_year_covers_the_whole_range():
    """Wednesday 2025-01-08 … Tuesday 2025-01-21: the weeks of 01-06, 01-13 and 01-20.
    2024-11-15 … 2025-04-02 (monthly): November to April, across the new year."""
    weekly = selectors_dashboard.trend(start=date(2025, 1, 8), end=date(2025, 1, 21), touchpoint=None)
    assert [point["period"] for point in weekly["points"]] == ["2025-01-06", "2025-01-13", "2025-01-20"]
    monthly = selectors_dashboard.trend(start=date(2024, 11, 15), end=date(2025, 4, 2), touchpoint=None)
    assert [point["period"] for point in monthly["points"]] == [
        "2024-11-01", "2024-12-01", "2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"
    ]


@pytest.mark.parametrize(
    ("days", "granularity"),
    [(7, "week"), (30, "week"), (90, "week"), (120, "week"), (150, "month"), (365, "month")],
)
def test_the_trend_granularity_follows_the_range_length(today, days, granularity):
    start = today - timedelta(days=days - 1)
    assert selectors_dashboard.trend(start=start, end=today, touchpoint=None)["granularity"] == granularity


def test_the_trend_follows_the_touchpoint_filter(january, today):
    other = TouchpointFactory()
    respond(other, 0, date(2025, 1, 7))
    trend = selectors_dashboard.trend(start=date(2025, 1, 6), end=date(2025, 2, 2), touchpoint=january)
    assert sum(point["n"] for point in trend["points"]) == 6


# --- comments -------------------------------------------------------------------


@pytest.fixture
def comments_data(today):
    delivery = TouchpointFactory(slug="delivery")
    store = TouchpointFactory(slug="store")
    respond(delivery, 10, today - timedelta(days=3), reason="Friendly driver")
    respond(delivery, 2, today - timedelta(days=2), reason="The parcel was LATE and damaged")
    respond(store, 7, today - timedelta(days=1), reason="Late opening hours")
    respond(store, 9, today, hour=0, reason="Great staff")
    respond(delivery, 0, today - timedelta(days=1), reason="")  # no reason: not a comment
    respond(delivery, 1, today - timedelta(days=40), reason="Late, very late")  # outside the range
    return {"delivery": delivery, "store": store, "start": today - timedelta(days=29), "end": today}


def reasons(**kwargs) -> list[str]:
    return [item.reason for item in dashboard_comments.comments(**kwargs)["items"]]


def test_comments_are_newest_first_with_reasons_only(comments_data):
    assert reasons(start=comments_data["start"], end=comments_data["end"], touchpoint=None) == [
        "Great staff",
        "Late opening hours",
        "The parcel was LATE and damaged",
        "Friendly driver",
    ]


def test_comments_filter_by_category_touchpoint_and_search(comments_data):
    window = {"start": comments_data["start"], "end": comments_data["end"]}
    assert reasons(**window, touchpoint=None, category="detractor") == ["The parcel was LATE and damaged"]
    assert reasons(**window, touchpoint=None, category="promoter") == ["Great staff", "Friendly driver"]
    assert reasons(**window, touchpoint=None, category="passive") == ["Late opening hours"]
    assert reasons(**window, touchpoint=comments_data["store"]) == ["Great staff", "Late opening hours"]
    # Case-insensitive search.
    assert reasons(**window, touchpoint=None, search="late") == ["Late opening hours", "The parcel was LATE and damaged"]
    assert reasons(**window, touchpoint=None, search="STAFF") == ["Great staff"]
    assert reasons(**window, touchpoint=None, search="late", category="detractor") == ["The parcel was LATE and damaged"]
    assert reasons(**window, touchpoint=None, search="nothing like this") == []


def test_comments_are_paginated(today):
    touchpoint = TouchpointFactory()
    per_page = dashboard_comments.COMMENTS_PER_PAGE
    for index in range(per_page + 1):
        respond(touchpoint, 8, today - timedelta(days=1), hour=0, minute=index, reason=f"Comment {index}")
    window = {"start": today - timedelta(days=6), "end": today, "touchpoint": None}
    first = dashboard_comments.comments(**window)
    assert len(first["items"]) == per_page
    assert first["items"][0].reason == f"Comment {per_page}"
    assert (first["has_next"], first["has_previous"]) == (True, False)
    second = dashboard_comments.comments(**window, page=2)
    assert [item.reason for item in second["items"]] == ["Comment 0"]
    assert (second["has_next"], second["has_previous"]) == (False, True)
    # Exactly one full page: no next page.
    second["items"][0].delete()
    exactly = dashboard_comments.comments(**window)
    assert len(exactly["items"]) == per_page
    assert exactly["has_next"] is False


# --- follow-up ------------------------------------------------------------------


def make_case(touchpoint, *, opened_at, status="open", took=None, due_in=timedelta(hours=48), won_back_at=None):
    response = ResponseFactory(invitation__touchpoint=touchpoint, score=3, created_at=opened_at)
    return FollowUpCase.objects.create(
        response=response,
        customer=response.customer,
        touchpoint=touchpoint,
        status=status,
        opened_at=opened_at,
        due_at=opened_at + due_in,
        resolved_at=opened_at + took if took is not None else None,
        won_back_at=won_back_at,
    )


def test_follow_up_summary(today):
    """Range today−29 … today.

    in range: resolved after 2 h, 5 h and 30 h; open and overdue; open, due later; contacted and overdue
    outside:  open and overdue (opened today−40); resolved on today−35 and won back on today−2
    open = 4 (every unresolved case, whenever opened), overdue = 3
    opened in range = 6, of which closed = 3 → loop closed 50%
    median time to close (resolved in range) = middle of 2, 5, 30 h = 5 h
    won back in range = 2 (the old case and the 2-hour one)
    """
    touchpoint = TouchpointFactory()
    now = timezone.now()
    make_case(touchpoint, opened_at=at(today - timedelta(days=20)), status="resolved", took=timedelta(hours=2),
              won_back_at=at(today - timedelta(days=1)))
    make_case(touchpoint, opened_at=at(today - timedelta(days=15)), status="resolved", took=timedelta(hours=5))
    make_case(touchpoint, opened_at=at(today - timedelta(days=10)), status="resolved", took=timedelta(hours=30))
    make_case(touchpoint, opened_at=at(today - timedelta(days=5)))
    make_case(touchpoint, opened_at=max(now - timedelta(minutes=1), at(today, 0)), due_in=timedelta(hours=48))
    make_case(touchpoint, opened_at=at(today - timedelta(days=3)), status="contacted")
    make_case(touchpoint, opened_at=at(today - timedelta(days=40)))
    make_case(touchpoint, opened_at=at(today - timedelta(days=40)), status="resolved", took=timedelta(days=5),
              won_back_at=at(today - timedelta(days=2)))

    summary = selectors_dashboard.follow_up_summary(start=today - timedelta(days=29), end=today, touchpoint=None)
    assert summary["open"] == 4
    assert summary["overdue"] == 3
    assert summary["opened"] == 6
    assert summary["closed"] == 3
    assert summary["loop_closed_rate"] == 50
    assert summary["median_time_to_close"] == timedelta(hours=5)
    assert summary["won_back"] == 2
    assert summary["has_data"] is True


def test_median_time_to_close_with_an_even_count(today):
    """Resolved after 2, 4, 10 and 30 hours: median (4 + 10) / 2 = 7 hours."""
    touchpoint = TouchpointFactory()
    for offset, hours in enumerate([30, 2, 10, 4]):
        make_case(touchpoint, opened_at=at(today - timedelta(days=10 + offset)), status="resolved",
                  took=timedelta(hours=hours))
    summary = selectors_dashboard.follow_up_summary(start=today - timedelta(days=29), end=today, touchpoint=None)
    assert summary["median_time_to_close"] == timedelta(hours=7)
    assert summary["loop_closed_rate"] == 100
    assert (summary["open"], summary["overdue"]) == (0, 0)


def test_follow_up_summary_per_touchpoint_and_empty(today):
    delivery, store = TouchpointFactory(), TouchpointFactory()
    make_case(delivery, opened_at=at(today - timedelta(days=3)))
    make_case(store, opened_at=at(today - timedelta(days=3)), status="resolved", took=timedelta(hours=1))
    window = {"start": today - timedelta(days=29), "end": today}
    only_delivery = selectors_dashboard.follow_up_summary(**window, touchpoint=delivery)
    assert (only_delivery["open"], only_delivery["opened"], only_delivery["closed"]) == (1, 1, 0)
    assert only_delivery["loop_closed_rate"] == 0
    assert only_delivery["median_time_to_close"] is None
    only_store = selectors_dashboard.follow_up_summary(**window, touchpoint=store)
    assert only_store["median_time_to_close"] == timedelta(hours=1)

    FollowUpCase.objects.all().delete()
    empty = selectors_dashboard.follow_up_summary(**window, touchpoint=None)
    assert empty["loop_closed_rate"] is None
    assert empty["median_time_to_close"] is None
    assert empty["has_data"] is False


# --- promoter results -----------------------------------------------------------


def make_coupon(touchpoint, issued_at, *, emailed=False, redeemed=False):
    response = ResponseFactory(invitation__touchpoint=touchpoint, score=10, created_at=issued_at)
    return Coupon.objects.create(
        response=response,
        customer=response.customer,
        issued_at=issued_at,
        expires_at=issued_at + timedelta(days=30),
        emailed_at=issued_at + timedelta(minutes=1) if emailed else None,
        redeemed_at=issued_at + timedelta(days=1) if redeemed else None,
    )


def test_promoter_results(today):
    """In range: delivery 3 coupons (3 emailed, 1 redeemed), store 1 (not emailed) → 4 issued, 3 emailed,
    1 redeemed, 25%. Outside: one emailed and redeemed on today−40.
    Referrals: delivery link 3 visits and 2 sign-ups in range, 1 of each before; store link 1 visit.
    """
    delivery, store = TouchpointFactory(), TouchpointFactory()
    make_coupon(delivery, at(today - timedelta(days=10)), emailed=True, redeemed=True)
    make_coupon(delivery, at(today - timedelta(days=5)), emailed=True)
    make_coupon(delivery, at(today, 0), emailed=True)
    make_coupon(store, at(today - timedelta(days=2)))
    make_coupon(delivery, at(today - timedelta(days=40)), emailed=True, redeemed=True)

    link = ReferralLink.objects.create(customer=CustomerFactory(), touchpoint=delivery)
    store_link = ReferralLink.objects.create(customer=CustomerFactory(), touchpoint=store)
    for index, offset in enumerate([1, 2, 3, 40]):
        moment = at(today - timedelta(days=offset))
        ReferralVisit.objects.create(link=link, visitor_hash=f"v{index}", day=moment.date(), created_at=moment)
    ReferralVisit.objects.create(link=store_link, visitor_hash="s", day=today, created_at=at(today, 0))
    for index, offset in enumerate([1, 4, 50]):
        ReferralConversion.objects.create(link=link, reference=f"r{index}", created_at=at(today - timedelta(days=offset)))

    window = {"start": today - timedelta(days=29), "end": today}
    results = selectors_dashboard.promoter_results(**window, touchpoint=None)
    assert (results["issued"], results["emailed"], results["redeemed"]) == (4, 3, 1)
    assert results["redemption_rate"] == 25
    assert (results["referral_visits"], results["referral_conversions"]) == (4, 2)
    assert results["has_data"] is True

    only_delivery = selectors_dashboard.promoter_results(**window, touchpoint=delivery)
    assert (only_delivery["issued"], only_delivery["emailed"], only_delivery["redeemed"]) == (3, 3, 1)
    assert only_delivery["redemption_rate"] == pytest.approx(100 / 3)
    assert (only_delivery["referral_visits"], only_delivery["referral_conversions"]) == (3, 2)

    empty = selectors_dashboard.promoter_results(start=today - timedelta(days=400), end=today - timedelta(days=300),
                                                 touchpoint=None)
    assert (empty["issued"], empty["redemption_rate"], empty["has_data"]) == (0, None, False)


# --- export ---------------------------------------------------------------------


def test_export_rows_are_oldest_first_within_the_range(comments_data):
    rows = list(
        dashboard_comments.export_rows(start=comments_data["start"], end=comments_data["end"], touchpoint=None)
    )
    assert [row[5] for row in rows] == [10, 2, 7, 0, 9]
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)
    store_rows = list(
        dashboard_comments.export_rows(start=comments_data["start"], end=comments_data["end"], touchpoint=comments_data["store"])
    )
    assert [row[1] for row in store_rows] == ["store", "store"]


def test_median_time_to_close_over_rolled_up_days_comes_from_the_daily_histograms(today):
    """Cases resolved after 2, 5 and 30 hours on closed days: after the rollup the median reads
    the per-day histograms (15-minute buckets below two days) and still says about 5 hours."""
    from surveys.dashboard.selectors import close_bucket, close_bucket_middle

    touchpoint = TouchpointFactory()
    for days_ago, hours in ((3, 2), (2, 5), (1, 30)):
        response = ResponseFactory(
            invitation__touchpoint=touchpoint, score=2, created_at=at(today - timedelta(days=days_ago), 8)
        )
        FollowUpCase.objects.create(
            response=response,
            customer=response.customer,
            touchpoint=touchpoint,
            status=FollowUpCase.Status.RESOLVED,
            opened_at=response.created_at - timedelta(hours=hours),
            due_at=response.created_at,
            resolved_at=response.created_at,
        )
    daily_stats_rollup(full=True)

    summary = selectors_dashboard.follow_up_summary(start=today - timedelta(days=10), end=today, touchpoint=None)

    assert summary["median_time_to_close"] == close_bucket_middle(close_bucket(5 * 60))
    assert abs(summary["median_time_to_close"] - timedelta(hours=5)) <= timedelta(minutes=15)
