"""Reads for the survey loop: what views, the API and admin need to show."""

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet
from django.utils import timezone, translation

from .core import db
from .models import (
    DEFAULT_QUESTION,
    DEFAULT_REASON_PROMPT,
    CaseNote,
    Coupon,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralLink,
    Response,
    SurveySkip,
    Touchpoint,
    TouchpointTranslation,
    WebhookEndpoint,
)

# Tokens come from secrets.token_urlsafe. Anything else (a NUL, which
# PostgreSQL refuses in a query, or an over-long string) matches no row.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Coupon and referral codes, upper-cased: LP-7KQ4-M2XD, 7KQ4M2XDHT.
_CODE = re.compile(r"[A-Z0-9-]{1,20}")


class _Columns:
    """One model's columns in a hand-written SELECT, made back into an instance as the ORM would."""

    def __init__(self, model, alias: str):
        self.model, self.alias = model, alias
        self.fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in self.fields]

    def sql(self, connection) -> str:
        return ", ".join(f"{self.alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)

    def converters(self, connection) -> list:
        # The same converters the ORM applies: the backend's (SQLite's dates) and the field's (JSON).
        found = []
        for index, field in enumerate(self.fields):
            column = field.get_col(self.alias)
            functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if functions:
                found.append((index, functions, column))
        return found

    def instance(self, values, converters, connection):
        values = list(values)
        for index, functions, column in converters:
            for function in functions:
                values[index] = function(values[index], column, connection)
        return self.model.from_db(connection.alias, self.attnames, values)


_SURVEY_PARTS = (
    _Columns(Invitation, "i"), _Columns(Customer, "c"), _Columns(Touchpoint, "t"), _Columns(Response, "r")
)
_survey_queries: dict[tuple, tuple] = {}


def _survey_query(connection, *, mark_opened: bool) -> tuple:
    """The join, then two columns: whether any webhook endpoint is active, and whether this
    statement marked the invitation opened (`mark_opened`, PostgreSQL only; else NULL)."""
    key = (connection.vendor, mark_opened)
    if key not in _survey_queries:
        sql = (
            f"SELECT {', '.join(part.sql(connection) for part in _SURVEY_PARTS)}"
            # Whether an answer would have webhooks to queue: it then needs not ask (services.response_submit).
            f", EXISTS (SELECT 1 FROM {WebhookEndpoint._meta.db_table} WHERE is_active)"
            f", {'EXISTS (SELECT 1 FROM opened)' if mark_opened else 'NULL'}"
            f" FROM {Invitation._meta.db_table} i"
            f" JOIN {Customer._meta.db_table} c ON c.id = i.customer_id"
            f" JOIN {Touchpoint._meta.db_table} t ON t.id = i.touchpoint_id"
            f" LEFT JOIN {Response._meta.db_table} r ON r.invitation_id = i.id"
            " WHERE i.token = %s"
        )
        if mark_opened:
            sql = f"WITH opened AS ({_MARK_OPENED_PG} RETURNING 1) {sql}"
        slices, start = [], 0
        for part in _SURVEY_PARTS:
            slices.append(slice(start, start + len(part.fields)))
            start += len(part.fields)
        _survey_queries[key] = (sql, slices, [part.converters(connection) for part in _SURVEY_PARTS])
    return _survey_queries[key]


def invitation_for_token(*, token: str, mark_opened_at=None) -> Invitation | None:
    """The invitation with its customer, touchpoint and answer (or None), in one query.

    Hand-written SQL rather than select_related(): every customer's survey page
    starts here (see core/db.py). The instances are the ORM's own, with its
    converters applied.

    `invitation.webhooks_listening` says whether any webhook endpoint was active.
    With `mark_opened_at` (the survey page, not the answer) the invitation is
    also marked opened then, if it is still open: unanswered, unexpired and
    not opened before. On PostgreSQL that UPDATE rides in the same statement,
    so the page costs one round trip; its SELECT reads the row as it was.
    """
    if not _TOKEN.fullmatch(token or ""):
        return None
    connection = db.connection_for(Invitation)
    in_one_statement = mark_opened_at is not None and connection.vendor == "postgresql"
    sql, slices, converters = _survey_query(connection, mark_opened=in_one_statement)
    params = [mark_opened_at, token, mark_opened_at, token] if in_one_statement else [token]
    with connection.cursor() as cursor:
        db.execute(cursor, connection, sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        marked = row[-1]
        if mark_opened_at is not None and not in_one_statement:
            db.execute(cursor, connection, _MARK_OPENED, [mark_opened_at, token, mark_opened_at])
            marked = cursor.rowcount == 1
    invitation_part, customer_part, touchpoint_part, response_part = _SURVEY_PARTS
    invitation = invitation_part.instance(row[slices[0]], converters[0], connection)
    invitation.customer = customer_part.instance(row[slices[1]], converters[1], connection)
    invitation.touchpoint = touchpoint_part.instance(row[slices[2]], converters[2], connection)
    response = None
    if row[slices[3]][0] is not None:
        response = response_part.instance(row[slices[3]], converters[3], connection)
        response.invitation, response.customer, response.touchpoint = (
            invitation, invitation.customer, invitation.touchpoint
        )
    Invitation.response.related.set_cached_value(invitation, response)
    invitation.webhooks_listening = row[-2]
    if marked:
        invitation.opened_at = mark_opened_at
    return invitation


# Params: opened at, token, now (the same time).
_MARK_OPENED = (
    f"UPDATE {Invitation._meta.db_table} SET opened_at = %s"
    " WHERE token = %s AND opened_at IS NULL AND answered_at IS NULL AND expires_at > %s"
)
# On PostgreSQL the mark commits without waiting for the disk (synchronous_commit off for this
# statement's own transaction only, set as the row is marked): a crash of PostgreSQL itself
# could forget the last fraction of a second's opened marks, never an answer.
_MARK_OPENED_PG = _MARK_OPENED + " AND set_config('synchronous_commit', 'off', true) = 'off'"


def response_for_invitation(*, invitation: Invitation) -> Response | None:
    try:
        return invitation.response  # no query when loaded by invitation_for_token
    except Response.DoesNotExist:
        return None


def customer_for_unsubscribe_token(*, token: str) -> Customer | None:
    if not _TOKEN.fullmatch(token or ""):
        return None
    return Customer.objects.filter(unsubscribe_token=token).first()


def touchpoint_for_slug(*, slug: str) -> Touchpoint | None:
    return Touchpoint.objects.filter(slug=slug).first()


def referral_link_for_code(*, code: str) -> ReferralLink | None:
    code = (code or "").strip().upper()
    if not _CODE.fullmatch(code):
        return None
    return ReferralLink.objects.filter(code=code).first()


def referral_link_for_customer(*, customer_id: int) -> ReferralLink | None:
    return ReferralLink.objects.filter(customer_id=customer_id).first()


CASE_FILTERS = {
    "open": "Open",
    "mine": "Mine",
    "overdue": "Overdue",
    "resolved": "Resolved",
    "all": "All",
}


def cases_list(*, user, view: str = "open") -> QuerySet[FollowUpCase]:
    cases = FollowUpCase.objects.select_related("customer", "touchpoint", "response", "assignee")
    unresolved = ~Q(status=FollowUpCase.Status.RESOLVED)
    if view == "mine":
        return cases.filter(unresolved, assignee=user).order_by("due_at")
    if view == "overdue":
        return cases.filter(unresolved, due_at__lt=timezone.now()).order_by("due_at")
    if view == "resolved":
        return cases.filter(status=FollowUpCase.Status.RESOLVED).order_by("-resolved_at")
    if view == "all":
        return cases.order_by("-opened_at")
    return cases.filter(unresolved).order_by("due_at")


def case_detail(*, case_id: int) -> FollowUpCase | None:
    return (
        FollowUpCase.objects.select_related("customer", "touchpoint", "response", "assignee", "won_back_response")
        .filter(pk=case_id)
        .first()
    )


def case_notes(*, case: FollowUpCase) -> QuerySet[CaseNote]:
    return CaseNote.objects.filter(case=case).select_related("author").order_by("created_at")


def case_assignees() -> QuerySet:
    """Users who can work cases: superusers and anyone allowed to change them."""
    User = get_user_model()
    return (
        User.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(user_permissions__codename="change_followupcase")
            | Q(groups__permissions__codename="change_followupcase")
        )
        .distinct()
        .order_by("username")
    )


def promoter_coupon_expected(*, response: Response) -> bool:
    """Whether this promoter answer earns a coupon (one per customer per 30 days)."""
    from .promoters.rules import COUPON_PER_CUSTOMER_WINDOW

    if Coupon.objects.filter(response=response).exists():
        return True
    return not Coupon.objects.filter(
        customer_id=response.customer_id, issued_at__gt=timezone.now() - COUPON_PER_CUSTOMER_WINDOW
    ).exists()


def customer_language(*, customer: Customer) -> str:
    """The supported language closest to the customer's locale (es-MX → es), else the default."""
    try:
        return translation.get_supported_language_variant((customer.locale or "").replace("_", "-").lower())
    except LookupError:
        return settings.LANGUAGE_CODE


def touchpoint_wording(
    *, touchpoint: Touchpoint, language: str, category: str | None = None, product: str | None = None
) -> tuple[str, str]:
    """The question (with {company} filled in) and reason prompt to show in `language`.

    An admin-given translation wins; a touchpoint still using the default
    wording gets the shipped translation; otherwise the touchpoint's own text.
    """
    with translation.override(language):
        question = translation.gettext(touchpoint.question) if touchpoint.question == DEFAULT_QUESTION else touchpoint.question
        prompt = touchpoint.reason_prompt_for(category)
        prompt = translation.gettext(prompt) if prompt == DEFAULT_REASON_PROMPT else prompt
    if language != settings.LANGUAGE_CODE:
        wording = TouchpointTranslation.objects.filter(touchpoint=touchpoint, language=language).first()
        if wording is not None:
            question = wording.question or question
            prompt = wording.reason_prompt or prompt
    # Delighted's `question_product_name` property names what is recommended.
    subject = str(product)[:100] if product else settings.NPS_COMPANY_NAME
    return question.replace("{company}", subject), prompt


def customer_export(*, customer: Customer) -> dict:
    """Everything stored about one customer, for a data-protection request."""

    def when(moment):
        return moment.isoformat() if moment else None

    link = ReferralLink.objects.filter(customer=customer).first()
    return {
        "customer": {
            "id": customer.pk,
            "email": customer.email,
            "name": customer.name,
            "phone": customer.phone,
            "external_id": customer.external_id,
            "locale": customer.locale,
            "created_at": when(customer.created_at),
            "unsubscribed_at": when(customer.unsubscribed_at),
            "bounced_at": when(customer.bounced_at),
            "erased_at": when(customer.erased_at),
        },
        "invitations": [
            {
                "id": invitation.pk,
                "touchpoint": invitation.touchpoint.slug,
                "status": invitation.status,
                "created_at": when(invitation.created_at),
                "sent_at": when(invitation.sent_at),
                "reminded_at": when(invitation.reminded_at),
                "opened_at": when(invitation.opened_at),
                "answered_at": when(invitation.answered_at),
                "expires_at": when(invitation.expires_at),
                "properties": invitation.properties,
            }
            for invitation in Invitation.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "responses": [
            {
                "id": response.pk,
                "touchpoint": response.touchpoint.slug,
                "score": response.score,
                "category": response.category,
                "reason": response.reason,
                "created_at": when(response.created_at),
            }
            for response in Response.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "surveys_not_sent": [
            {"touchpoint": skip.touchpoint.slug, "reason": skip.reason, "at": when(skip.created_at)}
            for skip in SurveySkip.objects.filter(customer=customer).select_related("touchpoint")
        ],
        "coupons": [
            {
                "code": coupon.code,
                "offer": coupon.offer,
                "issued_at": when(coupon.issued_at),
                "expires_at": when(coupon.expires_at),
                "emailed_at": when(coupon.emailed_at),
                "redeemed_at": when(coupon.redeemed_at),
            }
            for coupon in Coupon.objects.filter(customer=customer)
        ],
        "follow_up_cases": [
            {
                "id": case.pk,
                "status": case.status,
                "opened_at": when(case.opened_at),
                "resolved_at": when(case.resolved_at),
                "notes": [
                    {"at": when(note.created_at), "text": note.text} for note in CaseNote.objects.filter(case=case)
                ],
            }
            for case in FollowUpCase.objects.filter(customer=customer)
        ],
        "referral_link": {
            "code": link.code,
            "visits": link.visits.count(),
            "conversions": link.conversions.count(),
        }
        if link
        else None,
    }
