"""A Delighted-compatible API under /v1/, so integrations written for Delighted keep working.

The official `delighted` clients only need `api_base_url` pointed here. The
same API keys as our own API authenticate, sent as the HTTP Basic user name
(`KEY` or `KEY:`). Paths work with and without `.json`; field names and Unix
timestamps are Delighted's. Errors: 401 bad key, 404 unknown id, 405 wrong
method, 422 validation, always `{"status": N, "message": "…", "errors": […]}`.
"""

import base64
import binascii
import json
import math
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.db import transaction
from django.db.models import Count, Max, Q, Value
from django.db.models.functions import Lower
from django.http import HttpRequest, JsonResponse, QueryDict
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from .access import ratelimits
from .access import services as access
from .core import validation
from .customers import services as customers
from .dashboard.nps import NpsFigures, round_half_away_from_zero
from .invitations import services as invitations
from .mail import messages as emails
from .models import ApiScope, Customer, Invitation, Response, Touchpoint
from .privacy import services as privacy
from .responses import services as responses
from .touchpoints.selectors import touchpoint_for_slug

MAX_BODY_BYTES = 64 * 1024
MAX_PER_PAGE = 100
MAX_JSON_DEPTH = 32
MAX_ID = 2**63 - 1  # the largest id the database holds: a bigger one overflows the query instead of matching nothing


