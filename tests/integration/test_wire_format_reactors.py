"""What docs/wire-format.md says of reactors' messages, checked on the wire: an upstream
correlation id on another service's message is carried through every reactor output, the
causation id names the handled message, and a deadline is two JSON messages under
`<stream>._eventkit.>` with `Eventkit-Due-Type`, never `Eventkit-Type`."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, ClassVar

import nats
import pytest

from eventkit import Event, JetStreamEventStore, RecordedEvent, on
from eventkit.reaction import Reactor, ReactorContext, ReactorRunner
from eventkit.store.schedules import SCHEDULER

pytestmark = [pytest.mark.nats]


class WfOrderPlaced(Event):
    total: int


class WfOrderNoted(Event):
    total: int


class WfBilled(Event):
    total: int


class WfDue(Event):
    n: int


class Noter(Reactor):
    name = "noter"
    subjects: ClassVar[list[str]] = []
    foreign_events: ClassVar[dict[str, type[Event]]] = {"{s}.orders.>": WfOrderPlaced}

    @on(WfOrderPlaced)
    async def placed(self, e: WfOrderPlaced, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.append(f"{ctx.store.stream}.note.{rec.entity_id}", [WfOrderNoted(total=e.total)])


class Biller(Reactor):
    name = "biller"
    subjects: ClassVar[list[str]] = []

    @on(WfOrderNoted)
    async def noted(self, e: WfOrderNoted, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.append(f"{ctx.store.stream}.bill.{rec.entity_id}", [WfBilled(total=e.total)])


def bound(cls: type[Reactor], stream: str) -> type[Reactor]:
    attrs: dict[str, Any] = {"subjects": [f"{stream}.orders.>", f"{stream}.note.>"]}
    if cls.foreign_events:
        attrs["foreign_events"] = {f"{stream}.orders.>": WfOrderPlaced}
    else:
        attrs["subjects"] = [f"{stream}.note.>"]
    return type(cls.__name__, (cls,), attrs)


async def test_an_upstream_correlation_id_is_carried_through_reactor_outputs(
    store: JetStreamEventStore, nats_url: str
) -> None:
    s = store.stream
    nc = await nats.connect(nats_url)
    try:  # as docs/wire-format.md's NestJS example publishes: no Eventkit-Type
        headers = {"Nats-Msg-Id": "order-o-1", "Eventkit-Correlation-Id": "req-42"}
        await nc.jetstream().publish(f"{s}.orders.o-1", b'{"total": 30}', headers=headers)
    finally:
        await nc.close()
    await ReactorRunner(bound(Noter, s)(), store).catch_up()
    await ReactorRunner(bound(Biller, s)(), store).catch_up()

    (noted,) = [m async for m in store.read_raw(f"{s}.note.o-1")]
    (billed,) = [m async for m in store.read_raw(f"{s}.bill.o-1")]
    assert noted.headers["Eventkit-Causation-Id"] == "order-o-1"  # the handled message's id
    assert billed.headers["Eventkit-Causation-Id"] == noted.headers["Nats-Msg-Id"]
    assert noted.headers["Eventkit-Correlation-Id"] == "req-42"  # the chain keeps its name
    assert billed.headers["Eventkit-Correlation-Id"] == "req-42"


class Timer(Reactor):
    name = "wftimer"
    fired: ClassVar[list[int]] = []

    @on(WfOrderNoted)
    async def noted(self, e: WfOrderNoted, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.schedule(WfDue(n=e.total), after=timedelta(seconds=1))

    @on(WfDue)
    async def due(self, e: WfDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Timer.fired.append(e.n)


async def test_a_deadline_is_two_json_messages_under_the_system_subjects(
    store: JetStreamEventStore,
) -> None:
    s = store.stream
    Timer.fired.clear()
    await store.append(f"{s}.note.n-1", [WfOrderNoted(total=5)])
    timer = type("Timer", (Timer,), {"name": "wftimer", "subjects": [f"{s}.note.>"]})
    await ReactorRunner(timer(), store).catch_up()  # stores the schedule
    deadline = asyncio.get_running_loop().time() + 20
    while not Timer.fired:
        assert asyncio.get_running_loop().time() < deadline, "the deadline did not fire"
        await asyncio.sleep(0.3)
        await ReactorRunner(timer(), store).catch_up()

    system = [m async for m in store.read_raw(f"{s}._eventkit.>")]
    due = [m for m in system if "Eventkit-Due-Type" in m.headers]
    # the schedule was removed when it fired; the server's copy stays (a consumer of <stream>.>
    # saw both)
    delivered = [m for m in due if SCHEDULER in m.headers]
    assert len(delivered) == 1, [m.headers for m in system]
    (copy,) = delivered
    assert copy.subject == f"{s}._eventkit.reactor.wftimer.due"
    assert copy.headers[SCHEDULER].startswith(f"{s}._eventkit.schedule.wftimer.")
    assert copy.headers["Eventkit-Due-Type"] == "WfDue" and "Eventkit-Type" not in copy.headers
    assert json.loads(copy.data) == {"n": 5}
    assert copy.headers["Eventkit-Due-Id"]
    assert [r.event_type async for r in store.read_all()] == ["WfOrderNoted"]
