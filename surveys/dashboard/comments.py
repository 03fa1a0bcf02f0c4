"""What customers wrote: the dashboard's comments (filtered, searched, paged) and the CSV export of the answers."""


from datetime import date, timedelta

from surveys.dashboard.selectors import day_start
from surveys.models import (
    Category,
    Response,
    Touchpoint,
)

COMMENTS_PER_PAGE = 20


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
        Response.objects.filter(created_at__gte=day_start(start), created_at__lt=day_start(end + timedelta(days=1)))
        .exclude(reason="")
        .select_related("touchpoint", "customer")
        # The created_at index alone gives this order: no sort over the whole range.
        .order_by("-created_at")
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


def export_rows(*, start: date, end: date, touchpoint: Touchpoint | None):
    """Responses in range, oldest first, as tuples for the CSV export; streamed in chunks."""
    queryset = Response.objects.filter(
        created_at__gte=day_start(start), created_at__lt=day_start(end + timedelta(days=1))
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
