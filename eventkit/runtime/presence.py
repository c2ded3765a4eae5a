"""Which workers run each reactor: heartbeats in a key-value bucket whose entries expire.

Bucket ``eventkit_<stream>_workers`` (history 1, entries expire after :data:`EXPIRES` seconds),
key ``<reactor>.<worker>``, value JSON ``{"worker", "host", "pid", "started", "at", "handled",
"in_flight"}``. A running worker writes its entry every :data:`HEARTBEAT` seconds and deletes it
when it stops; the entry of a worker that died expires. ``eventkit status`` counts the entries
written within :data:`EXPIRES` seconds, so a stale one is never counted, expired or not.

::

    presence = Presence(store, "large-withdrawals")
    keeper = asyncio.create_task(presence.keep(lambda: {"handled": stats.handled}))
    ...
    keeper.cancel(); await presence.leave()
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from eventkit.errors import StoreUnavailableError
from eventkit.store.nats.buckets import open_bucket

log = logging.getLogger("eventkit.runtime")

HEARTBEAT: Final = 5.0
"""Seconds between a worker's heartbeats."""
EXPIRES: Final = 3 * HEARTBEAT
"""A worker not heard of for this long is not counted (and its entry expires)."""

_NOT_A_KEY = re.compile(r"[^-\w]")


def bucket_name(stream: str) -> str:
    return f"eventkit_{stream}_workers"


async def _bucket(store: Any, *, create: bool) -> KeyValue | None:
    config = KeyValueConfig(
        bucket=bucket_name(store.stream),
        history=1,
        ttl=EXPIRES,
        storage=StorageType.MEMORY,  # presence is not worth a disk write
        replicas=getattr(store, "replicas", 1),
    )
    return await open_bucket(store.js, config, create=create)


class Presence:
    """One worker's entry for one reactor."""

    def __init__(self, store: Any, reactor: str) -> None:
        self.store = store
        self.reactor = reactor
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.worker = _NOT_A_KEY.sub("-", f"{self.host}-{self.pid}-{uuid.uuid4().hex[:6]}")
        self.started = time.time()
        self._kv: KeyValue | None = None

    @property
    def key(self) -> str:
        return f"{self.reactor}.{self.worker}"

    async def beat(self, figures: dict[str, Any]) -> None:
        if self._kv is None:
            self._kv = await _bucket(self.store, create=True)
        assert self._kv is not None
        value = {
            "worker": self.worker,
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "at": time.time(),
            **figures,
        }
        await self._kv.put(self.key, json.dumps(value).encode())

    async def keep(self, figures: Callable[[], dict[str, Any]]) -> None:
        """Beat every :data:`HEARTBEAT` seconds until cancelled; a missed beat is only logged."""
        while True:
            try:
                await self.beat(figures())
            except (nats.errors.Error, StoreUnavailableError, OSError) as e:
                log.debug("%s: heartbeat not written: %r", self.reactor, e)
            await asyncio.sleep(HEARTBEAT)

    async def leave(self) -> None:
        """Delete this worker's entry (a clean stop)."""
        if self._kv is None:
            return
        try:
            await self._kv.purge(self.key)
        except (nats.errors.Error, nats.js.errors.Error, OSError) as e:
            log.debug("%s: heartbeat not removed (it expires): %r", self.reactor, e)


async def workers(store: Any, reactors: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The workers heard of within :data:`EXPIRES` seconds, per reactor name."""
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in reactors}
    kv = await _bucket(store, create=False)
    if kv is None:
        return out
    try:
        keys = await kv.keys()
    except nats.js.errors.NoKeysError:
        return out
    now = time.time()
    for key in keys:
        name = key.rsplit(".", 1)[0]
        if name not in out:
            continue
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue
        try:
            value = json.loads(entry.value or b"")
        except ValueError:
            continue
        if isinstance(value, dict) and now - float(value.get("at", 0)) <= EXPIRES:
            out[name].append(value)
    return out


__all__ = ["EXPIRES", "HEARTBEAT", "Presence", "bucket_name", "workers"]
