"""The per-subject hash chain on the in-memory store: every append path chains, the chain is
the one docs/wire-format.md specifies, a changed or lost message is named, erasure keeps the
rest verifiable, and events outside the chains are not reported as broken."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from eventkit import Aggregate, Event, InMemoryEventStore, IntegrityError, Repository, on
from eventkit.store.base import Write
from eventkit.store.chain import GENESIS, ChainCheck
from eventkit.store.proof import verify_history
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import CHAIN, CHAIN_PREV


class ChainNoted(Event):
    text: str


class Ledger(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.texts: list[str] = []

    def note(self, text: str) -> None:
        self.record(ChainNoted(text=text))

    @on(ChainNoted)
    def _noted(self, e: ChainNoted) -> None:
        self.texts.append(e.text)


def spec_link(prev: str, m: StoredMessage) -> str:
    """The link as docs/wire-format.md writes it, computed independently of eventkit."""
    h = m.headers
    fields = [prev, m.subject, h.get("Eventkit-Type", ""), h.get("Eventkit-Schema", "")]
    fields += [h.get("Nats-Msg-Id", ""), h.get("Eventkit-System", "")]
    return hashlib.sha256("\n".join(fields).encode() + b"\n" + m.data).hexdigest()


async def raw(store: InMemoryEventStore, subject: str | None = None) -> list[StoredMessage]:
    return [m async for m in store.read_raw(subject)]


def tamper(store: InMemoryEventStore, seq: int, data: bytes) -> None:
    store._messages[seq] = replace(store._messages[seq], data=data)


async def test_every_append_path_writes_the_specified_chain() -> None:
    store = InMemoryEventStore(stream="c")
    ledgers = Repository(store, Ledger)
    await store.append("c.ledger.a", [ChainNoted(text="single")], expected_sequence=0)
    await store.append("c.ledger.a", [ChainNoted(text="unconditional")])
    await store.append_many(
        [
            Write("c.ledger.a", [ChainNoted(text="b1"), ChainNoted(text="b2")], 2),
            Write("c.ledger.b", [ChainNoted(text="other")]),
        ]
    )
    a = await ledgers.load("a")
    a.note("saved")
    b, c = Ledger("c"), await ledgers.load("b")
    b.note("new")
    c.note("together")
    await ledgers.save(a)
    await ledgers.save_all([b, c])
    heads: dict[str, str] = {}
    messages = await raw(store)
    assert len(messages) == 8
    for m in messages:
        prev = heads.get(m.subject, GENESIS)
        assert m.headers[CHAIN_PREV] == prev
        assert m.headers[CHAIN] == spec_link(prev, m)
        heads[m.subject] = m.headers[CHAIN]
    report = await verify_history(store)
    assert report.ok and report.chained == 8 and report.subjects == 3


async def test_a_changed_body_fails_the_load_naming_subject_and_sequence() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in "xyz"])
    tamper(store, 2, b'{"text":"Y"}')
    with pytest.raises(IntegrityError) as info:
        await Repository(store, Ledger).load("a")
    assert (info.value.subject, info.value.sequence) == ("c.ledger.a", 2)
    assert "content" in info.value.what and "differs" in info.value.what
    report = await verify_history(store)
    assert [(x.subject, x.sequence, x.kind) for x in report.problems] == [
        ("c.ledger.a", 2, "content")
    ]


async def test_a_lost_message_is_named_at_the_next_one() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in "wxyz"])
    del store._messages[2]  # gone without eventkit's erase (a disk fault, a raw delete)
    store._by_subject["c.ledger.a"].remove(2)
    with pytest.raises(IntegrityError) as info:
        await store.read("c.ledger.a")
    assert info.value.sequence == 3 and "missing" in info.value.what


async def test_erasing_one_message_keeps_the_rest_verifiable_and_no_data() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in ("a", "secret", "b")])
    assert await store.delete(2) is True
    await store.append("c.ledger.a", [ChainNoted(text="after")])
    assert [r.event.text for r in await store.read("c.ledger.a")] == ["a", "b", "after"]
    report = await verify_history(store)
    assert report.ok and report.erased == 1
    assert not any(b"secret" in m.data for m in await raw(store))


async def test_forgetting_a_subject_closes_its_chain_with_its_last_link() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in "ab"])
    last = (await raw(store))[-1].headers[CHAIN]
    marker = await store.mark_forgotten("c.ledger.a")
    for seq in (1, 2):
        await store.delete(seq)
    (m,) = await raw(store, "c.ledger.a")
    assert m.sequence == marker and m.headers[CHAIN_PREV] == last
    assert m.headers[CHAIN] == spec_link(last, m)
    assert (await verify_history(store)).ok
    # no erased-message records for a forgotten subject: the marker says it all
    assert await raw(store, "c._eventkit.>") == []


async def test_unchained_and_foreign_messages_are_not_broken_chains() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text="old")])
    old = store._messages[1]
    store._messages[1] = replace(
        old, headers={k: v for k, v in old.headers.items() if not k.startswith("Eventkit-Chain")}
    )  # as written before chains existed
    await store.append("c.ledger.a", [ChainNoted(text="new")])
    assert [r.event.text for r in await store.read("c.ledger.a")] == ["old", "new"]
    check = ChainCheck()
    check.check(StoredMessage("c.other.x", 9, old.time, {"Nats-Msg-Id": "js-1"}, b"{}"))
    for m in await raw(store):
        check.check(m)
    assert check.problems == [] and check.unchained == 1 and check.foreign == 1


async def test_verify_chains_false_skips_the_check() -> None:
    store = InMemoryEventStore(stream="c", verify_chains=False)
    await store.append("c.ledger.a", [ChainNoted(text="x")])
    tamper(store, 1, b'{"text":"z"}')
    assert [r.event.text for r in await store.read("c.ledger.a")] == ["z"]


async def test_a_read_after_a_snapshot_checks_from_there() -> None:
    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in "abcd"])
    assert [r.sequence for r in await store.read("c.ledger.a", after=2)] == [3, 4]
    tamper(store, 4, b'{"text":"D"}')
    with pytest.raises(IntegrityError) as info:
        await store.read("c.ledger.a", after=2)
    assert info.value.sequence == 4


async def test_copies_are_compared_and_the_node_that_differs_is_named() -> None:
    from eventkit.store.proof import VerifyReport, verify_copies

    store = InMemoryEventStore(stream="c")
    await store.append("c.ledger.a", [ChainNoted(text=t) for t in "abcdef"])
    good = await raw(store)
    holed = [m for m in good if m.sequence != 3]  # a record the server dropped
    changed = [replace(m, data=b'{"text":"X"}') if m.sequence == 5 else m for m in good]
    behind = good[:4]  # lagging, or its last writes not flushed yet
    report = VerifyReport(stream="c", scope="c.>")
    copies = {"n1": good, "n2": holed, "n3": good, "n4": changed, "n5": behind}
    verify_copies(report, copies, {})
    named = sorted((x.node or "", x.sequence, x.kind) for x in report.problems)
    assert named == [("n2", 3, "replica"), ("n2", 4, "link"), ("n4", 5, "content")]
    assert report.nodes["n5"] == {"messages": 4, "last_sequence": 4, "behind": 2}
