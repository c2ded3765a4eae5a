"""Fixtures of the integration tests: read-model databases on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from faults import LostAcks  # type: ignore[import-not-found]
from sqlalchemy import Engine

from eventkit.projection.sql import make_engine, upgrade

PG_BASE = os.environ.get(
    "EVENTKIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'read.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test; fails (never skips) when PostgreSQL is down."""
    import psycopg

    schema = f"ek_{uuid.uuid4().hex[:10]}"
    dsn = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL is unreachable at {PG_BASE}: {e}")
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The read-model database, once on a SQLite file and once on a PostgreSQL schema."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` with eventkit's tables migrated."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
async def lossy(nats_url: str, stream_name: str) -> AsyncIterator[LostAcks]:
    """A store on its own stream whose next ``lose`` acks are lost after the server stored."""
    store = await LostAcks.connect(nats_url, stream=stream_name)
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await store.js.delete_stream(stream_name)
        await store.close()
