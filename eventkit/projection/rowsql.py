"""The statements a row projector runs per batch, built once per table and dialect.

- Reading a batch's rows: ``SELECT * FROM t WHERE pk IN (:keys)`` (an expanding parameter); on
  PostgreSQL ``WHERE pk = ANY(:keys)``, one array parameter (no bind rendered per key).
- Writing them: ``INSERT ... ON CONFLICT (pk) DO UPDATE`` (SQLite, PostgreSQL). SQLite runs it
  as the driver's ``executemany`` over the batch's rows, each row's values converted by the
  columns' bind processors (what SQLAlchemy would do, without its per-row parameter handling).
  PostgreSQL runs one statement for the whole batch, ``INSERT ... SELECT unnest(:a1),
  unnest(:a2), ...`` with one array per column, when every column has a plain type (text,
  numbers, booleans, times, UUIDs); otherwise the rows go as ``executemany``.

The statements live in ``Table.info`` (as long as the table), keyed by the table itself, so a
copy made by ``Table.to_metadata`` (blue/green) builds its own.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    Numeric,
    String,
    Table,
    Time,
    Uuid,
    any_,
    bindparam,
    func,
    select,
    tuple_,
)
from sqlalchemy.types import TypeDecorator

from eventkit.projection.dialect import Dialect, dialect_named

_STATEMENTS = "eventkit.row_upsert"
_COMPILED = "eventkit.row_upsert_compiled"
_ARRAYS = "eventkit.row_upsert_arrays"
_READ = "eventkit.row_read"
"""Keys in ``Table.info`` of the statements built once per table."""

PLAIN_TYPES = (String, Integer, Numeric, Float, Boolean, DateTime, Date, Time, Uuid)
"""Column types PostgreSQL takes as arrays for the one-statement write."""


def _cache(table: Table, key: str) -> dict[Any, Any]:
    owner, cache = table.info.get(key, (None, {}))
    if owner is not table:  # not built yet, or inherited by a copy (to_metadata copies info)
        cache = {}
        table.info[key] = (table, cache)
    return cast(dict[Any, Any], cache)


def read_statement(dialect: Dialect, table: Table, pk: tuple[str, ...]) -> Any:
    """``SELECT * FROM table WHERE pk IN (:keys)`` (``= ANY(:keys)`` where the dialect reads
    by key arrays)."""
    cache = _cache(table, _READ)
    arrays = dialect.key_arrays and len(pk) == 1 and _plain(table.c[pk[0]].type)
    stmt = cache.get(arrays)
    if stmt is None:
        cols = [table.c[c] for c in pk]
        if arrays:
            from sqlalchemy.dialects.postgresql import ARRAY

            keys = bindparam("keys", type_=ARRAY(cols[0].type))
            stmt = select(table).where(cols[0] == any_(keys))
        else:
            target = cols[0] if len(cols) == 1 else tuple_(*cols)
            stmt = select(table).where(target.in_(bindparam("keys", expanding=True)))
        cache[arrays] = stmt
    return stmt


def upsert_statement(dialect: Dialect, table: Table, pk: tuple[str, ...]) -> Any:
    """``INSERT ... ON CONFLICT (pk) DO UPDATE SET <the other columns>``; None for a dialect
    without it (the caller replaces the rows instead)."""
    cache = _cache(table, _STATEMENTS)
    if dialect.name in cache:
        return cache[dialect.name]
    insert = dialect.upsert_insert()
    cache[dialect.name] = None if insert is None else _on_conflict(insert(table), table, pk)
    return cache[dialect.name]


def _on_conflict(base: Any, table: Table, pk: tuple[str, ...]) -> Any:
    others = [c.name for c in table.columns if c.name not in pk]
    if others:
        return base.on_conflict_do_update(
            index_elements=list(pk), set_={c: base.excluded[c] for c in others}
        )
    return base.on_conflict_do_nothing(index_elements=list(pk))


def _plain(type_: Any) -> bool:
    return isinstance(type_, PLAIN_TYPES) and not isinstance(type_, TypeDecorator)


Compiled = tuple[str, list[tuple[str, str, Any]], bool]


def compiled_upsert(dialect: Any, table: Table, pk: tuple[str, ...]) -> Compiled | None:
    """The upsert as the driver's SQL; its parameters in order, each as (bind name, row field,
    the column type's bind processor: the conversions SQLAlchemy would make); and whether the
    driver's parameters are positional. A batch's rows then go to the driver's ``executemany``
    through ``exec_driver_sql``: the connection's transaction, events and error translation,
    without SQLAlchemy's per-row parameter handling (which took more of a batch than SQLite
    did). None when the statement is not one this applies to."""
    cache = _cache(table, _COMPILED)
    key = (dialect.name, dialect.paramstyle)
    if key in cache:
        return cast("Compiled | None", cache[key])
    stmt = upsert_statement(dialect_named(dialect.name), table, pk)
    if stmt is None:
        cache[key] = None
        return None
    compiled = stmt.compile(dialect=dialect)
    positional = compiled.positiontup is not None
    names = list(compiled.positiontup if positional else compiled.binds)
    columns = {c.key: c for c in table.columns}
    if set(names) != set(columns) or len(names) != len(columns):
        cache[key] = None  # unexpected binds: leave the statement to SQLAlchemy
        return None
    binds = [
        (n, columns[n].name, columns[n].type.dialect_impl(dialect).bind_processor(dialect))
        for n in names
    ]
    cache[key] = (str(compiled), binds, positional)
    return cast("Compiled | None", cache[key])


def array_upsert(table: Table, pk: tuple[str, ...]) -> Any:
    """PostgreSQL: the upsert of a whole batch in one statement, from one array per column
    (``INSERT ... SELECT unnest(:c_a), unnest(:c_b), ...``; parameters named ``c_<column
    key>``); None when a column's type is not a plain one."""
    cache = _cache(table, _ARRAYS)
    if "stmt" in cache:
        return cache["stmt"]
    if not all(_plain(c.type) for c in table.columns):
        cache["stmt"] = None
        return None
    from sqlalchemy.dialects.postgresql import ARRAY
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    cols = list(table.columns)
    source = select(
        *[func.unnest(bindparam(f"c_{c.key}", type_=ARRAY(c.type))).label(c.name) for c in cols]
    )
    base = pg_insert(table).from_select([c.name for c in cols], source)
    cache["stmt"] = _on_conflict(base, table, pk)
    return cache["stmt"]


__all__ = ["array_upsert", "compiled_upsert", "read_statement", "upsert_statement"]
