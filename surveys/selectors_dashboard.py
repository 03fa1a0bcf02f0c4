"""Reads for the manager dashboard: every figure is a database aggregate.

Closed days come from the `DailyStat` rollup (days before the watermark);
later days are counted live from responses and invitations. Either way each
figure costs one or two aggregate queries, whatever the number of responses.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import TruncMonth, TruncWeek
from django.utils import timezone

from .models import (
    SCORE_FIELDS,
    Category,
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

COMMENTS_PER_PAGE = 20


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


@dataclass
class Counts:
    scores: list[int] = field(default_factory=lambda: [0] * 11)
    invitations_sent: int = 0

    def add_scores(self, values) -> None:
        self.scores = [a + (b or 0) for a, b in zip(self.scores, values)]

    @property
    def responses(self) -> int:
        return sum(self.scores)

    @property
    def promoters(self) -> int:
        return self.scores[9] + self.scores[10]

    @property
    def passives(self) -> int:
        return self.scores[7] + self.scores[8]

    @property
    def detractors(self) -> int:
        return sum(self.scores[:7])

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


def score_counts(
    *, start: date, end: date, touchpoint: Touchpoint | None = None, group: str | None = None, watermark=None
) -> dict:
    """Score histogram and invitations sent for days start…end, optionally grouped.

    `group` is None (one total under the key None), "touchpoint" (keys are
    touchpoint ids), "week" or "month" (keys are the first day of the period).
    """
    split = min(max(watermark or start, start), end + timedelta(days=1))
    result: dict = {}

    def bucket(key) -> Counts:
        if isinstance(key, datetime):
            key = timezone.localtime(key).date() if timezone.is_aware(key) else key.date()
        return result.setdefault(key, Counts())

    def grouped(queryset, day_field: str):
        if group == "touchpoint":
            return queryset.values(key=F("touchpoint_id"))
        if group == "week":
            return queryset.annotate(key=TruncWeek(day_field)).values("key")
        if group == "month":
            return queryset.annotate(key=TruncMonth(day_field)).values("key")
        return queryset.annotate(key=Value(0)).values("key")

    if start < split:
        rolled = DailyStat.objects.filter(day__gte=start, day__lt=split)
        if touchpoint is not None:
            rolled = rolled.filter(touchpoint=touchpoint)
        sums = {name: Sum(name) for name in SCORE_FIELDS}
        for row in grouped(rolled, "day").annotate(sent=Sum("invitations_sent"), **sums).order_by():
            counts = bucket(row["key"])
            counts.add_scores(row[name] for name in SCORE_FIELDS)
            counts.invitations_sent += row["sent"] or 0
    if split <= end:
        low, high = _day_start(split), _day_start(end + timedelta(days=1))
        live = Response.objects.filter(created_at__gte=low, created_at__lt=high)
        sent = Invitation.objects.filter(sent_at__gte=low, sent_at__lt=high)
        if touchpoint is not None:
            live, sent = live.filter(touchpoint=touchpoint), sent.filter(touchpoint=touchpoint)
        per_score = {f"s{s}": Count("pk", filter=Q(score=s)) for s in range(11)}
        for row in grouped(live, "created_at").annotate(**per_score).order_by():
            bucket(row["key"]).add_scores(row[f"s{s}"] for s in range(11))
        for row in grouped(sent, "sent_at").annotate(n=Count("pk")).order_by():
            bucket(row["key"]).invitations_sent += row["n"]
    return result


def _total(counts_by_key: dict) -> Counts:
    total = Counts()
    for counts in counts_by_key.values():
        total.add_scores(counts.scores)
        total.invitations_sent += counts.invitations_sent
    return total


def headline(*, start: date, end: date, touchpoint: Touchpoint | None, watermark=None) -> dict:
    length = (end - start).days + 1
    previous_end = start - timedelta(days=1)
    previous_start = previous_end - timedelta(days=length - 1)
    current = _total(score_counts(start=start, end=end, touchpoint=touchpoint, watermark=watermark))
    previous = _total(
        score_counts(start=previous_start, end=previous_end, touchpoint=touchpoint, watermark=watermark)
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


def touchpoint_table(*, start: date, end: date, watermark=None) -> list[dict]:
    length = (end - start).days + 1
    previous_end = start - timedelta(days=1)
    previous_start = previous_end - timedelta(days=length - 1)
    current = score_counts(start=start, end=end, group="touchpoint", watermark=watermark)
    previous = score_counts(start=previous_start, end=previous_end, group="touchpoint", watermark=watermark)
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


def trend(*, start: date, end: date, touchpoint: Touchpoint | None, watermark=None) -> dict:
    """NPS and category shares per week (ranges up to ~4 months) or month."""
    group = "week" if (end - start).days <= 120 else "month"
    by_period = score_counts(start=start, end=end, touchpoint=touchpoint, group=group, watermark=watermark)
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


def comments(
    *,
    start: date,
    end: date,
    touchpoint: Touchpoint | None,
    category: str = "",
    search: str = "",
    page: int = 1,
) -> dict:
    """Latest reasons, newest first; one query (fetches one extra row to know if there is a next page)."""
    queryset = (
        Response.objects.filter(created_at__gte=_day_start(start), created_at__lt=_day_start(end + timedelta(days=1)))
        .exclude(reason="")
        .select_related("touchpoint", "customer")
        .order_by("-created_at", "-pk")
    )
    if touchpoint is not None:
        queryset = queryset.filter(touchpoint=touchpoint)
    if category in Category.values:
        queryset = queryset.filter(category=category)
    if search:
        queryset = queryset.filter(reason__icontains=search)
    offset = (page - 1) * COMMENTS_PER_PAGE
    rows = list(queryset[offset : offset + COMMENTS_PER_PAGE + 1])
    return {
        "items": rows[:COMMENTS_PER_PAGE],
        "page": page,
        "has_next": len(rows) > COMMENTS_PER_PAGE,
        "has_previous": page > 1,
    }


def follow_up_summary(*, start: date, end: date, touchpoint: Touchpoint | None) -> dict:
    low, high = _day_start(start), _day_start(end + timedelta(days=1))
    now = timezone.now()
    cases = FollowUpCase.objects.all()
    if touchpoint is not None:
        cases = cases.filter(touchpoint=touchpoint)
    # Three small indexed aggregates rather than one pass over every case ever opened.
    figures = cases.filter(status__in=[FollowUpCase.Status.OPEN, FollowUpCase.Status.CONTACTED]).aggregate(
        open=Count("pk"), overdue=Count("pk", filter=Q(due_at__lt=now))
    )
    figures |= cases.filter(opened_at__gte=low, opened_at__lt=high).aggregate(
        opened=Count("pk"), closed=Count("pk", filter=Q(status=FollowUpCase.Status.RESOLVED))
    )
    figures["won_back"] = cases.filter(won_back_at__gte=low, won_back_at__lt=high).count()
    figures["loop_closed_rate"] = 100 * figures["closed"] / figures["opened"] if figures["opened"] else None
    # Median time to close, for cases resolved in range: the middle row by duration.
    resolved = cases.filter(resolved_at__gte=low, resolved_at__lt=high, status=FollowUpCase.Status.RESOLVED)
    n = resolved.count()
    median = None
    if n:
        durations = resolved.annotate(took=ExpressionWrapper(F("resolved_at") - F("opened_at"), output_field=DurationField())).order_by("took").values_list("took", flat=True)
        middle = list(durations[(n - 1) // 2 : n // 2 + 1])
        median = sum(middle, timedelta()) / len(middle)
    figures["median_time_to_close"] = median
    figures["has_data"] = any(figures[key] for key in ("open", "opened", "won_back")) or n > 0
    return figures


def promoter_results(*, start: date, end: date, touchpoint: Touchpoint | None) -> dict:
    low, high = _day_start(start), _day_start(end + timedelta(days=1))
    coupons = Coupon.objects.filter(issued_at__gte=low, issued_at__lt=high)
    visits = ReferralVisit.objects.filter(created_at__gte=low, created_at__lt=high)
    conversions = ReferralConversion.objects.filter(created_at__gte=low, created_at__lt=high)
    if touchpoint is not None:
        coupons = coupons.filter(response__touchpoint=touchpoint)
        visits = visits.filter(link__touchpoint=touchpoint)
        conversions = conversions.filter(link__touchpoint=touchpoint)
    figures = coupons.aggregate(
        issued=Count("pk"),
        emailed=Count("pk", filter=Q(emailed_at__isnull=False)),
        redeemed=Count("pk", filter=Q(redeemed_at__isnull=False)),
    )
    figures["redemption_rate"] = 100 * figures["redeemed"] / figures["issued"] if figures["issued"] else None
    figures["referral_visits"] = visits.count()
    figures["referral_conversions"] = conversions.count()
    figures["has_data"] = bool(figures["issued"] or figures["referral_visits"] or figures["referral_conversions"])
    return figures


def dashboard(*, start: date, end: date, touchpoint: Touchpoint | None) -> dict:
    watermark = _rollup_watermark()
    return {
        "headline": headline(start=start, end=end, touchpoint=touchpoint, watermark=watermark),
        "touchpoints": touchpoint_table(start=start, end=end, watermark=watermark),
        "trend": trend(start=start, end=end, touchpoint=touchpoint, watermark=watermark),
        "follow_up": follow_up_summary(start=start, end=end, touchpoint=touchpoint),
        "promoters": promoter_results(start=start, end=end, touchpoint=touchpoint),
    }


def export_rows(*, start: date, end: date, touchpoint: Touchpoint | None):
    """Responses in range, oldest first, as tuples for the CSV export; streamed in chunks."""
    queryset = Response.objects.filter(
        created_at__gte=_day_start(start), created_at__lt=_day_start(end + timedelta(days=1))
    ).order_by("created_at", "pk")
    if touchpoint is not None:
        queryset = queryset.filter(touchpoint=touchpoint)
    return queryset.values_list(
        "created_at",
        "touchpoint__slug",
        "customer__email",
        "customer__name",
        "customer__external_id",
        "score",
        "category",
        "reason",
    ).iterator(chunk_size=2000)
