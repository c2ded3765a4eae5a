"""More personal subjects than the key cache holds: a cache miss is never taken for an erasure.

50,000 encrypted subjects (the cache's real size) with one event each, then 200 of the oldest
written again interleaved with 200 new ones, all in one runner batch: every event is applied.
A key the runner does not have is an error that halts (never "forgotten", never skipped).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from eventkit.errors import DataKeyMissingError
from eventkit.gdpr.keycache import DEFAULT_LIMIT, DataKey, KeyCache
from eventkit.gdpr.keys import KeyStore
from eventkit.projection.runner import ProjectionRunner
from eventkit.server import ServerProcess
from eventkit.store.base import Write
from eventkit.store.codec import Codec
from eventkit.store.jetstream import JetStreamEventStore

from ._domain import RelAdded
from ._readmodel import applied_count, read_model, sqlite_engine, totals_projector
from .conftest import new_stream, record_result

pytestmark = [pytest.mark.nats, pytest.mark.slow]

MASTER = os.urandom(32)


async def _connect(url: str, stream: str) -> JetStreamEventStore:
    keys = KeyStore(master_key=MASTER, personal=[f"{stream}.counter.*"])
    store = await JetStreamEventStore.connect(url, stream=stream, codec=Codec(cipher=keys))
    await keys.attach(store)
    return store


async def _write(store: JetStreamEventStore, subjects: list[str]) -> None:
    for i in range(0, len(subjects), 500):
        chunk = subjects[i : i + 500]
        await store.append_many([Write(s, [RelAdded(amount=1)], None) for s in chunk])


async def test_a_batch_past_the_key_cache_size_applies_every_event(
    server: ServerProcess, tmp_path: Path
) -> None:
    stream = new_stream("keys")
    writer = await _connect(server.url, stream)
    reader = await _connect(server.url, stream)
    first = [f"{stream}.counter.{uuid.uuid4().hex}" for _ in range(DEFAULT_LIMIT)]
    await _write(writer, first)

    engine = sqlite_engine(tmp_path / "read.db")
    projector = totals_projector()
    runner = ProjectionRunner(projector, reader, engine, batch_size=1000)
    await runner.catch_up()
    assert applied_count(engine) == DEFAULT_LIMIT
    cipher = reader.codec.cipher
    assert isinstance(cipher, KeyStore) and len(cipher.cache) == DEFAULT_LIMIT  # full

    # the oldest cached subjects again, interleaved with new ones, in one batch of 400
    new = [f"{stream}.counter.{uuid.uuid4().hex}" for _ in range(200)]
    mixed = [s for pair in zip(first[:200], new, strict=True) for s in pair]
    await writer.append_many([Write(s, [RelAdded(amount=1)], None) for s in mixed])
    result = await ProjectionRunner(projector, reader, engine, batch_size=1000).catch_up()

    totals, applications = read_model(engine)
    assert result.checkpoint == await reader.last_sequence()
    assert applied_count(engine) == DEFAULT_LIMIT + 400
    assert all(n == 1 for n in applications.values())
    assert all(totals[s] == 2 for s in first[:200]) and all(totals[s] == 1 for s in new)
    record_result(
        "key cache past its size",
        subjects=DEFAULT_LIMIT + 200,
        events=applied_count(engine),
        cached=len(cipher.cache),
    )
    await writer.close()
    await reader.close()
    engine.dispose()


def test_loading_a_batch_never_evicts_a_key_of_the_same_batch() -> None:
    cache = KeyCache(limit=4)
    for s in "abcd":
        cache.put(s, DataKey("id", b"k" * 32, f"n-{s}"))
    # a batch that needs a and b (cached, oldest) and two new ones: touch, then load
    assert cache.touch("a") is not None and cache.touch("b") is not None
    cache.put("e", DataKey("id", b"k" * 32, "n-e"))
    cache.put("f", DataKey("id", b"k" * 32, "n-f"))
    assert all(cache.peek(s) is not None for s in "abef")
    assert cache.peek("c") is None and cache.peek("d") is None


async def test_a_key_that_is_not_at_hand_is_missing_never_forgotten(
    server: ServerProcess,
) -> None:
    stream = new_stream("keys")
    writer = await _connect(server.url, stream)
    subject = f"{stream}.counter.{uuid.uuid4().hex}"
    await writer.append(subject, [RelAdded(amount=1)])
    raw = [m async for m in writer.read_raw(subject)]
    reader = await _connect(server.url, stream)
    with pytest.raises(DataKeyMissingError):  # not prepared: a miss, not an erasure
        reader.codec.decode(raw[0])
    await writer.close()
    await reader.close()