class ApiError(Exception):
    def __init__(self, status: int, message: str, errors: list | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


def _error(status: int, message: str, errors: list | None = None) -> JsonResponse:
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
                response = _error(405, f"Use {' or '.join(methods)}.")
                response["Allow"] = ", ".join(methods)
                return response
            api_key = _authenticate(request)
            if api_key is None:
                return _error(401, "Invalid API key: send it as the HTTP Basic user name.")
            # Reading needs the read scope; anything that writes (erasure included), the delighted scope.
            scope = ApiScope.READ if request.method in ("GET", "HEAD") else ApiScope.DELIGHTED
            if not api_key.allows(scope):
                return _error(403, f"This API key may not do this: it needs the {scope!r} scope.")
            if ratelimits.api_key_limited(request, api_key):
                response = _error(429, f"Too many requests; retry in {ratelimits.RETRY_AFTER_SECONDS} seconds.")
                response["Retry-After"] = str(ratelimits.RETRY_AFTER_SECONDS)
                return response
            if any("\x00" in str(value) for value in kwargs.values()):
                # PostgreSQL refuses a NUL in a query; no id or address holds one.
                return _error(404, "Not found.")
            try:
                return view(request, *args, **kwargs)
            except ApiError as exc:
                return _error(exc.status, exc.message, exc.errors)
            except ValidationError as exc:
                return _error(422, "Validation failed.", exc.messages)

        return wrapper

    return decorate


# --- Parameters --------------------------------------------------------------------


def _params(request: HttpRequest) -> dict:
    """The request's parameters: a JSON body, a form body (properties[key]=value) or the query string."""
    if request.method == "GET":
        return _without_nul(_nest(request.GET))
    try:
        too_big = len(request.body) > MAX_BODY_BYTES
    except RequestDataTooBig:
        too_big = True
    if too_big:
        raise ApiError(413, f"The body must be at most {MAX_BODY_BYTES} bytes.")
    if request.content_type == "application/json" or request.body[:1] in (b"{", b"["):
        if not request.body.strip():
            return {}
        try:
            data = json.loads(request.body.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
            # A "\ud800" escape decodes to a lone surrogate, which no database column can store.
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except (UnicodeError, ValueError, RecursionError):  # RecursionError: nesting thousands deep
            raise ApiError(422, "The body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ApiError(422, "The body must be a JSON object.")
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


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity: Python reads them, jsonb and integers do not


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is too large")
    return number


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


def _text(data: dict, name: str, max_length: int) -> str:
    value = data.get(name)
    if value is None:
        return ""
    if not isinstance(value, (str, int)):
        raise ApiError(422, f"{name} must be a string.", [f"{name} is invalid"])
    try:
        return validation.clean_line(str(value), label=name, max_length=max_length)
    except ValidationError as exc:
        raise ApiError(422, exc.messages[0], [f"{name} is invalid"]) from None


def _email(data: dict, name: str, *, required: bool) -> str:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string.", [f"{name} is invalid"])
    try:
        return validation.clean_email(value, label=name, required=required)
    except ValidationError as exc:
        raise ApiError(422, f"{name}: {exc.messages[0]}", [f"{name} is invalid"]) from None


def _locale(properties: dict) -> str:
    try:
        return validation.clean_locale(properties.get("locale") if properties.get("locale") is not None else "")
    except ValidationError as exc:
        raise ApiError(422, f"properties[locale]: {exc.messages[0]}", ["locale is invalid"]) from None


def _integer(data: dict, name: str, minimum: int | None = None, maximum: int | None = None) -> int | None:
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


def _boolean(data: dict, name: str, default: bool) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "off")


def _timestamp(data: dict, name: str) -> datetime | None:
    seconds = _integer(data, name, 0, 32503680000)
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=dt_timezone.utc)


def _properties(data: dict, name: str = "properties") -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise ApiError(422, f"{name} must be an object.", [f"{name} is invalid"])
    if len(json.dumps(value, default=str)) > 16 * 1024:
        raise ApiError(422, f"{name} is too large.", [f"{name} is too large"])
    return {str(key): value for key, value in value.items()}


def _unix(moment) -> int | None:
    return None if moment is None else int(moment.timestamp())


def _per_page(data: dict) -> int:
    return _integer(data, "per_page", 1, MAX_PER_PAGE) or 20


# --- Representations -------------------------------------------------------------


def _person(customer: Customer, *, summary: dict | None = None) -> dict:
    summary = summary or {}
    return {
        "id": str(customer.pk),
        "email": customer.email,
        "name": customer.name or None,
        "created_at": _unix(customer.created_at),
        "phone_number": customer.phone or None,
        "last_sent_at": _unix(max(filter(None, [summary.get("last_sent_at"), customer.last_sent_at]), default=None)),
        "last_responded_at": _unix(summary.get("last_responded_at")),
        "next_survey_scheduled_at": _unix(summary.get("next_survey_scheduled_at")),
    }


def _people_summaries(customer_ids: list[int]) -> dict[int, dict]:
    """Last sent, last answered and next scheduled survey for many people: two aggregate queries."""
    summaries: dict[int, dict] = {pk: {} for pk in customer_ids}
    now = timezone.now()
    for row in (
        Invitation.objects.filter(customer_id__in=customer_ids)
        .values("customer_id")
        .annotate(
            last_sent_at=Max("sent_at"),
            next_survey_scheduled_at=Max("send_after", filter=Q(status=Invitation.Status.PENDING, send_after__gt=now)),
        )
    ):
        summaries[row["customer_id"]].update(row)
    for row in Response.objects.filter(customer_id__in=customer_ids).values("customer_id").annotate(
        last_responded_at=Max("created_at")
    ):
        summaries[row["customer_id"]].update(row)
    return summaries


def _survey_response(response: Response, *, expand_person: bool) -> dict:
    customer = response.customer
    return {
        "id": str(response.pk),
        "person": _person(customer, summary=_people_summaries([customer.pk])[customer.pk])
        if expand_person
        else str(customer.pk),
        "survey_type": "nps",
        "score": response.score,
        "comment": response.reason or None,
        "permalink": emails.absolute_url(reverse("admin:surveys_response_change", args=[response.pk])),
        "created_at": _unix(response.created_at),
        "updated_at": _unix(response.updated_at) if response.updated_at > response.created_at else None,
        "person_properties": response.invitation.properties or {},
        "notes": [],
        "tags": [],
        "additional_answers": [],
    }


# --- People ----------------------------------------------------------------------


def _default_touchpoint() -> Touchpoint:
    touchpoint = Touchpoint.objects.filter(is_api_default=True).first() or Touchpoint.objects.order_by("pk").first()
    if touchpoint is None:
        raise ApiError(422, "No touchpoint exists yet: create one in the admin first.", ["touchpoint is missing"])
    return touchpoint


def _touchpoint_from(properties: dict) -> Touchpoint:
    slug = properties.get("touchpoint")
    if slug:
        touchpoint = touchpoint_for_slug(slug=str(slug)[:60])
        if touchpoint is None:
            raise ApiError(422, f"No touchpoint has the slug {slug!r}.", ["touchpoint is unknown"])
        return touchpoint
    return _default_touchpoint()


@delighted_endpoint("GET", "POST")
def people(request: HttpRequest, **kwargs) -> JsonResponse:
    return _people_create(request) if request.method == "POST" else _people_list(request)


def _people_create(request: HttpRequest) -> JsonResponse:
    data = _params(request)
    email = _email(data, "email", required=True)
    email_update = _email(data, "email_update", required=False)
    name = _text(data, "name", validation.NAME_MAX_LENGTH)
    phone = _text(data, "phone_number", validation.PHONE_MAX_LENGTH)
    properties = _properties(data)
    delay = _integer(data, "delay", 0, 366 * 86400) or 0
    send = _boolean(data, "send", True)
    locale = _locale(properties)
    last_sent_at = _timestamp(data, "last_sent_at")
    with transaction.atomic():
        try:
            customer = customers.customer_upsert(email=email, name=name, phone=phone, locale=locale)
            if email_update and email_update != customer.email:
                customer = customers.customer_change_email(customer=customer, email=email_update)
        except customers.CustomerErased as exc:
            raise ApiError(422, str(exc), ["person is erased"]) from None
        except customers.CustomerConflict as exc:
            raise ApiError(422, str(exc), ["email is taken"]) from None
        if last_sent_at is not None:
            customers.customer_set_last_sent(customer=customer, moment=last_sent_at)
        body = {**_person(customer), "properties": properties}
        for field in ("last_sent_at", "last_responded_at", "next_survey_scheduled_at"):
            body.pop(field)
        if send:
            touchpoint = _touchpoint_from(properties)
            outcome = invitations.invitation_request(
                touchpoint=touchpoint,
                customer=customer,
                source=Invitation.Source.API,
                send_after=timezone.now() + timedelta(seconds=delay),
                properties=properties,
            )
            if outcome.skipped:
                # Delighted answers a throttled or unsubscribed person without a scheduled survey.
                body["survey_skipped"] = outcome.skip_reason
            else:
                body["survey_scheduled_at"] = _unix(outcome.invitation.send_after)
    return JsonResponse(body)


def _people_list(request: HttpRequest) -> JsonResponse:
    data = _params(request)
    per_page = _per_page(data)
    people_qs = Customer.objects.filter(erased_at__isnull=True).order_by("pk")
    if since := _timestamp(data, "since"):
        people_qs = people_qs.filter(created_at__gte=since)
    if until := _timestamp(data, "until"):
        people_qs = people_qs.filter(created_at__lte=until)
    if email := data.get("email"):
        people_qs = _with_email(people_qs, str(email))
    if phone := data.get("phone_number"):
        people_qs = people_qs.filter(phone=str(phone))
    # Cursor pagination: page_info is the last id seen, so pages stay stable while people are added.
    if cursor := data.get("page_info"):
        try:
            after = int(base64.urlsafe_b64decode(str(cursor) + "==").decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ApiError(422, "page_info is not a cursor this API gave out.", ["page_info is invalid"]) from None
        people_qs = people_qs.filter(pk__gt=after)
    page = list(people_qs[: per_page + 1])
    has_next = len(page) > per_page
    page = page[:per_page]
    summaries = _people_summaries([customer.pk for customer in page])
    response = JsonResponse([_person(customer, summary=summaries[customer.pk]) for customer in page], safe=False)
    if has_next:
        query = request.GET.copy()
        query["page_info"] = base64.urlsafe_b64encode(str(page[-1].pk).encode()).decode().rstrip("=")
        query["per_page"] = str(per_page)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return response


def _with_email(people_qs, email: str):
    """The person with this address, in any spelling (addresses are stored canonically)."""
    try:
        email = validation.canonical_email(email)
    except ValidationError:
        return people_qs.none()
    # LOWER(email) is what the unique index holds; `email__iexact` (UPPER) would scan the table.
    return people_qs.alias(email_lower=Lower("email")).filter(email_lower=Lower(Value(email)))


def _customer_for_identifier(identifier: str, *, erased_too: bool = False) -> Customer:
    kind, _, value = identifier.partition(":")
    people_qs = Customer.objects.all() if erased_too else Customer.objects.filter(erased_at__isnull=True)
    if kind == "email" and value:
        customer = _with_email(people_qs, value).first()
    elif kind == "phone_number" and value:
        customer = people_qs.filter(phone=value).first()
    elif identifier.isascii() and identifier.isdigit() and int(identifier) <= MAX_ID:
        customer = people_qs.filter(pk=int(identifier)).first()
    else:
        customer = None
    if customer is None:
        raise ApiError(404, "No such person.")
    return customer


@delighted_endpoint("DELETE")
def person_delete(request: HttpRequest, identifier: str, **kwargs) -> JsonResponse:
    """Erase a person. Asking again is harmless: an erased record is scrubbed again, an erased address is done."""
    try:
        customer = _customer_for_identifier(identifier, erased_too=True)
    except ApiError:
        kind, _, value = identifier.partition(":")
        if kind == "email" and value and customers.address_is_suppressed(value):
            return JsonResponse({"ok": True}, status=202)
        raise
    privacy.customer_erase(customer=customer)
    return JsonResponse({"ok": True}, status=202)


@delighted_endpoint("DELETE")
def pending_survey_requests_delete(request: HttpRequest, email: str, **kwargs) -> JsonResponse:
    customer = _with_email(Customer.objects.filter(erased_at__isnull=True), email).first()
    if customer is None:
        raise ApiError(404, "No such person.")
    invitations.invitations_cancel_pending(customer=customer)
    return JsonResponse({"ok": True})


# --- Survey responses ----------------------------------------------------------------


def _trend_filter(trend) -> Q:
    """A touchpoint by slug, or by id as Delighted's trends are."""
    trend = str(trend)
    # isdigit() alone also accepts "²", which int() refuses.
    if trend.isascii() and trend.isdigit() and int(trend) <= MAX_ID:
        return Q(touchpoint__slug=trend) | Q(touchpoint__pk=int(trend))
    return Q(touchpoint__slug=trend)


def _expand_person(data: dict) -> bool:
    expand = data.get("expand") or []
    if isinstance(expand, str):
        expand = [expand]
    return isinstance(expand, list) and "person" in expand  # anything else JSON allows expands nothing


@delighted_endpoint("GET", "POST")
def survey_responses(request: HttpRequest, **kwargs) -> JsonResponse:
    return _survey_response_create(request) if request.method == "POST" else _survey_responses_list(request)


def _survey_response_create(request: HttpRequest) -> JsonResponse:
    data = _params(request)
    person_id = _integer(data, "person", 1, MAX_ID)
    if person_id is None:
        raise ApiError(422, "person (the person's id) is required.", ["person is required"])
    customer = Customer.objects.filter(pk=person_id, erased_at__isnull=True).first()
    if customer is None:
        raise ApiError(422, "No person has this id.", ["person is invalid"])
    score = _integer(data, "score", 0, 10)
    if score is None:
        raise ApiError(422, "score (0 to 10) is required.", ["score is required"])
    comment = data.get("comment") or ""
    if not isinstance(comment, str):
        raise ApiError(422, "comment must be a string.", ["comment is invalid"])
    properties = _properties(data, "person_properties")
    response = responses.response_record(
        customer=customer, touchpoint=_touchpoint_from(properties), score=score, reason=comment, properties=properties
    )
    response = Response.objects.select_related("customer", "invitation").get(pk=response.pk)
    return JsonResponse(_survey_response(response, expand_person=_expand_person(data)), status=201)


def _survey_responses_list(request: HttpRequest) -> JsonResponse:
    data = _params(request)
    answers = Response.objects.select_related("customer", "invitation").filter(customer__erased_at__isnull=True)
    for name, lookup in (
        ("since", "created_at__gte"),
        ("until", "created_at__lte"),
        ("updated_since", "updated_at__gte"),
        ("updated_until", "updated_at__lte"),
    ):
        if moment := _timestamp(data, name):
            answers = answers.filter(**{lookup: moment})
    if person_id := _integer(data, "person_id", 1, MAX_ID):
        answers = answers.filter(customer_id=person_id)
    if person_email := data.get("person_email"):
        answers = answers.filter(customer__email__iexact=str(person_email))
    if trend := data.get("trend"):
        answers = answers.filter(_trend_filter(trend))
    order = str(data.get("order", "asc"))
    direction, _, field = order.partition(":")
    if direction not in ("asc", "desc") or field not in ("", "updated_at"):
        raise ApiError(422, "order must be asc, desc, asc:updated_at or desc:updated_at.", ["order is invalid"])
    column = "updated_at" if field else "created_at"
    answers = answers.order_by(f"{'-' if direction == 'desc' else ''}{column}", "pk")
    paginator = Paginator(answers, _per_page(data))
    page_number = _integer(data, "page", 1) or 1
    try:
        page = paginator.page(page_number)
    except EmptyPage:
        return JsonResponse([], safe=False)
    expand = _expand_person(data)
    response = JsonResponse([_survey_response(item, expand_person=expand) for item in page], safe=False)
    if page.has_next():
        query = request.GET.copy()
        query["page"] = str(page_number + 1)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return response


@delighted_endpoint("GET", "PUT")
def survey_response_detail(request: HttpRequest, pk: str, **kwargs) -> JsonResponse:
    response = (
        Response.objects.select_related("customer", "invitation")
        .filter(pk=int(pk), customer__erased_at__isnull=True)
        .first()
    )
    if response is None:
        raise ApiError(404, "No such survey response.")
    data = _params(request)
    if request.method == "PUT":
        comment = data.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(422, "comment must be a string.", ["comment is invalid"])
        properties = _properties(data, "person_properties") if "person_properties" in data else None
        response = responses.response_update(
            response=response, score=_integer(data, "score", 0, 10), reason=comment, properties=properties
        )
        response = Response.objects.select_related("customer", "invitation").get(pk=response.pk)
    return JsonResponse(_survey_response(response, expand_person=_expand_person(data)))


# --- Metrics, unsubscribes, bounces -------------------------------------------------------


@delighted_endpoint("GET")
def metrics(request: HttpRequest, **kwargs) -> JsonResponse:
    data = _params(request)
    answers = Response.objects.all()
    if since := _timestamp(data, "since"):
        answers = answers.filter(created_at__gte=since)
    if until := _timestamp(data, "until"):
        answers = answers.filter(created_at__lte=until)
    if trend := data.get("trend"):
        answers = answers.filter(_trend_filter(trend))
    counts = {row["category"]: row["n"] for row in answers.values("category").annotate(n=Count("pk")).order_by()}
    figures = NpsFigures(
        responses=sum(counts.values()),
        promoters=counts.get("promoter", 0),
        passives=counts.get("passive", 0),
        detractors=counts.get("detractor", 0),
        min_responses=settings.NPS_MIN_RESPONSES,
    )

    def percent(count: int) -> int:
        return round_half_away_from_zero(100 * count / figures.responses) if figures.responses else 0

    return JsonResponse(
        {
            "nps": figures.score if figures.has_data else 0,
            "promoter_count": figures.promoters,
            "promoter_percent": percent(figures.promoters),
            "passive_count": figures.passives,
            "passive_percent": percent(figures.passives),
            "detractor_count": figures.detractors,
            "detractor_percent": percent(figures.detractors),
            "response_count": figures.responses,
        }
    )


def _people_page(request: HttpRequest, people_qs, moment_field: str, label: str) -> JsonResponse:
    data = _params(request)
    if since := _timestamp(data, "since"):
        people_qs = people_qs.filter(**{f"{moment_field}__gte": since})
    if until := _timestamp(data, "until"):
        people_qs = people_qs.filter(**{f"{moment_field}__lte": until})
    paginator = Paginator(people_qs.order_by(moment_field, "pk"), _per_page(data))
    try:
        page = paginator.page(_integer(data, "page", 1) or 1)
    except EmptyPage:
        return JsonResponse([], safe=False)
    return JsonResponse(
        [
            {
                "person_id": str(customer.pk),
                "email": customer.email,
                "name": customer.name or None,
                label: _unix(getattr(customer, moment_field)),
            }
            for customer in page
        ],
        safe=False,
    )


@delighted_endpoint("GET", "POST")
def unsubscribes(request: HttpRequest, **kwargs) -> JsonResponse:
    if request.method == "POST":
        data = _params(request)
        email = _email(data, "person_email", required=True)
        try:
            customer = customers.customer_upsert(email=email)
        except customers.CustomerConflict as exc:
            raise ApiError(422, str(exc), ["person_email is invalid"]) from None
        customers.customer_unsubscribe(customer=customer)
        return JsonResponse({"ok": True})
    people_qs = Customer.objects.filter(unsubscribed_at__isnull=False, erased_at__isnull=True)
    return _people_page(request, people_qs, "unsubscribed_at", "unsubscribed_at")


@delighted_endpoint("GET")
def bounces(request: HttpRequest, **kwargs) -> JsonResponse:
    people_qs = Customer.objects.filter(bounced_at__isnull=False, erased_at__isnull=True)
    return _people_page(request, people_qs, "bounced_at", "bounced_at")

