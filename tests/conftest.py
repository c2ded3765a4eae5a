"""Shared fixtures: the nats-server plugin (when eventkit is not pip-installed) and a store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from importlib.metadata import entry_points

import pytest

from eventkit.store.jetstream import JetStreamEventStore

if not any(ep.value.startswith("eventkit.testing") for ep in entry_points(group="pytest11")):
    # eventkit is not installed, so its pytest11 entry point is not loaded: use the plugin here
    from eventkit.testing.plugin import nats_server, nats_url, stream_name  # noqa: F401


@pytest.fixture
async def store(nats_url: str, stream_name: str) -> AsyncIterator[JetStreamEventStore]:
    """A JetStreamEventStore on a fresh stream of the session server (deleted afterwards)."""
    store = await JetStreamEventStore.connect(nats_url, stream=stream_name)
    try:
        yield store
    finally:
        for name in (stream_name, f"KV_{stream_name}_snapshots"):
            with contextlib.suppress(Exception):
                await store.js.delete_stream(name)
        await store.close()
