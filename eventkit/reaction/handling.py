"""One delivery of a reactor: decode it, run the handler, settle it, or park it.

- success: ``ack``;
- a failure: ``nak`` with the next ``backoff`` delay (with ``ordered = "subject"`` or ack policy
  ``all``, retried in place: later events wait); the ``max_deliver``-th failure parks it;
- delivered more than ``max_deliver`` times (the worker running it died or froze past the ack
  wait): parked without running the handler again;
- its subject was forgotten (GDPR) before or while it was held: passed over, nothing written.

Parking writes the letter, then ``term``; a letter written while its subject is being forgotten
is erased again (forget leaves the marker before it erases letters, so one of the two sees the
other).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventkit.errors import EventkitError, ForgottenError
from eventkit.observability.worker import WorkerObserver
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.schedule import DUE_ID, DUE_SUBJECT, DUE_TYPE, RETRY_SEQUENCE, open_due
from eventkit.runtime.deadletters import DeadLetter, DeadLetterStore, now
from eventkit.runtime.port import Delivery
from eventkit.store.chain import ChainCheck
from eventkit.store.records import RecordedEvent, StoredMessage, time_from_ns
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SYSTEM, SYSTEM_TOKEN

log = logging.getLogger("eventkit.reaction")

DIED = "the worker stopped during the last attempt"


@dataclass(slots=True)
class ReactorStats:
    """What a reactor's runner did (:meth:`ReactorRunner.run` returns it)."""

    handled: int = 0
    failed: int = 0
    parked: int = 0
    passed_over: int = 0
    in_flight: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Holder(Protocol):
    """What handling a delivery reads of the runner that holds it
    (:class:`~eventkit.reaction.runner.ReactorRunner`)."""

    @property
    def reactor(self) -> Reactor: ...
    @property
    def store(self) -> Any: ...
    @property
    def name(self) -> str: ...
    @property
    def due_subject(self) -> str: ...
    @property
    def retry_subject(self) -> str: ...
    @property
    def letters(self) -> DeadLetterStore: ...
    @property
    def stats(self) -> ReactorStats: ...
    @property
    def obs(self) -> WorkerObserver: ...
    @property
    def scheduler(self) -> Any: ...
    @property
    def backoff_scale(self) -> float: ...

    last_failure: BaseException | None

    def current(self, d: Delivery) -> Delivery:
        """The newest copy of ``d`` the runner holds (the one to settle)."""
        ...


