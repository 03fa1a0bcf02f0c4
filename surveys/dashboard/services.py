"""The dashboard's per-day rollup: rebuilt by beat, days marked dirty when a closed day's figures change.
"""

from datetime import date, timedelta

from django.db import transaction
from django.utils import timezone

from surveys.dashboard.selectors import daily_counts
from surveys.models import (
    DailyStat,
    Invitation,
    Response,
    StatsDirtyDay,
    StatsWatermark,
)


def daily_stats_rebuild(*, start: date, end: date) -> int:
    """Recount the per-day, per-touchpoint figures for days start…end (inclusive)."""
    if end < start:
        return 0
    rows = [
        DailyStat(
            day=day,
            touchpoint_id=touchpoint_id,
            invitations_sent=counts.invitations_sent,
            **{f"score_{score}": count for score, count in enumerate(counts.scores)},
            **counts.extra,
            close_histogram=counts.close_histogram,
        )
        for (day, touchpoint_id), counts in daily_counts(start=start, end=end, with_close_histogram=True).items()
    ]
    with transaction.atomic():
        DailyStat.objects.filter(day__gte=start, day__lte=end).delete()
        DailyStat.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


def stats_mark_dirty(moment) -> None:
    """A figure of a closed day changed (a late redemption, a case resolved): recount that day."""
    if moment is None:
        return
    day = timezone.localdate(moment)
    if day < timezone.localdate():
        StatsDirtyDay.objects.get_or_create(day=day)


def daily_stats_rollup(*, full: bool = False) -> dict:
    """Bring the rollup up to yesterday; recount the last two rolled days in case of late writes.

    `full=True` recounts everything (after a history import or demo seeding).
    """
    today = timezone.localdate()
    with transaction.atomic():
        watermark, _ = StatsWatermark.objects.select_for_update().get_or_create(pk=1)
        if watermark.rolled_until and not full:
            start = watermark.rolled_until - timedelta(days=2)
        else:
            first = Response.objects.order_by("created_at").values_list("created_at", flat=True).first()
            first_sent = Invitation.objects.filter(sent_at__isnull=False).order_by("sent_at").values_list(
                "sent_at", flat=True
            ).first()
            candidates = [timezone.localdate(moment) for moment in (first, first_sent) if moment]
            start = min(candidates) if candidates else today
        rows = daily_stats_rebuild(start=start, end=today - timedelta(days=1))
        dirty = sorted(set(StatsDirtyDay.objects.filter(day__lt=start).values_list("day", flat=True)))
        for day in dirty:
            rows += daily_stats_rebuild(start=day, end=day)
        StatsDirtyDay.objects.filter(day__lt=today).delete()
        StatsWatermark.objects.filter(pk=1).update(rolled_until=today, updated_at=timezone.now())
    return {"from": start.isoformat(), "rows": rows, "recounted_days": len(dirty)}
