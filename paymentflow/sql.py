"""Hand-written statements on the hot path, with the model's own columns and conversions.

The wallet purchase is a handful of short statements, and Django's query compiler costs
more Python than PostgreSQL spends running them (about 0.3 ms per statement on the 2-core
machine: docs/PERFORMANCE.md). The services on that path (catalog's stock take, the
wallets' lock and posting, the order's insert) therefore write their SQL out, and use
these helpers so that the SQL still follows the models: column lists come from
`_meta.concrete_fields` (a field added to a model is written and read without touching
the SQL), values go through each field's `get_db_prep_save` and come back through the
database's converters, exactly as the ORM would do it, on PostgreSQL and on SQLite.

    row = cursor.fetchone()  # SELECT {columns(Product)} ... / RETURNING {columns(Product)}
    product = load(Product, row)
    execute(insert(order))  # one INSERT of every column; `order` counts as saved
    execute_together([insert(journal), insert(*legs), (update_sql, update_params)])

Nothing here is a query builder: WHERE clauses, locks and conditions stay written out in
the service that owns them, where a reviewer reads them.
"""

import functools
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

Statement = tuple[str, list]


@functools.cache
def columns(model: type[Model]) -> str:
    """Every concrete column of `model`, quoted, in field order: what `load` expects back."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(quote(field.column) for field in model._meta.concrete_fields)


@functools.cache
def _converters(model: type[Model], alias: str) -> tuple:
    """(position, converters, column) for each column whose raw value needs converting on
    this database (on PostgreSQL, almost none: psycopg already returns UUIDs and Decimals)."""
    connection = connections[alias]
    found = []
    for position, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
        if converters:
            found.append((position, tuple(converters), column))
    return tuple(found)


def load(model: type[Model], row: Sequence, *, using: str = DEFAULT_DB_ALIAS) -> Model:
    """The instance for a row of `columns(model)`, as a queryset would have built it."""
    connection = connections[using]
    values = list(row)
    for position, converters, column in _converters(model, using):
        for convert in converters:
            values[position] = convert(values[position], column, connection)
    return model.from_db(using, None, values)


@functools.cache
def _insert_sql(model: type[Model], rows: int) -> str:
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    placeholders = "(" + ", ".join(["%s"] * len(model._meta.concrete_fields)) + ")"
    values = ", ".join([placeholders] * rows)
    return f"INSERT INTO {quote(model._meta.db_table)} ({columns(model)}) VALUES {values}"  # noqa: S608 - names from the model


def insert(*instances: Model, using: str = DEFAULT_DB_ALIAS) -> Statement:
    """One INSERT of these instances (one model), every column. A value set on an instance
    is written as it is; a field left None gets what `save()` would give it (the stamp of
    `auto_now` / `auto_now_add`). The instances count as saved from here: run the
    statement in the transaction that needs them."""
    connection = connections[using]
    model = type(instances[0])
    params = []
    for instance in instances:
        if type(instance) is not model:
            raise TypeError("insert() takes instances of one model")
        for field in model._meta.concrete_fields:
            value = getattr(instance, field.attname)
            if value is None:
                value = field.pre_save(instance, True)
            params.append(field.get_db_prep_save(value, connection))
        instance._state.adding, instance._state.db = False, using
    return _insert_sql(model, len(instances)), params


def execute(statement: Statement, *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Run one statement; its row count."""
    with connections[using].cursor() as cursor:
        cursor.execute(*statement)
        return cursor.rowcount


def execute_together(statements: Sequence[Statement], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Run data-modifying statements that do not read each other's writes, and return the
    row count of the last one. On PostgreSQL they are sent as ONE statement, every one but
    the last a data-modifying CTE (`WITH s1 AS (...), s2 AS (...) <last>`): one round trip,
    and all of them see the same snapshot, which is why none may depend on another's
    rows (foreign keys are fine: Django's are checked at commit). Elsewhere (SQLite) one
    by one, in order."""
    if connections[using].vendor != "postgresql":
        return [execute(statement, using=using) for statement in statements][-1]
    *first, (last_sql, last_params) = statements
    if not first:
        return execute((last_sql, last_params), using=using)
    ctes = ", ".join(f"s{n} AS ({sql})" for n, (sql, _) in enumerate(first, start=1))
    params = [value for _, statement_params in first for value in statement_params]
    return execute((f"WITH {ctes} {last_sql}", [*params, *last_params]), using=using)
