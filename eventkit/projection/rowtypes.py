"""What a row projector's values are: the key's type, and which columns read back exactly.

- :func:`key_types`: the Python type of a one-column key and how the default key (the entity
  id, a string) converts to it; a key column the entity id cannot fill is a ``ConfigError``.
- :func:`kept_as` / :func:`keeps`: the exact types a column gives back for what was written on
  a dialect (a row is cached between batches only then, :mod:`eventkit.projection.rowcache`).
- :func:`immutable`: whether a column's values cannot change in place (JSON and arrays can).
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    REAL,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.types import TypeEngine

from eventkit.errors import ConfigError
from eventkit.projection.dialect import GENERIC, Dialect
from eventkit.projection.rowsql import PLAIN_TYPES

Row = dict[str, Any]

ZERO = timedelta(0)
_IMMUTABLE = (*PLAIN_TYPES, Interval, LargeBinary)


def kept_as(t: TypeEngine[Any], dialect: Dialect = GENERIC) -> tuple[tuple[type, ...], bool | None]:
    """The exact Python types a column of type ``t`` reads back on ``dialect`` as what was
    written, and whether its datetimes are aware (``None``: not datetimes); no types when the
    column converts what it is given (decimals are rounded to the scale, enums, JSON, custom
    types, PostgreSQL's single-precision ``REAL``)."""
    if isinstance(t, TypeDecorator | Enum):  # PickleType is a TypeDecorator
        return (), None
    if isinstance(t, Boolean):
        return (bool,), None
    if isinstance(t, Integer):
        return (int,), None
    if isinstance(t, String):
        return (str,), None
    if isinstance(t, Float) and not t.asdecimal and t.precision is None:
        if isinstance(t, REAL) and not dialect.exact_real:  # float4: a double reads back rounded
            return (), None
        return (float,), None
    if isinstance(t, DateTime):
        return (datetime,), bool(t.timezone)
    if isinstance(t, Date):
        return (date,), None
    return (), None


def immutable(t: TypeEngine[Any]) -> bool:
    """Whether a column's values cannot be changed in place (JSON and arrays can)."""
    return isinstance(t, _IMMUTABLE) and not isinstance(t, TypeDecorator)


def keeps(row: Row, kept: Any) -> bool:
    """Whether ``row`` reads back from SQL exactly as it is (then it may be cached)."""
    for name, types, aware in kept or ():
        v = row[name]
        if v is None:
            continue
        if type(v) not in types:
            return False
        if aware is not None and (v.tzinfo is None) == aware:
            return False
        if aware and v.utcoffset() != ZERO:
            return False
    return True


def key_types(
    cls: type, table: Table, pk: tuple[str, ...], default_key: bool
) -> tuple[type | None, type | None]:
    """The Python type of a one-column key (None when not checked) and how the default key, a
    string, becomes one (None: no conversion). A key column the default key cannot fill is a
    ``ConfigError`` naming the fix."""
    if len(pk) != 1:
        return None, None
    try:
        python = table.c[pk[0]].type.python_type
    except NotImplementedError:
        return None, None
    if python not in (int, str, uuid.UUID):
        if default_key:
            raise ConfigError(
                f"{cls.__qualname__}.table {table.name!r}: key column {pk[0]!r} holds "
                f"{python.__name__} values, the default key is the entity id (a string); define "
                f"key(rec) returning a {python.__name__}"
            )
        return None, None
    if python is str:
        return str, None
    return python, python


__all__ = ["ZERO", "immutable", "keeps", "kept_as", "key_types"]
