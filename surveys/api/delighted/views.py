"""A Delighted-compatible API under /v1/, so integrations written for Delighted keep working.

The official `delighted` clients only need `api_base_url` pointed here. The
same API keys as our own API authenticate, sent as the HTTP Basic user name
(`KEY` or `KEY:`). Paths work with and without `.json`; field names and Unix
timestamps are Delighted's. Errors: 401 bad key, 404 unknown id, 405 wrong
method, 422 validation, always `{"status": N, "message": "…", "errors": […]}`.
"""

import base64
import binascii
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.paginator import EmptyPage, Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from surveys.api.delighted import endpoint, params, representations
from surveys.core import validation
from surveys.customers import services as customers
from surveys.dashboard.nps import NpsFigures, round_half_away_from_zero
from surveys.invitations import services as invitations
from surveys.models import Customer, Invitation, Response, Touchpoint
from surveys.privacy import services as privacy
from surveys.responses import services as responses
from surveys.touchpoints.selectors import default_touchpoint, touchpoint_for_slug

# --- People ----------------------------------------------------------------------


def _default_touchpoint() -> Touchpoint:
    touchpoint = default_touchpoint()
    if touchpoint is None:
        if not Touchpoint.objects.exists():
            raise endpoint.ApiError(422, "No touchpoint exists yet: create one in the admin first.", ["touchpoint is missing"])
        raise endpoint.ApiError(
            422,
            "Name the touchpoint in properties[touchpoint], or mark one as the default for the Delighted-compatible "
            "API in the admin.",
            ["touchpoint is missing"],
        )
    return touchpoint


def _touchpoint_from(properties: dict) -> Touchpoint:
    slug = properties.get("touchpoint")
    if slug:
        touchpoint = touchpoint_for_slug(slug=str(slug)[:60])
        if touchpoint is None:
            raise endpoint.ApiError(422, f"No touchpoint has the slug {slug!r}.", ["touchpoint is unknown"])
        return touchpoint
    return _default_touchpoint()


@endpoint.delighted_endpoint("GET", "POST")
def people(request: HttpRequest, **kwargs) -> JsonResponse:
    return _people_create(request) if request.method == "POST" else _people_list(request)


def _people_create(request: HttpRequest) -> JsonResponse:
    data = params.parse(request)
    email = params.email(data, "email", required=True)
    email_update = params.email(data, "email_update", required=False)
    name = params.text(data, "name", validation.NAME_MAX_LENGTH)
    phone = params.text(data, "phone_number", validation.PHONE_MAX_LENGTH)
    properties = params.properties(data)
    delay = params.integer(data, "delay", 0, 366 * 86400) or 0
    send = params.boolean(data, "send", True)
    locale = params.locale(properties)
    last_sent_at = params.timestamp(data, "last_sent_at")
    with transaction.atomic():
        try:
            customer = customers.customer_upsert(email=email, name=name, phone=phone, locale=locale)
            if email_update and email_update != customer.email:
                customer = customers.customer_change_email(customer=customer, email=email_update)
        except customers.CustomerErased as exc:
            raise endpoint.ApiError(422, str(exc), ["person is erased"]) from None
        except customers.CustomerConflict as exc:
            raise endpoint.ApiError(422, str(exc), ["email is taken"]) from None
        if last_sent_at is not None:
            customers.customer_set_last_sent(customer=customer, moment=last_sent_at)
        body = {**representations.person(customer), "properties": properties}
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
                body["survey_scheduled_at"] = representations.unix(outcome.invitation.send_after)
    return JsonResponse(body)


def _people_list(request: HttpRequest) -> JsonResponse:
    data = params.parse(request)
    per_page = params.per_page(data)
    people_qs = Customer.objects.filter(erased_at__isnull=True).order_by("pk")
    if since := params.timestamp(data, "since"):
        people_qs = people_qs.filter(created_at__gte=since)
    if until := params.timestamp(data, "until"):
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
            raise endpoint.ApiError(422, "page_info is not a cursor this API gave out.", ["page_info is invalid"]) from None
        people_qs = people_qs.filter(pk__gt=after)
    page = list(people_qs[: per_page + 1])
    has_next = len(page) > per_page
    page = page[:per_page]
    summaries = representations.people_summaries([customer.pk for customer in page])
    response = JsonResponse([representations.person(customer, summary=summaries[customer.pk]) for customer in page], safe=False)
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
    return customers.customers_with_email(email, among=people_qs)


