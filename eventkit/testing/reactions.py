"""Reactors in unit tests: an ``InMemoryEventStore``, no server, the same derived ids.

::

    store = InMemoryEventStore(stream="bank")
    await Repository(store, Account).save(acct)            # given: events in the store
    test = ReactorScenario(LargeWithdrawals(), store)
    await test.run()                                      # when: the reactor handles them
    assert [r.event for r in await store.read("bank.alert.a-1")] == [AlertRaised(amount=20_000)]
    await test.redeliver(3)                               # a redelivery stores nothing twice
    assert test.scheduled[0].event == ReviewDue(account="a-1")
    await test.fire_deadlines()                           # deliver the deadlines that are due

A handler's exception propagates (the runner would nak it and retry with ``backoff``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventkit.errors import ForgottenError
from eventkit.reaction.context import Deadline, ReactorContext
from eventkit.reaction.reactor import Reactor
from eventkit.store.base import EventStore
from eventkit.store.records import RecordedEvent
from eventkit.store.subjects import entity_id_of, subject_matches


class _RecordingScheduler:
    def __init__(self) -> None:
        self.deadlines: list[Deadline] = []

    async def schedule(self, deadline: Deadline) -> None:
        if all(d.event_id != deadline.event_id for d in self.deadlines):  # like Nats-Msg-Id
            self.deadlines.append(deadline)


class ReactorScenario:
    """Delivers a store's events to one reactor, in stream order, as its runner would."""

    def __init__(self, reactor: Reactor, store: EventStore) -> None:
        self.reactor = reactor
        self.store = store
        self._scheduler = _RecordingScheduler()
        self._fired: set[str] = set()
        self.delivered = 0
        """The stream sequence up to which events were delivered."""

    @property
    def scheduled(self) -> list[Deadline]:
        """Deadlines asked for and not yet fired."""
        return [d for d in self._scheduler.deadlines if d.event_id not in self._fired]

    async def _deliver(self, record: RecordedEvent[Any]) -> None:
        ctx = ReactorContext(self.reactor.name, record, self.store, self._scheduler)
        await self.reactor.handle(record, ctx)

    def _follows(self, subject: str) -> bool:
        filters = self.reactor.subjects or [f"{self.store.stream}.>"]
        return any(subject_matches(f, subject) for f in filters)

    async def run(self) -> int:
        """Deliver every event stored since the last run; returns how many were handled."""
        handled = 0
        async for record in self.store.read_all(from_sequence=self.delivered + 1):
            self.delivered = record.sequence
            if self._follows(record.subject) and self.reactor.handles(record.event_type):
                await self._deliver(record)
                handled += 1
        return handled

    async def redeliver(self, sequence: int) -> None:
        """Deliver event ``sequence`` again (as after a crash before its ack)."""
        stored = await self.store.get(sequence)
        if stored is None:
            raise AssertionError(f"no event at sequence {sequence}")
        await self._deliver(self.store.codec.decode(stored))

    async def fire_deadlines(self, now: datetime | None = None) -> int:
        """Deliver the deadlines due at ``now`` (default: all of them); returns how many."""
        fired = 0
        for d in self.scheduled:
            if now is not None and d.due > now:
                continue
            self._fired.add(d.event_id)
            if d.about is not None and await self._forgotten(d.about):
                continue  # a deadline about a forgotten subject is never delivered
            subject = d.about or f"{self.store.stream}._eventkit.reactor.{d.reactor}.due"
            record = RecordedEvent(
                event=d.event,
                subject=subject,
                entity_id=entity_id_of(subject) if d.about else "due",
                sequence=0,
                time=d.due.astimezone(UTC),
                event_id=d.event_id,
                event_type=d.event.event_type,
                schema_version=d.event.schema_version,
                headers=dict(d.headers),
            )
            await self._deliver(record)
            fired += 1
        return fired

    async def _forgotten(self, subject: str) -> bool:
        try:
            await self.store.last_sequence(subject)
        except ForgottenError:
            return True
        return False


__all__ = ["ReactorScenario"]