class Handling:
    """What :class:`~eventkit.reaction.runner.ReactorRunner` does with one delivery."""

    def __init__(self, runner: Holder) -> None:
        self.r = runner
        self.reactor = runner.reactor
        self.store = runner.store

    # -- what was delivered ---------------------------------------------------------------
    async def record(self, d: Delivery) -> tuple[RecordedEvent[Any] | None, str]:
        """The delivered event (a deadline or a retried letter resolved; None: pass it over)
        and the subject it is about."""
        headers = dict(d.headers or {})
        if d.subject == self.r.retry_subject:
            sequence = int(headers.get(RETRY_SEQUENCE, "0"))
            stored = await self.store.get(sequence)
            if stored is None:
                log.warning(
                    "%s: retried sequence %d is gone from the stream", self.r.name, sequence
                )
                await self.r.letters.remove(self.r.name, sequence)
                return None, d.subject
            if stored.subject == self.r.due_subject:
                return await self._due(stored), stored.subject
            return await self._decode(stored), stored.subject
        stored = StoredMessage(d.subject, d.sequence, time_from_ns(d.time_ns), headers, d.data)
        if d.subject == self.r.due_subject:
            return await self._due(stored), d.subject
        return await self._decode(stored), d.subject

    async def _due(self, stored: StoredMessage) -> RecordedEvent[Any] | None:
        if not hasattr(self.store, "last_message"):  # in memory: ReactorScenario checked it
            headers = dict(stored.headers)
            if DUE_TYPE not in headers:
                return None
            headers[EVENT_TYPE] = headers.pop(DUE_TYPE)
            headers[MSG_ID] = headers.get(DUE_ID, "")
            about = headers.get(DUE_SUBJECT, stored.subject)
            return await self._decode(
                StoredMessage(about, stored.sequence, stored.time, headers, stored.data)
            )
        opened = await open_due(self.store, stored)  # None: about a forgotten subject
        return None if opened is None else await self._decode(opened)

    async def _decode(self, stored: StoredMessage) -> RecordedEvent[Any] | None:
        if self.reactor.verify_chains:
            problem = ChainCheck(links=False).check(stored)
            if problem is not None:
                raise problem.error()
        event_type = stored.headers.get(EVENT_TYPE)
        if event_type is None:
            bound = self.reactor.foreign_class(stored.subject)
            if bound is None or SYSTEM in stored.headers:
                return None
            foreign: RecordedEvent[Any] = self.store.codec.decode_foreign(
                stored, bound, self.store.stream
            )
            return foreign
        if not self.reactor.handles(event_type):
            return None
        cipher = self.store.codec.cipher
        if cipher is not None and ENCRYPTION in stored.headers:
            await cipher.prepare([stored.subject], create=False)
        record: RecordedEvent[Any] = self.store.codec.decode(stored)
        return record

    async def forgotten(self, subject: str) -> bool:
        """Whether ``subject`` was forgotten (its erasure marker is there)."""
        if subject.startswith(f"{self.store.stream}.{SYSTEM_TOKEN}."):
            return False
        try:
            await self.store.last_sequence(subject)
        except ForgottenError:
            return True
        except EventkitError:
            return False
        return False

    # -- one delivery ---------------------------------------------------------------------
    def sequence_of(self, d: Delivery) -> int:
        """The stream sequence the delivery is about (a retry names the parked one)."""
        if d.subject == self.r.retry_subject:
            return int((d.headers or {}).get(RETRY_SEQUENCE, "0"))
        return d.sequence

    async def handle(self, d: Delivery) -> None:
        r = self.r
        reactor = self.reactor
        r.obs.delivered(d.sequence, d.time_ns, d.pending, d.deliveries)
        key = self.sequence_of(d)
        try:
            record, subject = await self.record(d)
        except ForgottenError:
            await self._pass_over(d)
            return
        except EventkitError as e:
            await self.park(d, key, d.subject, d.deliveries, e, "?")
            return
        if record is None:
            await self._pass_over(d)
            return
        if d.deliveries > reactor.max_deliver:
            # the worker running the last attempt died: park without running it again
            await self.park(d, key, subject, d.deliveries - 1, None, record.event_type)
            return
        attempt = d.deliveries
        r.stats.in_flight += 1
        try:
            while True:
                try:
                    await r.obs.handle(
                        reactor.handle,
                        record,
                        ReactorContext(r.name, record, self.store, r.scheduler),
                    )
                except Exception as e:
                    r.stats.failed += 1
                    r.last_failure = e
                    log.warning(
                        "%s: seq %d (%s) failed on attempt %d: %r",
                        r.name,
                        key,
                        record.event_type,
                        attempt,
                        e,
                    )
                    if await self.forgotten(subject):
                        await self._pass_over(d)
                        return
                    if attempt >= reactor.max_deliver or reactor.ack_policy == "none":
                        await self.park(d, key, subject, attempt, e, record.event_type)
                        return
                    delay = _delay(reactor.backoff, attempt) * r.backoff_scale
                    if reactor.ordered == "subject" or reactor.ack_policy == "all":
                        # in place: later events of the subject wait; under ack "all" an ack
                        # of a later event would acknowledge this one, so nothing goes first
                        await asyncio.sleep(delay)
                        attempt += 1
                        continue
                    await r.current(d).nak(delay)
                    return
                r.stats.handled += 1
                if key != d.sequence:
                    await r.letters.remove(r.name, key)
                await r.current(d).ack()
                return
        finally:
            r.stats.in_flight -= 1

    async def _pass_over(self, d: Delivery) -> None:
        self.r.stats.passed_over += 1
        await self.r.current(d).ack()

    async def park(
        self,
        d: Delivery,
        sequence: int,
        subject: str,
        attempts: int,
        error: BaseException | None,
        event_type: str,
    ) -> None:
        r = self.r
        if await self.forgotten(subject):
            await self._pass_over(d)
            return
        text = f"{type(error).__name__}: {error}"[:2000] if error is not None else DIED
        letter = DeadLetter(r.name, sequence, subject, event_type, text, attempts, now())
        await r.letters.park(letter)
        if await self.forgotten(subject):  # forgotten meanwhile: forget may have run before
            await r.letters.remove(r.name, sequence)
            await self._pass_over(d)
            return
        r.stats.parked += 1
        r.obs.parked(sequence, event_type, attempts, text)
        await r.current(d).term()


def _delay(backoff: list[float], attempt: int) -> float:
    if not backoff:
        return 0.0
    return float(backoff[min(attempt - 1, len(backoff) - 1)])


__all__ = ["DIED", "Handling"]
