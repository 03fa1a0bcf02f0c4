"""The survey page's lookup, hand-written: the invitation with its customer, touchpoint and answer in one
statement (with the opened mark riding along on PostgreSQL), made back into the ORM's own instances.

Every customer's survey page starts here; through select_related() the ORM spent more on compiling the
four-table join than PostgreSQL on running it (core/db.py prepares it once per connection).
"""



from surveys.core import db, validation
from surveys.models import (
    Customer,
    Invitation,
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
