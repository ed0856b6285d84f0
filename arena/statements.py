"""The vote path's SQL, built once per process instead of once per vote.

Django builds a query's SQL anew on every call: for the vote's battle read (five tables, three
subqueries) that took about half of a vote's CPU. Here the ORM still writes each statement (its
joins, quoting and column names), but once per database; a vote only runs it with its own
parameters, through ``connection.cursor()``, so the statement is counted, logged and timed like
any other. Results come back as plain rows with the backend's converters applied; the caller
builds what instances it needs with ``Model.from_db``.

On PostgreSQL these statements also run as server-side prepared statements, with PostgreSQL's
own placeholders (psycopg prepares a statement once its connection has run it
``prepare_threshold`` times; the setting
``DATABASE_PREPARED_STATEMENTS`` turns that off for a pooler in transaction mode): planning the
battle read and the style row's upsert cost the database backend about 0.7 ms of a vote's 2 ms.
The rest of the ORM keeps Django's client-side binding.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Field, Model, QuerySet


@dataclass(frozen=True)
class _Compiled:
    sql: str
    slots: tuple[int, ...]  # for each parameter of the statement, which argument it takes
    converters: tuple[tuple[int, tuple[Any, ...], Any], ...]


class PreparedRead:
    """A ``values_list`` query compiled once per database, then run with new filter values.

    ``build(*arguments)`` returns the QuerySet; it is called once per database with stand-in
    values, and every parameter of its SQL must be one of them (a constant in the query is
    part of the SQL). ``fields`` are the model fields the arguments are compared with, which
    prepare a value for the database as the ORM would.
    """

    def __init__(self, build: Callable[..., QuerySet[Any]], *, fields: Sequence[Field[Any, Any]]):
        self.build = build
        self.fields = tuple(fields)
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def _compile(self, connection: BaseDatabaseWrapper) -> _Compiled:
        standins = [_standin(field, n) for n, field in enumerate(self.fields)]
        queryset = self.build(*standins)
        compiler = queryset.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        prepared = [
            field.get_db_prep_value(value, connection, prepared=False)
            for field, value in zip(self.fields, standins, strict=True)
        ]
        slots = []
        for param in params:
            matches = [n for n, value in enumerate(prepared) if value == param]
            if len(matches) != 1:
                raise ValueError(f"parameter {param!r} of {sql!r} is not one of the arguments")
            slots.append(matches[0])
        expressions = [column[0] for column in compiler.select[: compiler.col_count]]
        converters = tuple(
            (position, tuple(convs), expression)
            for position, (convs, expression) in compiler.get_converters(expressions).items()
        )
        return _Compiled(sql=sql, slots=tuple(slots), converters=converters)

    def first(self, *arguments: Any, using: str = "default") -> list[Any] | None:
        """The first row for these arguments, converted as the ORM converts it; None if none."""
        connection = connections[using]
        key = (using, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection)
        prepared = [
            field.get_db_prep_value(value, connection, prepared=False)
            for field, value in zip(self.fields, arguments, strict=True)
        ]
        with execute(connection, compiled.sql, [prepared[slot] for slot in compiled.slots]) as ran:
            row = ran.fetchone()
        if row is None:
            return None
        values = list(row)
        for position, convs, expression in compiled.converters:
            value = values[position]
            for convert in convs:
                value = convert(value, expression, connection)
            values[position] = value
        return values


def _standin(field: Field[Any, Any], n: int) -> Any:
    """A distinctive value of the field's type, to find the argument among the parameters."""
    if field.get_internal_type() == "UUIDField":
        return uuid.UUID(int=0x5EED_0000 + n)
    if field.get_internal_type() == "DateTimeField":
        return datetime(1901, 2, 3, 4, 5, 6, n, tzinfo=UTC)
    return f"\x1fstand-in {n}\x1f"


