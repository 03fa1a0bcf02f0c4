"""The manager dashboard and its CSV export (login and `surveys.view_dashboard`)."""

import csv

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from surveys.dashboard import comments as dashboard_comments
from surveys.dashboard import selectors as selectors_dashboard
from surveys.models import Category, Touchpoint
from surveys.touchpoints.selectors import touchpoint_for_slug
from surveys.web.forms import DashboardFilterForm

EXPORT_HEADER = ["created_at", "touchpoint", "customer_email", "customer_name", "external_id", "score", "category", "reason"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _filters(request: HttpRequest) -> tuple[DashboardFilterForm, dict]:
    today = timezone.localdate()
    form = DashboardFilterForm(request.GET, today=today)
    if form.is_valid():
        cleaned = form.cleaned_data
    else:
        # Bad parameters: say so, and show the default view rather than nothing.
        fallback = DashboardFilterForm({}, today=today)
        fallback.is_valid()
        cleaned = fallback.cleaned_data
    touchpoint = touchpoint_for_slug(slug=cleaned["touchpoint"]) if cleaned.get("touchpoint") else None
    if cleaned.get("touchpoint") and touchpoint is None:
        form.add_error(None, f"No touchpoint {cleaned['touchpoint']!r}; showing all touchpoints.")
    return form, {**cleaned, "touchpoint_obj": touchpoint}


@login_required
@permission_required("surveys.view_dashboard", raise_exception=True)
@require_http_methods(["GET", "HEAD"])
def dashboard(request: HttpRequest) -> HttpResponse:
    form, filters = _filters(request)
    start, end, touchpoint = filters["start"], filters["end"], filters["touchpoint_obj"]
    data = selectors_dashboard.dashboard(start=start, end=end, touchpoint=touchpoint)
    comments = dashboard_comments.comments(
        start=start,
        end=end,
        touchpoint=touchpoint,
        category=filters.get("category") or "",
        search=filters.get("q") or "",
        page=filters.get("page") or 1,
    )
    base_query = request.GET.copy()
    base_query.pop("page", None)
    chart_data = {
        "trend": data["trend"],
        "distribution": data["headline"]["counts"].scores,
    }
    return render(
        request,
        "dashboard/dashboard.html",
        {
            "nav": "dashboard",
            "form": form,
            "filters": filters,
            "start": start,
            "end": end,
            "touchpoint": touchpoint,
            # Not "touchpoints": that name is the NPS-by-touchpoint table in `data`.
            "touchpoint_choices": Touchpoint.objects.order_by("name"),
            "presets": DashboardFilterForm.base_fields["range"].choices,
            "categories": Category.choices,
            "comments": comments,
            "base_query": base_query.urlencode(),
            "chart_data": chart_data,
            **data,
        },
    )


def _safe_cell(value) -> str:
    """Neutralise spreadsheet formulas: a text cell may not start with = + - @ (or tab / CR)."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


class _Echo:
    def write(self, value):
        return value


@login_required
@permission_required("surveys.view_dashboard", raise_exception=True)
@require_http_methods(["GET", "HEAD"])
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    _, filters = _filters(request)
    rows = dashboard_comments.export_rows(start=filters["start"], end=filters["end"], touchpoint=filters["touchpoint_obj"])
    writer = csv.writer(_Echo())

    def stream():
        yield writer.writerow(EXPORT_HEADER)
        for row in rows:
            yield writer.writerow([_safe_cell(value) for value in row])

    response = StreamingHttpResponse(stream(), content_type="text/csv; charset=utf-8")
    name = f"responses-{filters['start']:%Y%m%d}-{filters['end']:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
