"""Where ``eventkit verify`` keeps what it saw (the KV bucket ``<stream>_verify``, key
``last``), and the replica set of the stream, as the server reports them."""

from __future__ import annotations

import json
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType

from eventkit.errors import StoreUnavailableError
from eventkit.store.nats.buckets import open_bucket
from eventkit.store.nats.jetstream_errors import translate_api

KEY = "last"


def bucket_name(stream: str) -> str:
    return f"{stream}_verify"


async def load_verification(js: JetStreamContext, stream: str) -> dict[str, Any] | None:
    """The record of the last ``verify --all`` of ``stream`` (None before the first)."""
    kv = await open_bucket(js, KeyValueConfig(bucket=bucket_name(stream)), create=False)
    if kv is None:
        return None
    try:
        entry = await kv.get(KEY)
    except nats.js.errors.KeyNotFoundError:
        return None
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise StoreUnavailableError(f"reading the last verification of {stream!r}: {e!r}") from e
    try:
        value = json.loads(entry.value or b"null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def save_verification(
    js: JetStreamContext, stream: str, record: dict[str, Any], replicas: int
) -> None:
    config = KeyValueConfig(
        bucket=bucket_name(stream), history=1, storage=StorageType.FILE, replicas=replicas
    )
    kv = await open_bucket(js, config, create=True)
    assert kv is not None
    try:
        await kv.put(KEY, json.dumps(record).encode())
    except nats.js.errors.APIError as e:
        raise translate_api(e, f"recording the verification of {stream!r}") from e


async def replica_names(js: JetStreamContext, stream: str) -> list[str]:
    """The servers holding a replica of ``stream`` (leader first); [] for a single server
    outside a cluster."""
    try:
        info = await js.stream_info(stream)
    except nats.js.errors.APIError as e:
        raise translate_api(e, f"stream info of {stream!r}") from e
    cluster = info.cluster
    if cluster is None:
        return []
    names = [cluster.leader] if cluster.leader else []
    names += [r.name for r in cluster.replicas or [] if r.name]
    return names


__all__ = ["load_verification", "replica_names", "save_verification"]
