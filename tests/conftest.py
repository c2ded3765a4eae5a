"""Shared fixtures: the nats-server plugin (when eventkit is not pip-installed), a store, and
read-model databases on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from eventkit.store.jetstream import JetStreamEventStore

if not any(ep.value.startswith("eventkit.testing") for ep in entry_points(group="pytest11")):
    # eventkit is not installed, so its pytest11 entry point is not loaded: use the plugin here
    from eventkit.testing.plugin import (  # noqa: F401
        event_store,
        nats_server,
        nats_url,
        stream_name,
    )


@pytest.fixture
def store(event_store: JetStreamEventStore) -> JetStreamEventStore:
    """The plugin's ``event_store``: a JetStreamEventStore on a fresh stream, deleted afterwards."""
    return event_store


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
