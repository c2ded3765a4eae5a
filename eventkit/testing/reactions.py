"""Reactors in unit tests: an ``InMemoryEventStore``, no server, the real runner.

::

    store = InMemoryEventStore(stream="bank")
    await Repository(store, Account).save(acct)            # given: events in the store
    test = ReactorScenario(LargeWithdrawals(), store)
    await test.run()                                      # when: the reactor handles them
    assert [r.event for r in await store.read("bank.alert.a-1")] == [AlertRaised(amount=20_000)]
    await test.redeliver(3)                               # a redelivery stores nothing twice
    assert test.scheduled[0].event == ReviewDue(account="a-1")
    await test.fire_deadlines()                           # deliver the deadlines that are due

The events go through the reactor's own runner (:class:`eventkit.reaction.ReactorRunner`) over
the in-memory consumer (:mod:`eventkit.runtime.memory`): the same decoding, derived ids,
retries and parking as on JetStream, but a failure is retried without the ``backoff`` waits.
A handler that keeps failing is parked after ``max_deliver`` attempts, like the runner does;
``run()`` then raises the handler's last exception (``raise_errors=False``: it does not, and
:attr:`parked` lists the letters).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventkit.errors import ForgottenError
from eventkit.reaction.context import Deadline
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner
from eventkit.reaction.schedule import DUE_ID, DUE_SUBJECT, DUE_TYPE, due_subject
from eventkit.runtime.deadletters import DeadLetter
from eventkit.runtime.memory import MemoryConsumer
from eventkit.runtime.port import Delivery
from eventkit.store.base import EventStore
from eventkit.store.wire_constants import EVENT_TYPE


class _RecordingScheduler:
    def __init__(self) -> None:
        self.deadlines: list[Deadline] = []

    async def schedule(self, deadline: Deadline) -> None:
        if all(d.event_id != deadline.event_id for d in self.deadlines):  # like Nats-Msg-Id
            self.deadlines.append(deadline)


class _Fired(Delivery):
    """A deadline the server would publish on the reactor's due subject."""

    __slots__ = ()

    async def _send(self, what: str, delay: float) -> None:
        return None


class ReactorScenario:
    """Runs one reactor's runner over a store's events, in stream order."""

    def __init__(self, reactor: Reactor, store: EventStore, *, raise_errors: bool = True) -> None:
        self.reactor = reactor
        self.store = store
        self.raise_errors = raise_errors
        self._scheduler = _RecordingScheduler()
        self._fired: set[str] = set()
        self.runner = ReactorRunner(reactor, store, scheduler=self._scheduler, backoff_scale=0.0)
        self.delivered = 0
        """The stream sequence up to which events were delivered."""

    @property
    def scheduled(self) -> list[Deadline]:
        """Deadlines asked for and not yet fired."""
        return [d for d in self._scheduler.deadlines if d.event_id not in self._fired]

    @property
    def parked(self) -> list[DeadLetter]:
        """The reactor's dead letters."""
        letters: Any = self.runner.letters
        return sorted(letters.letters.values(), key=lambda x: x.sequence)

    async def _drive(self) -> int:
        before = self.runner.stats.handled
        parked = self.runner.stats.parked
        self.runner = self._fresh()
        self.runner.stats.handled, self.runner.stats.parked = before, parked
        await self.runner.catch_up()
        self.delivered = await self.store.last_sequence()
        if self.raise_errors and self.runner.stats.parked > parked:
            failure = self.runner.last_failure
            if failure is not None:
                raise failure
            raise AssertionError(f"{self.runner.stats.parked - parked} event(s) were parked")
        return self.runner.stats.handled - before

    def _fresh(self) -> ReactorRunner:
        return ReactorRunner(
            self.reactor,
            self.store,
            scheduler=self._scheduler,
            backoff_scale=0.0,
            letters=self.runner.letters,
        )

    async def run(self) -> int:
        """Deliver every event stored since the last run; returns how many were handled."""
        return await self._drive()

    async def redeliver(self, sequence: int) -> None:
        """Deliver event ``sequence`` again (as after a crash before its ack)."""
        if await self.store.get(sequence) is None:
            raise AssertionError(f"no event at sequence {sequence}")
        consumer = self.runner.consumer
        assert isinstance(consumer, MemoryConsumer)
        consumer.redeliver(sequence)
        await self._drive()

    async def fire_deadlines(self, now: datetime | None = None) -> int:
        """Deliver the deadlines due at ``now`` (default: all of them); returns how many."""
        fired = 0
        subject = due_subject(self.store.stream, self.reactor.name)
        for d in self.scheduled:
            if now is not None and d.due > now:
                continue
            self._fired.add(d.event_id)
            about = getattr(d, "about", None)
            if about is not None and await self._forgotten(about):
                continue  # a deadline about a forgotten subject is never delivered
            headers, payload = self.store.codec.encode(about or subject, d.event, d.event_id)
            headers[DUE_TYPE] = headers.pop(EVENT_TYPE)
            headers[DUE_ID] = d.event_id
            if about is not None:
                headers[DUE_SUBJECT] = about
            headers.update(d.headers)
            delivery = _Fired(
                subject,
                payload,
                headers,
                0,
                0,
                int(d.due.astimezone(UTC).timestamp() * 1e9),
                0,
                1,
            )
            await self.runner._handling.handle(delivery)
            fired += 1
        return fired

    async def _forgotten(self, subject: str) -> bool:
        try:
            await self.store.last_sequence(subject)
        except ForgottenError:
            return True
        return False


__all__ = ["ReactorScenario"]