def instance(model: type[Model], using: str, values: dict[str, Any]) -> Any:
    """A model instance from the given field values (by attname) as if loaded from the
    database; every other field is deferred and loads on first use."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(using, names, [values[name] for name in names])


class Statement:
    """A statement whose SQL ``build(connection)`` writes once per database (quoted names from
    the models' metadata; the values stay parameters)."""

    def __init__(self, build: Callable[[BaseDatabaseWrapper], str], *, name: str = "") -> None:
        self.build = build
        self.name = name
        self._sql: dict[tuple[str, str], str] = {}

    def sql(self, connection: BaseDatabaseWrapper) -> str:
        key = (connection.alias, connection.vendor)
        sql = self._sql.get(key)
        if sql is None:
            sql = self._sql[key] = self.build(connection)
        return sql


K = TypeVar("K", bound=Hashable)


class Variants(dict[K, Statement]):
    """One fixed statement per variant (a condition, a set of parts), each written on first use
    as ``build(connection, variant)``, then once per process and database like any Statement."""

    def __init__(self, build: Callable[[BaseDatabaseWrapper, K], str], *, name: str) -> None:
        super().__init__()
        self.build = build
        self.name = name

    def __missing__(self, variant: K) -> Statement:
        build = self.build

        def written(connection: BaseDatabaseWrapper) -> str:
            return build(connection, variant)

        made = self[variant] = Statement(written, name=self.name)
        return made


def insert(model: type[Model], columns: Sequence[str], *, select_from: str = "") -> Statement:
    """INSERT of these fields' values (in this order), returning the new row's id where the
    database can (run it with ``run_insert``); with ``select_from``, one row for each row of
    that table or CTE instead of exactly one."""

    def build(connection: BaseDatabaseWrapper) -> str:
        quote = connection.ops.quote_name
        names = [quote(str(_field(model, name).column)) for name in columns]
        values = ", ".join(["%s"] * len(names))
        source = f"VALUES ({values})"
        if select_from:
            source = f"SELECT {values} FROM {select_from}"  # noqa: S608 - a CTE's name
        sql = f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(names)}) {source}"  # noqa: S608
        if connection.features.can_return_columns_from_insert:
            sql += f" RETURNING {quote(str(_field(model, 'pk').column))}"
        return sql

    return Statement(build)


def conditional_update(model: type[Model], *, set_field: str, where: Sequence[str]) -> Statement:
    """UPDATE one field where each of ``where`` equals a value: run it with ``run`` and the new
    value, then the ``where`` values, in order."""

    def build(connection: BaseDatabaseWrapper) -> str:
        quote = connection.ops.quote_name
        conditions = " AND ".join(f"{quote(str(_field(model, n).column))} = %s" for n in where)
        return (
            f"UPDATE {quote(model._meta.db_table)} "  # noqa: S608 - model names only
            f"SET {quote(str(_field(model, set_field).column))} = %s WHERE {conditions}"
        )

    return Statement(build)


def run_insert(
    statement: Statement, model: type[Model], columns: Sequence[str], values: Sequence[Any]
) -> Any:
    """Run an ``insert`` statement with each value prepared as its field saves it; the new id."""
    connection = connections["default"]
    params = save_params(model, columns, values, connection)
    with execute(connection, statement.sql(connection), params) as ran:
        if connection.features.can_return_columns_from_insert:
            row = ran.fetchone()
            assert row is not None
            return row[0]
        return ran.lastrowid


def save_params(
    model: type[Model],
    columns: Sequence[str],
    values: Sequence[Any],
    connection: BaseDatabaseWrapper,
) -> list[Any]:
    """Each value prepared as its field saves it."""
    return [
        _field(model, name).get_db_prep_save(value, connection)
        for name, value in zip(columns, values, strict=True)
    ]


def run(statement: Statement, params: Sequence[Any]) -> int:
    """Run a statement; the number of rows it changed."""
    connection = connections["default"]
    with execute(connection, statement.sql(connection), params) as ran:
        return int(ran.rowcount)


@contextmanager
def execute(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]
) -> Iterator[CursorWrapper]:
    """Run a fixed statement (``%s`` parameters); yields the cursor for its rows and row count.

    On PostgreSQL with prepared statements on, the cursor binds the parameters on the server
    with PostgreSQL's own ``$n`` placeholders (psycopg's RawCursor), so psycopg can prepare the
    statement and need not parse the SQL for placeholders on every run (it caches that work only
    for statements under 4 kB, and the vote's is longer). Elsewhere the usual cursor. Either
    way wrapped as ``connection.cursor()`` wraps it: counted, logged, errors translated."""
    if connection.vendor != "postgresql":
        with connection.cursor() as running:
            running.execute(sql, params)
            yield running
        return
    connection.ensure_connection()
    raw = connection.connection
    if raw is None or raw.prepare_threshold is None:
        with connection.cursor() as running:
            running.execute(sql, params)
            yield running
        return
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        bound: Any = psycopg.RawCursor(raw)
    running = (
        connection.make_debug_cursor(bound)
        if connection.queries_logged
        else connection.make_cursor(bound)
    )
    with running:
        running.execute(_numbered(sql), params)
        yield running


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """The statement with PostgreSQL's placeholders: each ``%s`` in turn becomes ``$1``,
    ``$2``, ...; a fixed statement has no other ``%``."""
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError(f"a fixed statement has a % that is not a parameter: {sql!r}")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.pk if name == "pk" else model._meta.get_field(name)
    assert isinstance(field, Field)
    return field
