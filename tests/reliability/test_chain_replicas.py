"""On an R3 cluster, one node's copy of the stream is corrupted on disk (node stopped, a bit of
a stored body flipped, node restarted): ``eventkit verify --replicas`` reads each node's own
copy and names that node, and only that node."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventkit import Event
from eventkit.cli.main import app as cli
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster, ClusterNode

from .conftest import new_stream

pytestmark = [pytest.mark.nats, pytest.mark.cluster, pytest.mark.slow]


class RepNoted(Event):
    text: str


def flip_bit(node: ClusterNode, stream: str, inside: bytes) -> None:
    (blk,) = node.store_dir.glob(f"**/streams/{stream}/msgs/1.blk")
    data = bytearray(blk.read_bytes())
    at = data.find(inside)
    assert at > 0, f"{inside!r} is not in {blk}"
    data[at + 3] ^= 0x04
    blk.write_bytes(bytes(data))


async def test_verify_replicas_names_the_node_whose_copy_is_corrupted(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = new_stream("chainr3")
    module = f"r3app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent(f"""
        from eventkit import App
        app = App(stream="{stream}")
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    store = await JetStreamEventStore.connect(cluster.urls[0], stream=stream, replicas=3)
    subject = f"{stream}.ledger.l-1"
    try:
        for i in range(6):
            await store.append(subject, [RepNoted(text=f"copy-{i}-abcdefgh")])
        await cluster.wait_stream_current(store.js, stream)
        leader = await cluster.stream_leader(store.js, stream)
    finally:
        await store.close()
    victim = next(n for n in cluster.nodes if n.name != leader)  # a follower: it must not lead
    victim.stop()
    await asyncio.to_thread(flip_bit, victim, stream, b"copy-3-abcdefgh")
    victim.restart()
    store = await JetStreamEventStore.connect(cluster.urls[0], stream=stream, replicas=3)
    try:
        await cluster.wait_stream_current(store.js, stream)
    finally:
        await store.close()

    dirs = [f"--store-dir={n.name}={n.store_dir}" for n in cluster.nodes]
    argv = ["--app", f"{module}:app", "--nats-url", cluster.urls[0], "verify", subject]
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, [*argv, "--replicas", *dirs, "--json"]
    )
    out = json.loads(result.stdout)
    assert result.exit_code == 5, result.output
    nodes = {x.get("node") for x in out["problems"] if x.get("node")}
    assert nodes == {victim.name}, out["problems"]
    assert any(x["sequence"] == 4 for x in out["problems"]), out["problems"]
    assert set(out["nodes"]) == {n.name for n in cluster.nodes}
    assert all(seen["last_sequence"] == 6 for seen in out["nodes"].values())

    # the two healthy copies alone verify
    healthy = [d for d in dirs if not d.startswith(f"--store-dir={victim.name}=")]
    result = await asyncio.to_thread(CliRunner().invoke, cli, [*argv, *healthy, "--json"])
    out = json.loads(result.stdout)
    replica_problems = [x for x in out["problems"] if x.get("node")]
    assert replica_problems == [] and out["unchecked_nodes"] == [victim.name], out