def _customer_for_identifier(identifier: str, *, erased_too: bool = False) -> Customer:
    kind, _, value = identifier.partition(":")
    people_qs = Customer.objects.all() if erased_too else Customer.objects.filter(erased_at__isnull=True)
    if kind == "email" and value:
        customer = _with_email(people_qs, value).first()
    elif kind == "phone_number" and value:
        customer = people_qs.filter(phone=value).first()
    elif identifier.isascii() and identifier.isdigit() and int(identifier) <= params.MAX_ID:
        customer = people_qs.filter(pk=int(identifier)).first()
    else:
        customer = None
    if customer is None:
        raise endpoint.ApiError(404, "No such person.")
    return customer


@endpoint.delighted_endpoint("DELETE")
def person_delete(request: HttpRequest, identifier: str, **kwargs) -> JsonResponse:
    """Erase a person. Asking again is harmless: an erased record is scrubbed again, an erased address is done."""
    try:
        customer = _customer_for_identifier(identifier, erased_too=True)
    except endpoint.ApiError:
        kind, _, value = identifier.partition(":")
        if kind == "email" and value and customers.address_is_suppressed(value):
            return JsonResponse({"ok": True}, status=202)
        raise
    privacy.customer_erase(customer=customer)
    return JsonResponse({"ok": True}, status=202)


@endpoint.delighted_endpoint("DELETE")
def pending_survey_requests_delete(request: HttpRequest, email: str, **kwargs) -> JsonResponse:
    customer = _with_email(Customer.objects.filter(erased_at__isnull=True), email).first()
    if customer is None:
        raise endpoint.ApiError(404, "No such person.")
    invitations.invitations_cancel_pending(customer=customer)
    return JsonResponse({"ok": True})


# --- Survey responses ----------------------------------------------------------------


def _trend_filter(trend) -> Q:
    """A touchpoint by slug, or by id as Delighted's trends are."""
    trend = str(trend)
    # isdigit() alone also accepts "²", which int() refuses.
    if trend.isascii() and trend.isdigit() and int(trend) <= params.MAX_ID:
        return Q(touchpoint__slug=trend) | Q(touchpoint__pk=int(trend))
    return Q(touchpoint__slug=trend)


def _expand_person(data: dict) -> bool:
    expand = data.get("expand") or []
    if isinstance(expand, str):
        expand = [expand]
    return isinstance(expand, list) and "person" in expand  # anything else JSON allows expands nothing


@endpoint.delighted_endpoint("GET", "POST")
def survey_responses(request: HttpRequest, **kwargs) -> JsonResponse:
    return _survey_response_create(request) if request.method == "POST" else _survey_responses_list(request)


def _survey_response_create(request: HttpRequest) -> JsonResponse:
    data = params.parse(request)
    person_id = params.integer(data, "person", 1, params.MAX_ID)
    if person_id is None:
        raise endpoint.ApiError(422, "person (the person's id) is required.", ["person is required"])
    customer = Customer.objects.filter(pk=person_id, erased_at__isnull=True).first()
    if customer is None:
        raise endpoint.ApiError(422, "No person has this id.", ["person is invalid"])
    score = params.integer(data, "score", 0, 10)
    if score is None:
        raise endpoint.ApiError(422, "score (0 to 10) is required.", ["score is required"])
    comment = data.get("comment") or ""
    if not isinstance(comment, str):
        raise endpoint.ApiError(422, "comment must be a string.", ["comment is invalid"])
    properties = params.properties(data, "person_properties")
    response = responses.response_record(
        customer=customer, touchpoint=_touchpoint_from(properties), score=score, reason=comment, properties=properties
    )
    response = Response.objects.select_related("customer", "invitation").get(pk=response.pk)
    return JsonResponse(representations.survey_response(response, expand_person=_expand_person(data)), status=201)


