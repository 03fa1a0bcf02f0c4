"""Parameters as the Delighted clients send them: a JSON body, a form body (properties[key]=value) or the
query string, each value checked (by the one validator where it is an address, a name or a locale).
"""

import json
from datetime import datetime
from datetime import timezone as dt_timezone

from django.core.exceptions import ValidationError
from django.http import HttpRequest, QueryDict

from surveys.api import common
from surveys.api.delighted.endpoint import ApiError
from surveys.core import validation

MAX_PER_PAGE = 100
MAX_JSON_DEPTH = 32
MAX_ID = 2**63 - 1  # the largest id the database holds: a bigger one overflows the query instead of matching nothing


def parse(request: HttpRequest) -> dict:
    """The request's parameters: a JSON body, a form body (properties[key]=value) or the query string."""
    if request.method == "GET":
        return _without_nul(_nest(request.GET))
    try:
        body = common.body_bytes(request)
    except common.Refusal as refusal:
        raise ApiError(refusal.status, refusal.message) from None
    if request.content_type == "application/json" or body[:1] in (b"{", b"["):
        if not body.strip():
            return {}
        try:
            data = common.json_object(body)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        if _depth(data) > MAX_JSON_DEPTH:
            # Checked without recursion: what reads the body later recurses and would overflow the stack.
            raise ApiError(422, f"The body is nested more than {MAX_JSON_DEPTH} levels deep.")
        return _without_nul(data)
    if request.content_type == "application/x-www-form-urlencoded" and request.method != "POST":
        # Django parses form bodies for POST only; a PUT or DELETE form is read here.
        return _without_nul(_nest(QueryDict(request.body, encoding=request.encoding)))
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return _without_nul(_nest(request.POST))
    return _without_nul(_nest(request.GET))


def _depth(value) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    return False


def _without_nul(data: dict) -> dict:
    # PostgreSQL stores a NUL neither in text nor in jsonb, and refuses one in a query.
    if _contains_nul(data):
        raise ApiError(422, "Parameters must not contain NUL characters.", ["NUL character"])
    return data


def _nest(query) -> dict:
    """`properties[plan]=pro&expand[]=person` → {"properties": {"plan": "pro"}, "expand": ["person"]}."""
    data: dict = {}
    for key in query:
        values = query.getlist(key)
        if key.endswith("[]"):
            data[key[:-2]] = values
        elif "[" in key and key.endswith("]"):
            outer, _, inner = key[:-1].partition("[")
            data.setdefault(outer, {})
            if isinstance(data[outer], dict):
                data[outer][inner] = values[-1]
        else:
            data[key] = values[-1]
    return data


def text(data: dict, name: str, max_length: int) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, (str, int)):
        raise ApiError(422, f"{name} must be a string.", [f"{name} is invalid"])
    try:
        return validation.clean_line(str(value), label=name, max_length=max_length)
    except ValidationError as exc:
        raise ApiError(422, exc.messages[0], [f"{name} is invalid"]) from None


def email(data: dict, name: str, *, required: bool) -> str:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string.", [f"{name} is invalid"])
    try:
        return validation.clean_email(value, label=name, required=required)
    except ValidationError as exc:
        raise ApiError(422, f"{name}: {exc.messages[0]}", [f"{name} is invalid"]) from None


def locale(properties: dict) -> str:
    try:
        return validation.clean_locale(properties.get("locale") if properties.get("locale") is not None else "")
    except ValidationError as exc:
        raise ApiError(422, f"properties[locale]: {exc.messages[0]}", ["locale is invalid"]) from None


def integer(data: dict, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
    value = data.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise ApiError(422, f"{name} must be a whole number.", [f"{name} is invalid"])
    try:
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ApiError(422, f"{name} must be a whole number.", [f"{name} is invalid"]) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ApiError(422, f"{name} must be between {minimum} and {maximum}.", [f"{name} is out of range"])
    return number


def boolean(data: dict, name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def timestamp(data: dict, name: str) -> datetime | None:
    seconds = integer(data, name, 0, 32503680000)
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


def properties(data: dict, name: str = "properties") -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ApiError(422, f"{name} must be an object.", [f"{name} is invalid"])
    if len(json.dumps(value, default=str)) > 16 * 1024:
        raise ApiError(422, f"{name} is too large.", [f"{name} is too large"])
    return {str(key): value for key, value in value.items()}


def per_page(data: dict) -> int:
    return integer(data, "per_page", 1, MAX_PER_PAGE) or 20
