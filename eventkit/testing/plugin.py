"""pytest plugin: a throwaway JetStream nats-server for the test session.

Registered as the ``pytest11`` entry point ``eventkit``, so the fixtures are available as soon
as eventkit is installed::

    async def test_roundtrip(nats_url: str, stream_name: str) -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().add_stream(name=stream_name, subjects=[f"{stream_name}.>"])

The fixtures are plain sync fixtures, so they work with any event loop scope.
"""

from __future__ import annotations

import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from eventkit.server import ServerProcess, start_server_process

if TYPE_CHECKING:
    from eventkit.store.jetstream import JetStreamEventStore


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A JetStream nats-server on a free 127.0.0.1 port with a temporary store, for the session.

    Example::

        def test_restart(nats_server: ServerProcess) -> None:
            nats_server.restart()          # same port and store directory
    """
    server = start_server_process(tmp_path_factory.mktemp("nats-server") / "store")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_url(nats_server: ServerProcess) -> str:
    """The session server's URL, ``nats://127.0.0.1:<port>``.

    Example::

        async def test_connect(nats_url: str) -> None:
            nc = await nats.connect(nats_url)
    """
    return nats_server.url


@pytest.fixture
def stream_name() -> str:
    """A unique, valid stream name per test (``t_<hex>``), so tests never share a stream.

    Example::

        def test_name(stream_name: str) -> None:
            assert stream_name.startswith("t_")
    """
    return f"t_{uuid.uuid4().hex[:16]}"


if importlib.util.find_spec("pytest_asyncio") is not None:  # the async fixture needs it
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def event_store(nats_url: str, stream_name: str) -> AsyncIterator[JetStreamEventStore]:
        """A JetStreamEventStore on a fresh stream of the session server, deleted afterwards.

        Example::

            async def test_save(event_store: JetStreamEventStore) -> None:
                await Repository(event_store, Account).save(acct)
        """
        from eventkit.store.jetstream import JetStreamEventStore

        store = await JetStreamEventStore.connect(nats_url, stream=stream_name)
        try:
            yield store
        finally:
            for name in (stream_name, f"KV_{stream_name}_snapshots", f"KV_{stream_name}_keys"):
                with contextlib.suppress(Exception):
                    await store.js.delete_stream(name)
            await store.close()
