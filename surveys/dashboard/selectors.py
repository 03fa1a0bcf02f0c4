"""Reads for the manager dashboard: every figure is a database aggregate.

Closed days come from the `DailyStat` rollup (days before the watermark);
later days are counted live from responses and invitations. Either way each
figure costs one or two aggregate queries, whatever the number of responses.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    Sum,
    Value,
)
from django.db.models.functions import TruncDate, TruncMonth, TruncWeek
from django.utils import timezone

from surveys.models import (
    DETRACTOR_SCORES,
    FOLLOW_UP_FIELDS,
    PASSIVE_SCORES,
    PROMOTER_SCORES,
    SCORE_FIELDS,
    Coupon,
    DailyStat,
    FollowUpCase,
    Invitation,
    ReferralConversion,
    ReferralVisit,
    Response,
    StatsWatermark,
    Touchpoint,
)

from .nps import NpsFigures, change_between


class MedianDuration(Aggregate):
    """PostgreSQL's exact median, in one pass: percentile_cont(0.5) over an interval."""

    function = "percentile_cont"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DurationField()


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def close_bucket(minutes: float) -> int:
    """Time-to-close bucket: 15 minutes up to 2 days, an hour up to 30 days, then a day."""
    minutes = max(int(minutes), 0)
    if minutes < 2 * 1440:
        return minutes // 15
    if minutes < 30 * 1440:
        return 192 + (minutes - 2 * 1440) // 60
    return 864 + min((minutes - 30 * 1440) // 1440, 10_000)


def close_bucket_middle(bucket: int) -> timedelta:
    if bucket < 192:
        return timedelta(minutes=bucket * 15 + 7.5)
    if bucket < 864:
        return timedelta(minutes=2 * 1440 + (bucket - 192) * 60 + 30)
    return timedelta(minutes=30 * 1440 + (bucket - 864) * 1440 + 720)


def histogram_median(histogram: dict) -> timedelta | None:
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen * 2 >= total:
            return close_bucket_middle(bucket)
    return None


@dataclass
class Counts:
    scores: list[int] = field(default_factory=lambda: [0] * 11)
    invitations_sent: int = 0
    # Follow-up and promoter figures, by the names of FOLLOW_UP_FIELDS.
    extra: dict = field(default_factory=lambda: dict.fromkeys(FOLLOW_UP_FIELDS, 0))
    # Cases resolved, by time-to-close bucket (only filled by daily_counts, for the rollup).
    close_histogram: dict = field(default_factory=dict)

    def add_scores(self, values) -> None:
        self.scores = [a + (b or 0) for a, b in zip(self.scores, values)]

    def add(self, other: "Counts") -> None:
        self.add_scores(other.scores)
        self.invitations_sent += other.invitations_sent
        for name in FOLLOW_UP_FIELDS:
            self.extra[name] += other.extra[name]
        for bucket, count in other.close_histogram.items():
            self.close_histogram[bucket] = self.close_histogram.get(bucket, 0) + count

    @property
    def responses(self) -> int:
        return sum(self.scores)

    @property
    def promoters(self) -> int:
        return sum(self.scores[score] for score in PROMOTER_SCORES)

    @property
    def passives(self) -> int:
        return sum(self.scores[score] for score in PASSIVE_SCORES)

    @property
    def detractors(self) -> int:
        return sum(self.scores[score] for score in DETRACTOR_SCORES)

    @property
    def response_rate(self) -> float | None:
        # Responses in a period over invitations sent in it: a share, capped at 100%.
        if not self.invitations_sent:
            return None
        return min(100 * self.responses / self.invitations_sent, 100.0)

    def figures(self) -> NpsFigures:
        return NpsFigures(
            responses=self.responses,
            promoters=self.promoters,
            passives=self.passives,
            detractors=self.detractors,
            min_responses=settings.NPS_MIN_RESPONSES,
        )


def _rollup_watermark() -> date | None:
    return StatsWatermark.objects.filter(pk=1).values_list("rolled_until", flat=True).first()


def _by_day(queryset, moment: str, touchpoint_path: str, **aggregates):
    return (
        queryset.annotate(on_day=TruncDate(moment))
        .values("on_day", tp=F(touchpoint_path))
        .annotate(**aggregates)
        .order_by()
    )


def daily_counts(*, start: date, end: date, with_close_histogram: bool = False) -> dict[tuple[date, int], Counts]:
    """Every dashboard figure per day and touchpoint for days start…end, counted from the source rows.

    The rollup stores this for closed days; the dashboard counts the days
    after the rollup's watermark (normally just today) the same way, live.
    """
    result: dict[tuple[date, int], Counts] = {}
    if end < start:
        return result
    low, high = day_start(start), day_start(end + timedelta(days=1))

    def at(row) -> Counts:
        return result.setdefault((row["on_day"], row["tp"]), Counts())

    responses = Response.objects.filter(created_at__gte=low, created_at__lt=high)
    per_score = {f"s{s}": Count("pk", filter=Q(score=s)) for s in range(11)}
    for row in _by_day(responses, "created_at", "touchpoint_id", **per_score):
        at(row).add_scores(row[f"s{s}"] for s in range(11))
    sent = Invitation.objects.filter(sent_at__gte=low, sent_at__lt=high)
    for row in _by_day(sent, "sent_at", "touchpoint_id", n=Count("pk")):
        at(row).invitations_sent += row["n"]
    opened = FollowUpCase.objects.filter(opened_at__gte=low, opened_at__lt=high)
    for row in _by_day(
        opened, "opened_at", "touchpoint_id",
        n=Count("opened_at"), closed=Count("opened_at", filter=Q(status=FollowUpCase.Status.RESOLVED)),
    ):
        at(row).extra["cases_opened"] += row["n"]
        at(row).extra["cases_closed"] += row["closed"]
    won_back = FollowUpCase.objects.filter(won_back_at__gte=low, won_back_at__lt=high)
    for row in _by_day(won_back, "won_back_at", "touchpoint_id", n=Count("pk")):
        at(row).extra["cases_won_back"] += row["n"]
    coupons = Coupon.objects.filter(issued_at__gte=low, issued_at__lt=high)
    for row in _by_day(
        coupons, "issued_at", "response__touchpoint_id",
        n=Count("issued_at"), emailed=Count("emailed_at"), redeemed=Count("redeemed_at"),
    ):
        at(row).extra["coupons_issued"] += row["n"]
        at(row).extra["coupons_emailed"] += row["emailed"]
        at(row).extra["coupons_redeemed"] += row["redeemed"]
    visits = ReferralVisit.objects.filter(created_at__gte=low, created_at__lt=high)
    for row in _by_day(visits, "created_at", "link__touchpoint_id", n=Count("pk")):
        at(row).extra["referral_visits"] += row["n"]
    conversions = ReferralConversion.objects.filter(created_at__gte=low, created_at__lt=high)
    for row in _by_day(conversions, "created_at", "link__touchpoint_id", n=Count("pk")):
        at(row).extra["referral_conversions"] += row["n"]
    if with_close_histogram:
        resolved = FollowUpCase.objects.filter(
            resolved_at__gte=low, resolved_at__lt=high, status=FollowUpCase.Status.RESOLVED
        ).annotate(on_day=TruncDate("resolved_at"), tp=F("touchpoint_id"))
        for on_day, touchpoint_id, opened_at, resolved_at in resolved.values_list(
            "on_day", "tp", "opened_at", "resolved_at"
        ):
            histogram = result.setdefault((on_day, touchpoint_id), Counts()).close_histogram
            bucket = close_bucket((resolved_at - opened_at).total_seconds() / 60)
            histogram[bucket] = histogram.get(bucket, 0) + 1
    return result


def _period_key(day: date, group: str | None):
    if group == "week":
        return day - timedelta(days=day.weekday())
    if group == "month":
        return day.replace(day=1)
    return 0


def score_counts(
    *,
    start: date,
    end: date,
    touchpoint: Touchpoint | None = None,
    group: str | None = None,
    watermark=None,
    live: dict | None = None,
) -> dict:
    """All figures for days start…end, optionally grouped.

    `group` is None (one total under the key 0), "touchpoint" (keys are
    touchpoint ids), "week" or "month" (keys are the first day of the period).
    Days before the watermark come from the rollup, one aggregate query; later
    days from `live` (as `daily_counts` returns, computed once per page) or
    counted now.
    """
    split = min(max(watermark or start, start), end + timedelta(days=1))
    result: dict = {}

    if start < split:
        rolled = DailyStat.objects.filter(day__gte=start, day__lt=split)
        if touchpoint is not None:
            rolled = rolled.filter(touchpoint=touchpoint)
        if group == "touchpoint":
            rolled = rolled.values(key=F("touchpoint_id"))
        elif group == "week":
            rolled = rolled.annotate(key=TruncWeek("day")).values("key")
        elif group == "month":
            rolled = rolled.annotate(key=TruncMonth("day")).values("key")
        else:
            rolled = rolled.annotate(key=Value(0)).values("key")
        sums = {name: Sum(name) for name in [*SCORE_FIELDS, *FOLLOW_UP_FIELDS]}
        for row in rolled.annotate(sent=Sum("invitations_sent"), **sums).order_by():
            key = row["key"]
            if isinstance(key, datetime):
                key = key.date()
            counts = result.setdefault(key, Counts())
            counts.add_scores(row[name] or 0 for name in SCORE_FIELDS)
            counts.invitations_sent += row["sent"] or 0
            for name in FOLLOW_UP_FIELDS:
                counts.extra[name] += row[name] or 0
    if split <= end:
        if live is None:
            live = daily_counts(start=split, end=end)
        for (day, touchpoint_id), counts in live.items():
            if not split <= day <= end or (touchpoint is not None and touchpoint_id != touchpoint.pk):
                continue
            key = touchpoint_id if group == "touchpoint" else _period_key(day, group)
            result.setdefault(key, Counts()).add(counts)
    return result


def _total(counts_by_key: dict) -> Counts:
    total = Counts()
    for counts in counts_by_key.values():
        total.add(counts)
    return total


def _previous_period(start: date, end: date) -> tuple[date, date]:
    length = (end - start).days + 1
    previous_end = start - timedelta(days=1)
    return previous_end - timedelta(days=length - 1), previous_end


def headline(*, start: date, end: date, touchpoint: Touchpoint | None, watermark=None, live=None) -> dict:
    previous_start, previous_end = _previous_period(start, end)
    current = _total(score_counts(start=start, end=end, touchpoint=touchpoint, watermark=watermark, live=live))
    previous = _total(
        score_counts(start=previous_start, end=previous_end, touchpoint=touchpoint, watermark=watermark, live=live)
    )
    figures, previous_figures = current.figures(), previous.figures()
    return {
        "counts": current,
        "nps": figures,
        "previous": previous_figures,
        "previous_start": previous_start,
        "previous_end": previous_end,
        "change": change_between(figures, previous_figures),
    }


def touchpoint_table(*, start: date, end: date, watermark=None, live=None) -> list[dict]:
    previous_start, previous_end = _previous_period(start, end)
    current = score_counts(start=start, end=end, group="touchpoint", watermark=watermark, live=live)
    previous = score_counts(
        start=previous_start, end=previous_end, group="touchpoint", watermark=watermark, live=live
    )
    rows = []
    for touchpoint in Touchpoint.objects.filter(pk__in=set(current) | set(previous)).order_by("name"):
        counts = current.get(touchpoint.pk, Counts())
        figures = counts.figures()
        rows.append(
            {
                "touchpoint": touchpoint,
                "counts": counts,
                "nps": figures,
                "change": change_between(figures, previous.get(touchpoint.pk, Counts()).figures()),
            }
        )
    return rows


def _periods(*, start: date, end: date, group: str) -> list[date]:
    """The first day of every week (Monday, as TruncWeek) or month that overlaps start…end."""
    if group == "week":
        period, periods = start - timedelta(days=start.weekday()), []
        while period <= end:
            periods.append(period)
            period += timedelta(days=7)
        return periods
    period, periods = start.replace(day=1), []
    while period <= end:
        periods.append(period)
        period = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return periods


def trend(*, start: date, end: date, touchpoint: Touchpoint | None, watermark=None, live=None) -> dict:
    """NPS and category shares per week (ranges up to ~4 months) or month."""
    group = "week" if (end - start).days <= 120 else "month"
    by_period = score_counts(
        start=start, end=end, touchpoint=touchpoint, group=group, watermark=watermark, live=live
    )
    points = []
    for period in _periods(start=start, end=end, group=group):
        # A period without answers stays on the axis as a gap, so time is not squeezed.
        figures = by_period.get(period, Counts()).figures()
        low_high = figures.interval
        points.append(
            {
                "period": period.isoformat(),
                "n": figures.responses,
                "nps": figures.score,
                "low": round(low_high[0], 1) if low_high else None,
                "high": round(low_high[1], 1) if low_high else None,
                "promoters": round(figures.promoter_share, 1) if figures.has_data else None,
                "passives": round(figures.passive_share, 1) if figures.has_data else None,
                "detractors": round(figures.detractor_share, 1) if figures.has_data else None,
            }
        )
    return {"granularity": group, "points": points}


def follow_up_summary(
    *, start: date, end: date, touchpoint: Touchpoint | None, counts: Counts | None = None, watermark=None
) -> dict:
    """Open and overdue cases now; opened, closed and won back in range; median time to close."""
    if counts is None:
        counts = _total(score_counts(start=start, end=end, touchpoint=touchpoint, watermark=_rollup_watermark()))
    low, high = day_start(start), day_start(end + timedelta(days=1))
    now = timezone.now()
    cases = FollowUpCase.objects.all()
    if touchpoint is not None:
        cases = cases.filter(touchpoint=touchpoint)
    figures = cases.filter(status__in=[FollowUpCase.Status.OPEN, FollowUpCase.Status.CONTACTED]).aggregate(
        open=Count("due_at"), overdue=Count("due_at", filter=Q(due_at__lt=now))
    )
    figures["opened"] = counts.extra["cases_opened"]
    figures["closed"] = counts.extra["cases_closed"]
    figures["won_back"] = counts.extra["cases_won_back"]
    figures["loop_closed_rate"] = 100 * figures["closed"] / figures["opened"] if figures["opened"] else None
    watermark = _rollup_watermark() if watermark is None else watermark
    split = min(max(watermark or start, start), end + timedelta(days=1))
    if start < split:
        # Days before the watermark: their time-to-close histograms from the rollup (one
        # small row per day and touchpoint), plus the live days' cases, bucketed the same way.
        rolled = DailyStat.objects.filter(day__gte=start, day__lt=split)
        if touchpoint is not None:
            rolled = rolled.filter(touchpoint=touchpoint)
        histogram: dict[int, int] = {}
        for stored in rolled.values_list("close_histogram", flat=True):
            for bucket, count in (stored or {}).items():
                histogram[int(bucket)] = histogram.get(int(bucket), 0) + count
        live_resolved = cases.filter(
            resolved_at__gte=day_start(split), resolved_at__lt=high, status=FollowUpCase.Status.RESOLVED
        ).values_list("opened_at", "resolved_at")
        for opened_at, resolved_at in live_resolved:
            bucket = close_bucket((resolved_at - opened_at).total_seconds() / 60)
            histogram[bucket] = histogram.get(bucket, 0) + 1
        figures["median_time_to_close"] = histogram_median(histogram)
        figures["has_data"] = any(figures[key] for key in ("open", "opened", "won_back")) or bool(histogram)
        return figures
    # All days live: the exact median, counted from the cases.
    resolved = cases.filter(resolved_at__gte=low, resolved_at__lt=high, status=FollowUpCase.Status.RESOLVED)
    took = ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())
    if connection.vendor == "postgresql":
        result = resolved.aggregate(n=Count("resolved_at"), median=MedianDuration(took))
        n, median = result["n"], result["median"]
    else:
        n = resolved.count()
        median = None
        if n:
            durations = resolved.annotate(took=took).order_by("took").values_list("took", flat=True)
            middle = list(durations[(n - 1) // 2 : n // 2 + 1])
            median = sum(middle, timedelta()) / len(middle)
    figures["median_time_to_close"] = median
    figures["has_data"] = any(figures[key] for key in ("open", "opened", "won_back")) or n > 0
    return figures


def promoter_results(*, start: date, end: date, touchpoint: Touchpoint | None, counts: Counts | None = None) -> dict:
    """Coupons issued in range (and how many of them were emailed and redeemed); referral visits and sign-ups."""
    if counts is None:
        counts = _total(score_counts(start=start, end=end, touchpoint=touchpoint, watermark=_rollup_watermark()))
    extra = counts.extra
    figures = {
        "issued": extra["coupons_issued"],
        "emailed": extra["coupons_emailed"],
        "redeemed": extra["coupons_redeemed"],
        "referral_visits": extra["referral_visits"],
        "referral_conversions": extra["referral_conversions"],
    }
    figures["redemption_rate"] = 100 * figures["redeemed"] / figures["issued"] if figures["issued"] else None
    figures["has_data"] = bool(figures["issued"] or figures["referral_visits"] or figures["referral_conversions"])
    return figures


def dashboard(*, start: date, end: date, touchpoint: Touchpoint | None) -> dict:
    watermark = _rollup_watermark()
    previous_start, _ = _previous_period(start, end)
    # Days after the rollup (normally just today) are counted once, live, for every panel.
    live_from = max(watermark or previous_start, previous_start)
    live = daily_counts(start=live_from, end=end)
    headline_data = headline(start=start, end=end, touchpoint=touchpoint, watermark=watermark, live=live)
    current = headline_data["counts"]
    return {
        "headline": headline_data,
        "touchpoints": touchpoint_table(start=start, end=end, watermark=watermark, live=live),
        "trend": trend(start=start, end=end, touchpoint=touchpoint, watermark=watermark, live=live),
        "follow_up": follow_up_summary(
            start=start, end=end, touchpoint=touchpoint, counts=current, watermark=watermark or False
        ),
        "promoters": promoter_results(start=start, end=end, touchpoint=touchpoint, counts=current),
    }
