"""What every /v1/ view shares: the API key as HTTP Basic user name, its scope, the rate limit, and
Delighted's error envelope `{"status": N, "message": "…", "errors": […]}`.
"""

from functools import wraps

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from surveys.api import common
from surveys.models import ApiScope


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


def error(status: int, message: str, errors: list | None = None) -> JsonResponse:
    response = JsonResponse({"status": status, "message": message, "errors": errors or []}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Basic realm="Loyal Promoters"'
    return response


def delighted_endpoint(*methods: str):
    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            # Reading needs the read scope; anything that writes (erasure included), the delighted scope.
            scope = ApiScope.READ if request.method in ("GET", "HEAD") else ApiScope.DELIGHTED
            try:
                common.admit(request, raw_key=common.basic_key(request), scope=scope, how="as the HTTP Basic user name")
            except common.Refusal as refusal:
                return refusal.onto(error(refusal.status, refusal.message))
            if any("\x00" in str(value) for value in kwargs.values()):
                # PostgreSQL refuses a NUL in a query; no id or address holds one.
                return error(404, "Not found.")
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return error(exc.status, exc.message, exc.errors)
            except ValidationError as exc:
                return error(422, "Validation failed.", exc.messages)

        return wrapper

    return decorate
