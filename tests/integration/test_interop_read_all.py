"""What another service (NestJS on the JetStream transport, the nats CLI) writes to the stream,
as docs/wire-format.md tells it to: `read_all` passes it over instead of failing the scan, and an
aggregate whose subject got such a message can be loaded and saved again without erasing it."""

from __future__ import annotations

import json
import uuid

import nats
import pytest

from eventkit import Aggregate, Event, Repository, on
from eventkit.errors import EventDecodeError
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]


class IoDeposited(Event):
    amount: int


async def publish_foreign(url: str, subject: str, body: dict[str, object]) -> None:
    """A message as a nats.js / NestJS service publishes it: JSON, a Nats-Msg-Id, no
    Eventkit-Type."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.publish(
            subject, json.dumps(body).encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex}
        )
    finally:
        await nc.close()


async def test_read_all_passes_over_other_services_messages(
    store: JetStreamEventStore, nats_url: str
) -> None:
    s = store.stream
    await store.append(f"{s}.account.a-1", [IoDeposited(amount=1)])
    await publish_foreign(nats_url, f"{s}.orders.o-1", {"pattern": "order.placed", "total": 3})
    await store.append(f"{s}.account.a-1", [IoDeposited(amount=2)])
    await publish_foreign(nats_url, f"{s}.orders.o-2", {"total": 4})

    whole = [r.event.amount async for r in store.read_all()]
    assert whole == [1, 2]
    filtered = [r.event.amount async for r in store.read_all(subjects=[f"{s}.>"])]
    assert filtered == [1, 2]
    later = [r.sequence async for r in store.read_all(from_sequence=2)]
    assert later == [3]
    raw = [m.subject async for m in store.read_raw()]
    assert raw.count(f"{s}.orders.o-1") == 1  # still there for whoever reads raw


class IoAccount(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.balance = 0

    def deposit(self, amount: int) -> None:
        self.record(IoDeposited(amount=amount))

    @on(IoDeposited)
    def _deposited(self, e: IoDeposited) -> None:
        self.balance += e.amount


class IoTolerantAccount(IoAccount):
    aggregate_type = "ioaccount"  # the same subjects
    pass_over_foreign = True


async def test_an_aggregate_passes_over_a_foreign_message_when_it_says_so(
    store: JetStreamEventStore, nats_url: str
) -> None:
    acct = IoAccount("a-1")
    acct.deposit(5)
    await Repository(store, IoAccount).save(acct)
    subject = f"{store.stream}.ioaccount.a-1"
    await publish_foreign(nats_url, subject, {"total": 9})

    with pytest.raises(EventDecodeError, match="pass_over_foreign = True"):
        await Repository(store, IoAccount).load("a-1")  # the default: refused, with the way out

    tolerant = Repository(store, IoTolerantAccount)
    loaded = await tolerant.load("a-1")
    assert loaded.balance == 5 and loaded.version == await store.last_sequence(subject)
    loaded.deposit(7)
    await tolerant.save(loaded)  # expects the foreign message's sequence: accepted
    again = await tolerant.load("a-1")
    assert again.balance == 12 and again.version == await store.last_sequence(subject)
    assert len([m async for m in store.read_raw(subject)]) == 3  # nothing was erased
    as_of = await tolerant.load("a-1", as_of_sequence=again.version - 1)
    assert as_of.balance == 5
