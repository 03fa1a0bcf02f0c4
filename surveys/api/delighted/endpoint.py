"""What every /v1/ view shares: the API key as HTTP Basic user name, its scope, the rate limit, and
Delighted's error envelope `{"status": N, "message": "…", "errors": […]}`.
"""

import base64
import binascii
from functools import wraps

from django.core.exceptions import ValidationError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from surveys.access import ratelimits
from surveys.access import services as access
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


def _authenticate(request: HttpRequest):
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    # `KEY` (the Python client) or `KEY:` (curl -u KEY:): the key is the user name.
    return access.api_key_authenticate(raw_key=decoded.split(":", 1)[0])


def delighted_endpoint(*methods: str):
    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method not in methods:
                response = error(405, f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            api_key = _authenticate(request)
            if api_key is None:
                return error(401, "Invalid API key: send it as the HTTP Basic user name.")
            # Reading needs the read scope; anything that writes (erasure included), the delighted scope.
            scope = ApiScope.READ if request.method in ("GET", "HEAD") else ApiScope.DELIGHTED
            if not api_key.allows(scope):
                return error(403, f"This API key may not do this: it needs the {scope!r} scope.")
            if ratelimits.api_key_limited(request, api_key):
                response = error(429, f"Too many requests; retry in {ratelimits.RETRY_AFTER_SECONDS} seconds.")
                response["Retry-After"] = str(ratelimits.RETRY_AFTER_SECONDS)
                return response
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
