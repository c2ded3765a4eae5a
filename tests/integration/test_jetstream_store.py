"""The JetStream store against a real nats-server: the contract, plus what only it can do."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import nats.errors
import pytest
from faults import LostAcks  # type: ignore[import-not-found]
from nats.aio.msg import Msg

from eventkit.errors import (
    ConcurrencyError,
    ConfigError,
    EventDecodeError,
    ServerVersionError,
    StoreUnavailableError,
)
from eventkit.store.jetstream import JetStreamEventStore, parse_nats_time, parse_version
from eventkit.store.wire_constants import (
    ERR_WRONG_LAST_SEQUENCE,
    EVENT_TYPE,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    MSG_ID,
    SCHEMA_VERSION,
    SEQUENCE,
)
from eventkit.testing.contract import ContractDeposited, EventStoreContract

pytestmark = pytest.mark.nats


class TestJetStreamStoreContract(EventStoreContract):
    @pytest.fixture
    def store_factory(
        self, nats_url: str, stream_name: str
    ) -> Callable[[], Awaitable[JetStreamEventStore]]:
        return lambda: JetStreamEventStore.connect(nats_url, stream=stream_name)


def deposits(*amounts: int) -> list[Any]:
    return [ContractDeposited(amount=a) for a in amounts]


async def test_stream_is_created_with_what_eventkit_needs(nats_url: str, stream_name: str) -> None:
    store = await JetStreamEventStore.connect(nats_url, stream=stream_name, duplicate_window=30)
    try:
        cfg = (await store.js.stream_info(stream_name)).config
        assert cfg.subjects == [f"{stream_name}.>"]
        assert (cfg.allow_direct, cfg.allow_atomic, cfg.num_replicas) == (True, True, 1)
        assert cfg.storage == "file"
        assert cfg.duplicate_window == 30
    finally:
        await store.js.delete_stream(stream_name)
        await store.close()


async def test_a_stream_eventkit_made_is_kept_as_asked(nats_url: str, stream_name: str) -> None:
    first = await JetStreamEventStore.connect(nats_url, stream=stream_name, duplicate_window=30)
    await first.close()
    store = await JetStreamEventStore.connect(nats_url, stream=stream_name, duplicate_window=60)
    try:
        cfg = (await store.js.stream_info(stream_name)).config
        assert cfg.metadata is not None and cfg.metadata.get("eventkit") == "1"
        assert cfg.duplicate_window == 60
    finally:
        await store.js.delete_stream(stream_name)
        await store.close()


async def test_another_services_stream_is_never_changed(nats_url: str, stream_name: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        # made by another service without what eventkit needs: a clear error, nothing changed
        await js.add_stream(name=stream_name, subjects=[f"{stream_name}.>", "orders.>"])
        with pytest.raises(ConfigError, match=r"allow_direct: true, allow_atomic: true.*NestJS"):
            await JetStreamEventStore.connect(nats_url, stream=stream_name)
        cfg = (await js.stream_info(stream_name)).config
        assert not cfg.allow_direct and not cfg.allow_atomic
        # with them, but its own duplicate window: adopted as it is, on every connect
        cfg.allow_direct = cfg.allow_atomic = True
        cfg.duplicate_window = 45
        await js.update_stream(cfg)
        for _ in range(2):
            store = await JetStreamEventStore.connect(
                nats_url, stream=stream_name, duplicate_window=60
            )
            await store.append(f"{stream_name}.acct.a", deposits(1))
            await store.close()
            cfg = (await js.stream_info(stream_name)).config
            assert cfg.duplicate_window == 45 and cfg.subjects == [f"{stream_name}.>", "orders.>"]
    finally:
        await js.delete_stream(stream_name)
        await nc.close()


async def test_old_server_is_refused_naming_the_version(store: JetStreamEventStore) -> None:
    with pytest.raises(ServerVersionError, match=r"2\.12\.0.*2\.11\.4") as info:
        store.check_server_version("2.11.4")
    assert info.value.needed == "2.12.0"
    store.check_server_version()  # the wheel's server is new enough
    assert parse_version(store.server_version) >= (2, 12, 0)


async def test_lost_ack_on_single_append_stores_once(lossy: LostAcks) -> None:
    s = f"{lossy.stream}.acct.1"
    await lossy.append(s, deposits(1), expected_sequence=0)
    lossy.lose = 1
    # the first try is stored, its ack lost; the retry's expectation (1) is then stale: 10071
    seq = await lossy.append(s, deposits(2), expected_sequence=1)
    assert seq == 2
    assert lossy.sent == 3
    assert [r.event.amount for r in await lossy.read(s)] == [1, 2]


async def test_lost_ack_with_others_writing_in_between_stores_once(lossy: LostAcks) -> None:
    s = f"{lossy.stream}.acct.1"
    mine = [str(uuid.uuid4())]
    lossy.lose = 1
    original = lossy._request

    async def interleaved(subject: str, payload: bytes, headers: dict[str, str], t: float) -> Msg:
        try:
            return await original(subject, payload, headers, t)
        except nats.errors.TimeoutError:
            # our first try is stored, its ack lost; someone else appends before the retry
            await lossy.nc.request(s, b"{}", headers={EVENT_TYPE: "x"}, timeout=2)
            raise

    lossy._request = interleaved  # type: ignore[method-assign, assignment]
    seq = await lossy.append(s, deposits(1), expected_sequence=0, event_ids=mine)
    assert seq == 1
    stored = [m async for m in lossy.read_raw(s)]
    assert [m.headers.get(MSG_ID) for m in stored][:1] == mine
    assert len(stored) == 2


async def test_lost_ack_on_batch_append_stores_once(lossy: LostAcks) -> None:
    s = f"{lossy.stream}.acct.1"
    lossy.lose = 1
    seq = await lossy.append(s, deposits(*range(10)), expected_sequence=0)
    assert seq == 10
    assert [r.event.amount for r in await lossy.read(s)] == list(range(10))
    assert await lossy.last_sequence() == 10


async def test_lost_ack_then_real_conflict_is_reported(lossy: LostAcks) -> None:
    s = f"{lossy.stream}.acct.1"
    await lossy.append(s, deposits(1), expected_sequence=0)
    lossy.lose = 1
    with pytest.raises(ConcurrencyError) as info:
        await lossy.append(s, deposits(2), expected_sequence=0)
    assert info.value.actual == 1
    assert len(await lossy.read(s)) == 1


async def test_no_answer_at_all_gives_store_unavailable(lossy: LostAcks) -> None:
    lossy.retry_for = 0.3
    lossy.lose = 1000
    with pytest.raises(StoreUnavailableError, match="same event ids"):
        await lossy.append(f"{lossy.stream}.acct.1", deposits(1))


async def test_garbage_payload_gives_decode_error(
    store: JetStreamEventStore, nats_url: str
) -> None:
    s = f"{store.stream}.acct.g"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.publish(s, b"\xff not json", headers={EVENT_TYPE: ContractDeposited.event_type})
        await js.publish(f"{s}2", b'{"amount": 1}')
        await js.publish(
            f"{s}3",
            b'{"amount": 1}',
            headers={EVENT_TYPE: ContractDeposited.event_type, SCHEMA_VERSION: "7"},
        )
    finally:
        await nc.close()
    with pytest.raises(EventDecodeError, match="does not match") as info:
        await store.read(s)
    assert (info.value.subject, info.value.sequence) == (s, 1)
    with pytest.raises(EventDecodeError, match="another service wrote it"):
        await store.read(f"{s}2")
    with pytest.raises(EventDecodeError, match="schema version 7"):
        await store.read(f"{s}3")


@pytest.mark.slow
async def test_read_of_more_than_one_batch_is_complete_and_ordered(
    store: JetStreamEventStore,
) -> None:
    s, other = f"{store.stream}.acct.big", f"{store.stream}.acct.other"
    for i in range(0, 2500, 500):
        await store.append(s, deposits(*range(i, i + 500)))
        await store.append(other, deposits(-1))
    records = await store.read(s)
    assert [r.event.amount for r in records] == list(range(2500))
    seqs = [r.sequence for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2500
    tail = await store.read(s, after=seqs[1700])
    assert [r.event.amount for r in tail] == list(range(1701, 2500))
    everything = [r.sequence async for r in store.read_all()]
    assert everything == list(range(1, 2506))


async def test_direct_get_batches_walk_all_subjects_and_end(store: JetStreamEventStore) -> None:
    """What the reads rely on: a batch without next_by_subj walks every subject; Num-Pending on
    the end-of-batch says whether more match; last_by_subj takes a wildcard."""
    for i in range(7):
        await store.append(f"{store.stream}.acct.{i % 3}", deposits(i))
    msgs, more = await store._direct({"seq": 1, "batch": 4})
    assert [m.headers[SEQUENCE] for m in msgs if m.headers] == ["1", "2", "3", "4"]
    assert more == 3
    msgs, more = await store._direct({"seq": 5, "batch": 4})
    assert (len(msgs), more) == (3, 0)
    msgs, more = await store._direct(
        {"seq": 1, "batch": 2, "next_by_subj": f"{store.stream}.acct.1"}
    )
    assert [m.headers[SEQUENCE] for m in msgs if m.headers] == ["2", "5"]
    assert more == 0
    msgs, _ = await store._direct({"last_by_subj": f"{store.stream}.acct.*"})
    assert msgs[0].headers and msgs[0].headers[SEQUENCE] == "7"
    msgs, more = await store._direct({"multi_last": [f"{store.stream}.acct.*"]})
    assert sorted(int(m.headers[SEQUENCE]) for m in msgs if m.headers) == [5, 6, 7]
    msgs, more = await store._direct({"seq": 99, "batch": 4})
    assert (msgs, more) == ([], 0)


async def test_raw_conflict_code_is_what_the_store_translates(store: JetStreamEventStore) -> None:
    s = f"{store.stream}.acct.1"
    await store.append(s, deposits(1))
    reply = await store.nc.request(
        s, b"{}", headers={EXPECTED_LAST_SUBJECT_SEQUENCE: "0"}, timeout=2
    )
    err = json.loads(reply.data)["error"]
    assert (err["err_code"], err["description"]) == (
        ERR_WRONG_LAST_SEQUENCE,
        "wrong last sequence: 1",
    )


def test_version_and_time_parsing() -> None:
    assert parse_version("v2.12.1-beta.2") == (2, 12, 1)
    assert parse_version("garbage") == (0, 0, 0)
    t = parse_nats_time("2026-11-27T09:33:34.123456789Z")
    assert (t.microsecond, t.utcoffset()) == (123456, t.utcoffset())
    assert t.tzinfo is not None and t.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
