"""Hand-written SQL for the few statements every customer runs (the survey page, the answer,
each email sent), prepared once per database connection on PostgreSQL.

There the ORM costs more than the statement itself: compiling the survey page's
four-table join took 8× running it, an INSERT or UPDATE as long as running it,
and PostgreSQL then planned each statement again (0.45 ms for the join, five
times executing it). Everything else in the project goes through the ORM.

Prepared statements belong to the database session and outlive a rollback.
Behind a transaction-pooling proxy (PgBouncer) they would not; connect
directly, as the README's deployment does.

PostgreSQL keeps one plan per prepared statement, made for the tables as they
were then: planned on a new install's empty tables, the survey lookup scanned
the answers table row by row while a load filled it (bench/http.py). A
statement is prepared again once it is REPLAN_AFTER_SECONDS old, so a plan
never outlives the tables it was made for by long, whatever the connection's age.
"""

import hashlib
import re
import time
import weakref
from datetime import datetime
from functools import lru_cache

from django.db import connections

# Database connection (the driver's) -> {name of a statement prepared on it: when, time.monotonic()}.
_prepared_on: "weakref.WeakKeyDictionary[object, dict[str, float]]" = weakref.WeakKeyDictionary()
REPLAN_AFTER_SECONDS = 300
_PLACEHOLDER = re.compile(r"%s")


def connection_for(model):
    return connections[model.objects.db]


@lru_cache(maxsize=512)
def _name(sql: str) -> str:
    return "lp_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()


def execute(cursor, connection, sql: str, params: list) -> None:
    """Run `sql` (with %s placeholders) on `cursor`; datetimes are adapted as the ORM adapts them."""
    params = [connection.ops.adapt_datetimefield_value(p) if isinstance(p, datetime) else p for p in params]
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    name = _name(sql)
    prepared = _prepared_on.setdefault(connection.connection, {})
    now = time.monotonic()
    if now - prepared.get(name, -REPLAN_AFTER_SECONDS) >= REPLAN_AFTER_SECONDS:
        if name in prepared:
            cursor.execute(f"DEALLOCATE {name}")
        numbers = iter(range(1, len(params) + 1))
        cursor.execute(f"PREPARE {name} AS " + _PLACEHOLDER.sub(lambda _match: f"${next(numbers)}", sql))
        prepared[name] = now
    if params:
        cursor.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(params))})", params)
    else:
        cursor.execute(f"EXECUTE {name}")


def run(model, sql: str, params: list) -> int:
    """One statement on `model`'s database; returns the number of rows it changed."""
    connection = connection_for(model)
    with connection.cursor() as cursor:
        execute(cursor, connection, sql, params)
        return cursor.rowcount


_inserts: dict[tuple, tuple] = {}


def _insert_parts(model, connection, expressions: dict[str, str]) -> tuple[list, str]:
    """The fields an INSERT takes values for, and its SQL; worked out once per model and expressions."""
    key = (model, connection.vendor, tuple(sorted(expressions.items())))
    if key not in _inserts:
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        values = ", ".join(expressions.get(field.attname, "%s") for field in fields)
        _inserts[key] = (
            [field for field in fields if field.attname not in expressions],
            f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({values})",
        )
    return _inserts[key]


def insert_sql(instance, connection, *, expressions: dict[str, str] | None = None) -> tuple[str, list]:
    """`INSERT INTO <table> (...) VALUES (...)` for a new instance, as save() would write it, and its params.

    `expressions` gives some columns (by attname) an SQL expression instead of
    the instance's value: the id of a row made earlier in the same statement.
    """
    fields, sql = _insert_parts(type(instance), connection, expressions or {})
    return sql, [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]


def saved(instance, connection) -> None:
    """Mark an instance written by hand-written SQL (its id set) as the ORM marks a saved one."""
    instance._state.adding = False
    instance._state.db = connection.alias