def _survey_responses_list(request: HttpRequest) -> JsonResponse:
    data = params.parse(request)
    answers = Response.objects.select_related("customer", "invitation").filter(customer__erased_at__isnull=True)
    for name, lookup in (
        ("since", "created_at__gte"),
        ("until", "created_at__lte"),
        ("updated_since", "updated_at__gte"),
        ("updated_until", "updated_at__lte"),
    ):
        if moment := params.timestamp(data, name):
            answers = answers.filter(**{lookup: moment})
    if person_id := params.integer(data, "person_id", 1, params.MAX_ID):
        answers = answers.filter(customer_id=person_id)
    if person_email := data.get("person_email"):
        answers = answers.filter(customer__in=_with_email(Customer.objects.all(), str(person_email)).values("pk"))
    if trend := data.get("trend"):
        answers = answers.filter(_trend_filter(trend))
    order = str(data.get("order", "asc"))
    direction, _, field = order.partition(":")
    if direction not in ("asc", "desc") or field not in ("", "updated_at"):
        raise endpoint.ApiError(422, "order must be asc, desc, asc:updated_at or desc:updated_at.", ["order is invalid"])
    column = "updated_at" if field else "created_at"
    answers = answers.order_by(f"{'-' if direction == 'desc' else ''}{column}", "pk")
    paginator = Paginator(answers, params.per_page(data))
    page_number = params.integer(data, "page", 1) or 1
    try:
        page = paginator.page(page_number)
    except EmptyPage:
        return JsonResponse([], safe=False)
    expand = _expand_person(data)
    response = JsonResponse([representations.survey_response(item, expand_person=expand) for item in page], safe=False)
    if page.has_next():
        query = request.GET.copy()
        query["page"] = str(page_number + 1)
        response["Link"] = f'<{request.build_absolute_uri(request.path)}?{query.urlencode()}>; rel="next"'
    return response


@endpoint.delighted_endpoint("GET", "PUT")
def survey_response_detail(request: HttpRequest, pk: str, **kwargs) -> JsonResponse:
    response = (
        Response.objects.select_related("customer", "invitation")
        .filter(pk=int(pk), customer__erased_at__isnull=True)
        .first()
    )
    if response is None:
        raise endpoint.ApiError(404, "No such survey response.")
    data = params.parse(request)
    if request.method == "PUT":
        comment = data.get("comment")
        if comment is not None and not isinstance(comment, str):
            raise endpoint.ApiError(422, "comment must be a string.", ["comment is invalid"])
        properties = params.properties(data, "person_properties") if "person_properties" in data else None
        response = responses.response_update(
            response=response, score=params.integer(data, "score", 0, 10), reason=comment, properties=properties
        )
        response = Response.objects.select_related("customer", "invitation").get(pk=response.pk)
    return JsonResponse(representations.survey_response(response, expand_person=_expand_person(data)))


# --- Metrics, unsubscribes, bounces -------------------------------------------------------


@endpoint.delighted_endpoint("GET")
def metrics(request: HttpRequest, **kwargs) -> JsonResponse:
    data = params.parse(request)
    answers = Response.objects.all()
    if since := params.timestamp(data, "since"):
        answers = answers.filter(created_at__gte=since)
    if until := params.timestamp(data, "until"):
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
    data = params.parse(request)
    if since := params.timestamp(data, "since"):
        people_qs = people_qs.filter(**{f"{moment_field}__gte": since})
    if until := params.timestamp(data, "until"):
        people_qs = people_qs.filter(**{f"{moment_field}__lte": until})
    paginator = Paginator(people_qs.order_by(moment_field, "pk"), params.per_page(data))
    try:
        page = paginator.page(params.integer(data, "page", 1) or 1)
    except EmptyPage:
        return JsonResponse([], safe=False)
    return JsonResponse(
        [
            {
                "person_id": str(customer.pk),
                "email": customer.email,
                "name": customer.name or None,
                label: representations.unix(getattr(customer, moment_field)),
            }
            for customer in page
        ],
        safe=False,
    )


@endpoint.delighted_endpoint("GET", "POST")
def unsubscribes(request: HttpRequest, **kwargs) -> JsonResponse:
    if request.method == "POST":
        data = params.parse(request)
        email = params.email(data, "person_email", required=True)
        try:
            customer = customers.customer_upsert(email=email)
        except customers.CustomerConflict as exc:
            raise endpoint.ApiError(422, str(exc), ["person_email is invalid"]) from None
        customers.customer_unsubscribe(customer=customer)
        return JsonResponse({"ok": True})
    people_qs = Customer.objects.filter(unsubscribed_at__isnull=False, erased_at__isnull=True)
    return _people_page(request, people_qs, "unsubscribed_at", "unsubscribed_at")


@endpoint.delighted_endpoint("GET")
def bounces(request: HttpRequest, **kwargs) -> JsonResponse:
    people_qs = Customer.objects.filter(bounced_at__isnull=False, erased_at__isnull=True)
    return _people_page(request, people_qs, "bounced_at", "bounced_at")
