"""Appends without an expected sequence to one subject of a replicated (R3) stream, from writers
connected to every node at once: each one is stored, none is refused because others appended."""

from __future__ import annotations

import asyncio

import pytest

from eventkit.store.jetstream import JetStreamEventStore
from eventkit.testing.cluster import Cluster

from ._domain import RelAdded
from .conftest import record_result

pytestmark = [pytest.mark.nats, pytest.mark.cluster, pytest.mark.slow]


async def test_r3_unconditional_appends_to_one_subject_are_all_stored(
    cluster: Cluster, r3_stream: str
) -> None:
    stream = r3_stream  # every node knows it, its leader elected
    urls = cluster.urls
    stores = [await JetStreamEventStore.connect(u, stream=stream, replicas=3) for u in urls * 2]
    subject = f"{stream}.counter.shared"
    per_store = 40
    try:
        started = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(s.append(subject, [RelAdded(amount=1)]) for s in stores for _ in range(per_store)),
            return_exceptions=True,
        )
        took = asyncio.get_running_loop().time() - started
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed == []
        total = len(stores) * per_store
        assert len(set(results)) == total
        assert len(await stores[0].read(subject)) == total
        record_result(
            "R3 unconditional appends, one subject", appends=total, seconds=round(took, 2)
        )
    finally:
        await stores[0].js.delete_stream(stream)
        for s in stores:
            await s.close()
