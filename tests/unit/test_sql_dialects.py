"""Where SQLite and PostgreSQL differ is one Dialect per database, found from whatever the
code holds (engine, connection, session, SQLAlchemy's dialect); a database eventkit does not
know gets the portable SQL."""

from __future__ import annotations

from types import SimpleNamespace

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from eventkit.projection.dialect import GENERIC, POSTGRESQL, SQLITE, dialect_of
from eventkit.projection.rowsql import upsert_statement


def test_the_dialect_is_found_from_an_engine_a_connection_a_session_or_sqlalchemys() -> None:
    engine = create_engine("sqlite://")
    assert dialect_of(engine) is SQLITE
    assert dialect_of(engine.dialect) is SQLITE
    with engine.connect() as conn:
        assert dialect_of(conn) is SQLITE
    with Session(engine) as db:
        assert dialect_of(db) is SQLITE
    assert dialect_of(postgresql.dialect()) is POSTGRESQL
    assert dialect_of(SimpleNamespace(name="oracle")) is GENERIC


def test_each_database_says_what_it_does_differently() -> None:
    assert POSTGRESQL.row_locks and not SQLITE.row_locks
    assert SQLITE.alters_by_copy and SQLITE.naive_datetimes and SQLITE.erases_by_pragma
    assert POSTGRESQL.key_arrays and POSTGRESQL.bounded_waits
    assert SQLITE.upsert_insert() is sqlite.insert
    assert POSTGRESQL.upsert_insert() is postgresql.insert
    assert GENERIC.upsert_insert() is None


def test_an_unknown_database_has_no_upsert_and_takes_no_row_locks() -> None:
    table = Table("t", MetaData(), Column("k", String, primary_key=True), Column("n", Integer))
    assert upsert_statement(GENERIC, table, ("k",)) is None
    assert "ON CONFLICT" in str(
        upsert_statement(SQLITE, table, ("k",)).compile(dialect=sqlite.dialect())
    )
    query = table.select()
    assert GENERIC.lock(query) is query
    assert "FOR UPDATE" in str(POSTGRESQL.lock(query).compile(dialect=postgresql.dialect()))
