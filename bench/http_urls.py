"""The app's URLs plus the two baselines bench/http.py compares the survey pages with.

*read* looks up one invitation by its unique token and returns a tiny page;
*write* does that lookup and one INSERT in a transaction. They do only the
unavoidable work: no CSRF, no session, no template, no ORM model instance;
they still pass through the project's middleware, as every view does on the
same server.
"""

from django.db import connection, transaction
from django.http import Http404, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from nps_app.urls import handler404, handler500  # noqa: F401
from nps_app.urls import urlpatterns as app_urlpatterns

PAGE = "<!doctype html><title>ok</title><p>ok</p>"

# Created by bench/http.py next to the migrated tables; shaped like a response (one per invitation).
WRITE_TABLE = "bench_http_write"


def _invitation_id(token: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM surveys_invitation WHERE token = %s", [token])
        row = cursor.fetchone()
    if row is None:
        raise Http404
    return row[0]


def read(request, token: str) -> HttpResponse:
    _invitation_id(token)
    return HttpResponse(PAGE)


@csrf_exempt
def write(request, token: str) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    with transaction.atomic():
        invitation_id = _invitation_id(token)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {WRITE_TABLE} (invitation_id, score, reason) VALUES (%s, %s, %s)",
                [invitation_id, int(request.POST.get("score", "0")), request.POST.get("reason", "")],
            )
    return HttpResponse(PAGE)


urlpatterns = [
    path("bench/read/<str:token>/", read),
    path("bench/write/<str:token>/", write),
    *app_urlpatterns,
]
