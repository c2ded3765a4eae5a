"""Connecting to a nats-server that runs without JetStream fails at once, saying so."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator

import nats
import pytest

from eventkit.errors import StoreUnavailableError
from eventkit.server.binary import find_server_binary
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = pytest.mark.nats


@pytest.fixture
def plain_server() -> Iterator[str]:
    """A nats-server without JetStream on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(find_server_binary()), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


async def test_a_server_without_jetstream_is_named_at_once(plain_server: str) -> None:
    deadline = time.monotonic() + 10
    while True:  # the server is up once it takes a connection
        try:
            nc = await nats.connect(plain_server, max_reconnect_attempts=0)
            await nc.close()
            break
        except Exception:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as caught:
        await JetStreamEventStore.connect(plain_server, stream="plain")
    assert time.monotonic() - started < 2.0  # no waiting for an election that is not there
    assert "JetStream is not enabled" in str(caught.value) and "-js" in str(caught.value)
