"""Fast bulk insertion of plain rows for demo and benchmark data.

Django's bulk_create prepares every value of every model instance, which
costs more than the database's own work at a million rows. Here rows are
dicts of column values: on PostgreSQL they go in with COPY, elsewhere with
executemany. Primary keys are allocated up front so rows can refer to each
other. Columns a row leaves out get the field's (non-callable) default.
"""

import io
import json

from django.db import connection


class BulkRows:
    def __init__(self):
        self.vendor = connection.vendor

    def allocate_ids(self, model, count: int) -> list[int]:
        table = model._meta.db_table
        with connection.cursor() as cursor:
            if self.vendor == "postgresql":
                cursor.execute(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
                )
                return [row[0] for row in cursor.fetchall()]
            # SQLite and others: the caller's transaction holds the write lock.
            cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')
            start = cursor.fetchone()[0] + 1
            return list(range(start, start + count))

    def insert(self, model, rows: list[dict]) -> None:
        if not rows:
            return
        fields = model._meta.concrete_fields
        defaults = {}
        for field in fields:
            if field.attname in rows[0]:
                continue
            if field.has_default() and field.default in (dict, list):
                defaults[field.attname] = json.dumps(field.default())
                continue
            if field.has_default() and callable(field.default):
                # A callable default (a token, "now") must differ per row: the caller gives it.
                raise ValueError(f"{model.__name__}.{field.attname} needs a value.")
            defaults[field.attname] = field.get_default()
        names = [field.attname for field in fields]
        columns = [field.column for field in fields]
        table = model._meta.db_table
        if self.vendor == "postgresql":
            self._copy(table, columns, ([row.get(n, defaults.get(n)) for n in names] for row in rows))
        else:
            ops = connection.ops
            adapt = []
            for field in fields:
                kind = field.get_internal_type()
                if kind == "DateTimeField":
                    adapt.append(ops.adapt_datetimefield_value)
                elif kind == "DateField":
                    adapt.append(ops.adapt_datefield_value)
                else:
                    adapt.append(lambda value: value)
            values = [
                [convert(row.get(n, defaults.get(n))) for n, convert in zip(names, adapt)] for row in rows
            ]
            placeholders = ", ".join(["%s"] * len(columns))
            quoted = ", ".join(f'"{c}"' for c in columns)
            with connection.cursor() as cursor:
                cursor.executemany(f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders})', values)

    @staticmethod
    def _text(value) -> str:
        if value is None:
            return "\\N"
        if value is True or value is False:
            return "t" if value else "f"
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return (
            str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        )

    def _copy(self, table: str, columns: list[str], rows) -> None:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(self._text(value) for value in row))
            buffer.write("\n")
        buffer.seek(0)
        quoted = ", ".join(f'"{c}"' for c in columns)
        with connection.cursor() as cursor:
            cursor.cursor.copy_expert(f'COPY "{table}" ({quoted}) FROM STDIN', buffer)
