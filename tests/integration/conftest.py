"""Fixtures of the integration tests: read-model databases on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from faults import LostAcks  # type: ignore[import-not-found]
from sqlalchemy import Engine

from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import ServerProcess, start_server_process


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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A nats-server of its own for one test, which the test may stop (to scan its store)."""
    srv = start_server_process(tmp_path / "store")
    try:
        yield srv
    finally:
        srv.stop()
