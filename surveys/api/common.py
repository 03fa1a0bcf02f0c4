"""What both JSON APIs share: the API key a request carries, the checks every call passes (a valid key,
its scope, its rate limit), and the body read as one JSON object. Each API writes a `Refusal` in its
own envelope: ours `{"error", "detail"}`, Delighted's `{"status", "message", "errors"}`."""

import base64
import binascii
import json
import math
from dataclasses import dataclass, field

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from surveys.access import ratelimits
from surveys.access import services as access
from surveys.models import ApiKey

MAX_BODY_BYTES = 64 * 1024


@dataclass
class Refusal(Exception):
    status: int
    code: str  # for programs, our API's "error"
    message: str  # for a person
    headers: dict = field(default_factory=dict)

    def onto(self, response):
        """`response` (the API's own error envelope for this refusal) with the refusal's headers, e.g. Retry-After."""
        for name, value in self.headers.items():
            response[name] = value
        return response


def bearer_key(request: HttpRequest) -> str:
    """The key of `Authorization: Bearer <key>` (our API), or ""."""
    scheme, _, raw_key = request.headers.get("Authorization", "").partition(" ")
    return raw_key.strip() if scheme.lower() == "bearer" else ""


def basic_key(request: HttpRequest) -> str:
    """The key sent as the HTTP Basic user name, `KEY` (the Python client) or `KEY:` (curl -u KEY:), or ""."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.split(":", 1)[0]


def admit(request: HttpRequest, *, raw_key: str, scope: str, how: str) -> ApiKey:
    """The request's API key if it may do `scope` now; else a Refusal (401, 403 or 429). `how`: how to send a key."""
    api_key = access.api_key_authenticate(raw_key=raw_key) if raw_key else None
    if api_key is None:
        raise Refusal(401, "unauthorized", f"Send a valid API key {how}.")
    if not api_key.allows(scope):
        raise Refusal(403, "forbidden", f"This API key may not do this: it needs the {scope!r} scope.")
    if ratelimits.api_key_limited(request, api_key):
        seconds = ratelimits.RETRY_AFTER_SECONDS
        raise Refusal(429, "rate_limited", f"Too many requests for this API key; retry in {seconds} seconds.",
                      {"Retry-After": str(seconds)})
    return api_key


def body_bytes(request: HttpRequest) -> bytes:
    """The request body, or a Refusal (413) past MAX_BODY_BYTES."""
    try:
        body = request.body
    except RequestDataTooBig:
        body = None
    if body is None or len(body) > MAX_BODY_BYTES:
        raise Refusal(413, "body_too_large", f"The body must be at most {MAX_BODY_BYTES} bytes.")
    return body


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python reads them, jsonb and integers do not


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is too large")
    return number


def json_object(body: bytes) -> dict:
    """The body as one JSON object, or ValueError saying why not (the API picks its status)."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
        # A "\ud800" escape decodes to a lone surrogate, which no database column can store.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, ValueError, RecursionError):  # RecursionError: nesting thousands deep
        raise ValueError("The body is not valid UTF-8 JSON.") from None
    if not isinstance(data, dict):
        raise ValueError("The body must be a JSON object.")
    return data
