"""Projectors and reactors told to verify (``verify_chains = True``; off by default): a message
whose bytes are not the ones its link was made of stops a projector (``IntegrityError``, then its
``on_error``) and is parked by a reactor, while the rest goes on; reactor outputs made through
``ctx`` are chained like every append."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from eventkit import Event, JetStreamEventStore, Projector, RecordedEvent, on
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.status import status
from eventkit.reaction import Reactor, ReactorContext, ReactorRunner
from eventkit.runtime.parked import ParkedLetters
from eventkit.store.proof import verify_history
from eventkit.store.wire_constants import CHAIN, CHAIN_PREV, MSG_ID

pytestmark = [pytest.mark.nats]


class CwNoted(Event):
    n: int


class CwEchoed(Event):
    n: int


async def with_forgery(store: JetStreamEventStore) -> int:
    """Three events, a forged one (claims to follow the head, body changed), one more; returns
    the forged message's sequence."""
    subject = f"{store.stream}.note.a"
    for n in range(3):
        await store.append(subject, [CwNoted(n=n)])
    head = await store.last_message(subject)
    assert head is not None
    forged = {k: v for k, v in head.headers.items() if not k.startswith("Nats-Expected")}
    forged[CHAIN_PREV] = head.headers[CHAIN]
    forged[MSG_ID] = "forged-1"
    ack = await store.js.publish(subject, head.data.replace(b"2", b"7"), headers=forged)
    await store.append(subject, [CwNoted(n=3)])
    return int(ack.seq)


def counting_projector(verify: bool) -> Projector:
    class Counting(Projector):
        name = f"cw-{'on' if verify else 'off'}"
        subjects: ClassVar[list[str]] = []
        verify_chains = verify
        seen: ClassVar[list[int]] = []

        @on(CwNoted)
        def noted(self, e: CwNoted, rec: RecordedEvent[Any], db: Session) -> None:
            self.seen.append(e.n)

    return Counting()


async def test_a_verifying_projector_halts_at_a_forged_event(
    store: JetStreamEventStore, engine: Engine
) -> None:
    forged = await with_forgery(store)
    projector = counting_projector(verify=True)
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert result.halted and result.checkpoint == forged - 1
    [st] = await status([projector], store, engine)
    assert st.last_error and "integrity check failed" in st.last_error
    assert f"at sequence {forged}" in st.last_error

    off = counting_projector(verify=False)  # the default: applied as stored
    result = await ProjectionRunner(off, store, engine).catch_up()
    assert not result.halted and type(off).seen == [0, 1, 2, 7, 3]


async def test_a_verifying_reactor_parks_a_forged_event_and_its_outputs_are_chained(
    store: JetStreamEventStore,
) -> None:
    forged = await with_forgery(store)
    seen: list[int] = []

    class Echo(Reactor):
        name = "cw-echo"
        subjects: ClassVar[list[str]] = [f"{store.stream}.note.>"]
        verify_chains = True

        @on(CwNoted)
        async def noted(self, e: CwNoted, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            seen.append(e.n)
            await ctx.append(f"{store.stream}.echo.{rec.entity_id}", [CwEchoed(n=e.n)])

    stats = await ReactorRunner(Echo(), store).catch_up()
    assert sorted(seen) == [0, 1, 2, 3] and stats.parked == 1
    (letter,) = await ParkedLetters(store).list("cw-echo")
    assert letter.sequence == forged and "integrity" in letter.error
    report = await verify_history(store, f"{store.stream}.echo.>")
    assert report.ok and report.chained == 4
