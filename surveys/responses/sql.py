"""The hand-written SQL of the answer path, each statement beside the ORM version that is its spec.

The survey page's lookup: the invitation with its customer, touchpoint and answer in one
statement (with the opened mark riding along on PostgreSQL), made back into the ORM's own instances.

Every customer's survey page starts here; through select_related() the ORM spent more on compiling the
four-table join than PostgreSQL on running it (core/db.py prepares it once per connection).

The answer (`Answer`): on PostgreSQL one statement of data-modifying WITH clauses, one round trip
(bench/http.py); elsewhere the ORM version, which is also what that statement must do.
"""

from dataclasses import dataclass
from datetime import datetime

from surveys.core import db, validation
from surveys.followups import rules as followup_rules
from surveys.models import (
    Category,
    Customer,
    FollowUpCase,
    Invitation,
    ReferralLink,
    Response,
    Touchpoint,
    WebhookEndpoint,
)


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
    if not validation.is_token(token):
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


# A customer who had a follow-up case and now answers 7+ was won back. Params: now, customer id, now.
_WON_BACK = (
    f"UPDATE {FollowUpCase._meta.db_table} SET won_back_at = %s, won_back_response_id = {{response_id}}"
    " WHERE customer_id = %s AND won_back_at IS NULL AND opened_at < %s"
)
_ANSWERED = f"UPDATE {Invitation._meta.db_table} SET answered_at = %s WHERE id = %s"


@dataclass
class Answer:
    """The rows one answer writes: the response, the invitation's answered mark, a won-back case,
    the promoter's share link or the detractor's follow-up case."""

    response: Response
    now: datetime
    link: ReferralLink | None = None
    case: FollowUpCase | None = None

    @classmethod
    def of(cls, *, response: Response, now: datetime) -> "Answer":
        """What this answer writes besides itself: a promoter's share link, or a follow-up case."""
        answer = cls(response=response, now=now)
        touchpoint = response.touchpoint
        if response.category == Category.PROMOTER:
            # The customer's share link, made by their first promoter answer; the thank-you page shows it.
            answer.link = ReferralLink(customer_id=response.customer_id, touchpoint=touchpoint, response=response)
        elif followup_rules.opens_case(category=response.category, touchpoint=touchpoint):
            answer.case = FollowUpCase(
                response=response,
                customer_id=response.customer_id,
                touchpoint=touchpoint,
                opened_at=now,
                due_at=followup_rules.case_due_at(touchpoint=touchpoint, opened_at=now),
            )
        return answer

    @property
    def wins_back(self) -> bool:
        return followup_rules.wins_back(score=self.response.score)

    def write_in_one_statement(self, connection) -> None:
        """All of it in one statement of data-modifying WITH clauses (PostgreSQL): one round trip,
        no BEGIN and COMMIT of its own, atomic as any statement (bench/http.py)."""
        response, now = self.response, self.now
        new_id = "(SELECT id FROM answer)"
        sql, params = db.insert_sql(response, connection)
        clauses = [f"answer AS ({sql} RETURNING id)", f"answered AS ({_ANSWERED})"]
        params += [now, response.invitation_id]
        if self.wins_back:
            clauses.append(f"won_back AS ({_WON_BACK.format(response_id=new_id)})")
            params += [now, response.customer_id, now]
        if self.link is not None:
            sql, link_params = db.insert_sql(self.link, connection, expressions={"response_id": new_id})
            clauses.append(f"link AS ({sql} ON CONFLICT DO NOTHING)")
            params += link_params
        if self.case is not None:
            sql, case_params = db.insert_sql(self.case, connection, expressions={"response_id": new_id})
            clauses.append(f"new_case AS ({sql} RETURNING id)")
            params += case_params
        case_id = "(SELECT id FROM new_case)" if self.case is not None else "NULL"
        with connection.cursor() as cursor:
            db.execute(cursor, connection, f"WITH {', '.join(clauses)} SELECT {new_id}, {case_id}", params)
            response.pk, case_id = cursor.fetchone()
        db.saved(response, connection)
        if self.case is not None:
            self.case.pk, self.case.response_id = case_id, response.pk
            db.saved(self.case, connection)

    def write_with_the_orm(self) -> None:
        """The readable spec of `write_in_one_statement`: the same rows through the ORM, a statement at a
        time inside the caller's transaction. SQLite runs this; a PostgreSQL test holds the two alike."""
        response, now = self.response, self.now
        response.save(force_insert=True)
        Invitation.objects.filter(pk=response.invitation_id).update(answered_at=now)
        if self.wins_back:
            FollowUpCase.objects.filter(
                customer_id=response.customer_id, won_back_at__isnull=True, opened_at__lt=now
            ).update(won_back_at=now, won_back_response=response)
        if self.link is not None:
            self.link.response = response
            ReferralLink.objects.bulk_create([self.link], ignore_conflicts=True)  # a customer's first link stays
        if self.case is not None:
            self.case.response = response
            self.case.save(force_insert=True)
