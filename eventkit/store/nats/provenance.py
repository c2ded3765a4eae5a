"""Whether a missing stream existed before: eventkit creates a stream only the first time.

A stream that vanished (deleted by mistake, lost at a power loss of a server that had not
fsynced it) must not be replaced by a new, empty one without a word: every process would carry
on as if nothing had happened. When eventkit creates a stream it records the fact (in the KV
bucket ``eventkit_streams`` and, for the embedded server, in ``<home>/streams.json``, fsynced);
the KV buckets eventkit keeps per stream (snapshots, keys, parked events) are traces too::

    traces = await traces_of(store)      # [] on a first run
    await record_created(store)          # after creating it
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType

from eventkit.store.nats.buckets import open_bucket

log = logging.getLogger(__name__)

REGISTRY = "eventkit_streams"
"""The KV bucket where eventkit records each stream it created (key: the stream name)."""
LOCAL_RECORD = "streams.json"


def _per_stream_buckets(stream: str) -> list[str]:
    return [f"{stream}_snapshots", f"{stream}_keys", f"eventkit_{stream}_parked"]


def _local_record(store: Any) -> Path | None:
    embedded = getattr(store, "embedded", None)
    if embedded is None:
        return None
    return Path(embedded.store_dir).parent / LOCAL_RECORD


def _read_local(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


async def traces_of(store: Any) -> list[str]:
    """What shows that ``store.stream`` existed on this server (empty: nothing does)."""
    stream = store.stream
    found: list[str] = []
    path = _local_record(store)
    if path is not None:
        created = _read_local(path).get(stream)
        if created is not None:
            found.append(f"{path} (eventkit created it on {created})")
    with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
        kv = await store.js.key_value(REGISTRY)
        with contextlib.suppress(nats.js.errors.KeyNotFoundError):
            entry = await kv.get(stream)
            created = (entry.value or b"").decode(errors="replace")
            found.append(f"the KV bucket {REGISTRY!r} (eventkit created it on {created})")
    for bucket in _per_stream_buckets(stream):
        with contextlib.suppress(nats.js.errors.NotFoundError, nats.errors.TimeoutError):
            await store.js.stream_info(f"KV_{bucket}")
            found.append(f"its KV bucket {bucket!r}")
    return found


async def record_created(store: Any, replicas: int) -> None:
    """Record that eventkit created ``store.stream`` now. A failure is logged, not raised (a
    user without the right to make the bucket still gets a working store)."""
    stream = store.stream
    when = datetime.now(UTC).isoformat(timespec="seconds")
    path = _local_record(store)
    if path is not None:
        await asyncio.to_thread(_write_local, path, stream, when)
    config = KeyValueConfig(bucket=REGISTRY, history=1, storage=StorageType.FILE, replicas=replicas)
    try:
        kv = await open_bucket(store.js, config, create=True)
        if kv is not None:
            await kv.put(stream, when.encode())
    except Exception as e:  # the stream is made; the record is a safeguard
        log.info("could not record stream %s in the KV bucket %s: %r", stream, REGISTRY, e)


def _write_local(path: Path, stream: str, when: str) -> None:
    """Add ``stream`` to the home's record, fsynced (file and directory)."""
    data = _read_local(path)
    data[stream] = when
    tmp = path.with_name(f".{LOCAL_RECORD}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def missing_message(stream: str, traces: list[str]) -> str:
    """The error for a stream that is gone although ``traces`` show it existed."""
    return (
        f"stream {stream!r} is missing on the server, but {'; '.join(traces)} show that it "
        f"existed: it was deleted, or lost (a power loss on a server that had not fsynced it, "
        f"a restore without it). eventkit does not put a new, empty stream in its place. "
        f"Restore it (nats stream restore from a backup, or from a mirror), then connect again; "
        f"or, to start over with an empty stream on purpose, connect once with "
        f"create_stream=True (projectors then need a replay from the start: eventkit replay "
        f"<name> --from-start)"
    )


__all__ = ["LOCAL_RECORD", "REGISTRY", "missing_message", "record_created", "traces_of"]
