"""Shared fixtures: the nats-server plugin (when eventkit is not pip-installed) and a store."""

from __future__ import annotations

from importlib.metadata import entry_points

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
