"""Hand-written SQL for the few statements every customer runs (the survey page, the answer,
each email sent), prepared once per database connection on PostgreSQL.

There the ORM costs more than the statement itself: compiling the survey page's
four-table join took 8× running it, an INSERT or UPDATE as long as running it,
and PostgreSQL then planned each statement again (0.45 ms for the join, five
times executing it). Everything else in the project goes through the ORM.

Prepared statements belong to the database session and outlive a rollback.
Behind a transaction-pooling proxy (PgBouncer) they would not; connect
directly, as the README's deployment does.
"""

import hashlib
import re
import weakref
from datetime import datetime

from django.db import connections

# Database connection (the driver's) -> names of the statements prepared on it.
_prepared_on: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()
_PLACEHOLDER = re.compile(r"%s")


def connection_for(model):
    return connections[model.objects.db]


def execute(cursor, connection, sql: str, params: list) -> None:
    """Run `sql` (with %s placeholders) on `cursor`; datetimes are adapted as the ORM adapts them."""
    params = [connection.ops.adapt_datetimefield_value(p) if isinstance(p, datetime) else p for p in params]
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    name = "lp_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    prepared = _prepared_on.setdefault(connection.connection, set())
    if name not in prepared:
        numbers = iter(range(1, len(params) + 1))
        cursor.execute(f"PREPARE {name} AS " + _PLACEHOLDER.sub(lambda _match: f"${next(numbers)}", sql))
        prepared.add(name)
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


def insert(instance) -> None:
    """INSERT a new model instance as save() would (field defaults and DB preparation included), then set its id."""
    model = type(instance)
    connection = connection_for(model)
    key = (model, connection.vendor)
    if key not in _inserts:
        fields = [field for field in model._meta.concrete_fields if not field.primary_key]
        columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
        placeholders = ", ".join(["%s"] * len(fields))
        pk_column = connection.ops.quote_name(model._meta.pk.column)
        _inserts[key] = (
            fields, f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({placeholders}) RETURNING {pk_column}"
        )
    fields, sql = _inserts[key]
    values = [field.get_db_prep_save(field.pre_save(instance, True), connection) for field in fields]
    with connection.cursor() as cursor:
        execute(cursor, connection, sql, values)
        instance.pk = cursor.fetchone()[0]
    instance._state.adding = False
    instance._state.db = connection.alias
