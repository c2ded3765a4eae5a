"""A stream that vanished is never re-created silently: connect creates a stream only the first
time (nothing shows it existed), and otherwise says it is missing and what to restore."""

from __future__ import annotations

import shutil
from pathlib import Path

import nats
import pytest

from eventkit.config import Settings
from eventkit.errors import StreamMissingError
from eventkit.server import ensure_running, stop
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.nats.provenance import REGISTRY
from eventkit.testing.contract import ContractDeposited

pytestmark = pytest.mark.nats


def deposits(n: int) -> list[ContractDeposited]:
    return [ContractDeposited(amount=i + 1) for i in range(n)]


async def _drop(url: str, *names: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for name in names:
            await js.delete_stream(name)
    finally:
        await nc.close()


async def test_a_deleted_stream_is_not_recreated_on_the_next_connect(
    nats_url: str, stream_name: str
) -> None:
    async with await JetStreamEventStore.connect(nats_url, stream=stream_name) as store:
        await store.append(f"{stream_name}.acct.a", deposits(3), expected_sequence=0)
    await _drop(nats_url, stream_name)
    with pytest.raises(StreamMissingError, match=rf"{stream_name}.*missing.*{REGISTRY}.*Restore"):
        await JetStreamEventStore.connect(nats_url, stream=stream_name)
    nc = await nats.connect(nats_url)
    with pytest.raises(nats.js.errors.NotFoundError):  # nothing was created by the refusal
        await nc.jetstream().stream_info(stream_name)
    await nc.close()
    # starting over on purpose is one explicit act
    async with await JetStreamEventStore.connect(
        nats_url, stream=stream_name, create_stream=True
    ) as store:
        assert await store.last_sequence() == 0
    await _drop(nats_url, stream_name)


async def test_a_snapshot_bucket_of_the_stream_is_a_trace_too(
    nats_url: str, stream_name: str
) -> None:
    async with await JetStreamEventStore.connect(nats_url, stream=stream_name) as store:
        await store.snapshots._bucket()  # the snapshot bucket exists from the first snapshot on
        kv = await store.js.key_value(REGISTRY)
        await kv.delete(stream_name)  # only the bucket is left to tell
    await _drop(nats_url, stream_name)
    with pytest.raises(StreamMissingError, match=rf"bucket '{stream_name}_snapshots'"):
        await JetStreamEventStore.connect(nats_url, stream=stream_name)
    await _drop(nats_url, f"KV_{stream_name}_snapshots")


async def test_create_stream_false_never_creates(nats_url: str, stream_name: str) -> None:
    with pytest.raises(StreamMissingError, match="create_stream=False"):
        await JetStreamEventStore.connect(nats_url, stream=stream_name, create_stream=False)


async def test_a_first_connect_creates_the_stream(nats_url: str, stream_name: str) -> None:
    async with await JetStreamEventStore.connect(nats_url, stream=stream_name) as store:
        assert await store.append(f"{stream_name}.acct.a", deposits(1)) == 1
    async with await JetStreamEventStore.connect(nats_url, stream=stream_name) as store:
        assert await store.last_sequence() == 1  # the second connect reuses it
    await _drop(nats_url, stream_name)


async def test_an_embedded_store_that_lost_its_files_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home)
    try:
        async with await JetStreamEventStore.connect(stream="bank", settings=settings) as store:
            await store.append("bank.acct.a", deposits(2), expected_sequence=0)
        # every file of the server is gone (the power loss of a store created seconds before),
        # the KV record with it: only the home's own record tells
        stop(home)
        shutil.rmtree(home / "jetstream")
        ensure_running(home)
        with pytest.raises(StreamMissingError, match=r"streams\.json.*Restore"):
            await JetStreamEventStore.connect(stream="bank", settings=settings)
    finally:
        stop(home)
