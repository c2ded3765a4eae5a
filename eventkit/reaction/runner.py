"""The reactor runner: every process running a reactor pulls from its one durable consumer.

::

    runner = ReactorRunner(LargeWithdrawals(), store)
    await runner.run()          # until stop() (SIGTERM): in-flight handlers finish and ack first
    await runner.catch_up()     # until nothing is pending and nothing unacknowledged

Per message: the handler runs with a :class:`ReactorContext`; success acks; an exception naks
with the next ``backoff`` delay; on the ``max_deliver``-th failed delivery the event is parked
(a letter in the ``eventkit_<stream>_parked`` bucket, then ``+TERM``) and the reactor goes on.
While a handler runs, ``+WPI`` (in progress) is sent every ``ack_wait / 3`` so a slow handler
keeps its event instead of having it delivered to a second worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from eventkit.errors import EventkitError
from eventkit.observability.worker import WorkerObserver
from eventkit.reaction.consumer import PIN_GROUP, ensure_consumer
from eventkit.reaction.context import ReactorContext
from eventkit.reaction.reactor import Reactor, consumer_name
from eventkit.reaction.rewound import RewindWatch
from eventkit.reaction.schedule import (
    RETRY_SEQUENCE,
    JetStreamScheduler,
    due_subject,
    open_due,
    retry_subject,
)
from eventkit.store import protocol as p
from eventkit.store.chain import ChainCheck
from eventkit.store.consumer import Puller, delivered_count, parse_reply
from eventkit.store.nats.delivery import Delivered
from eventkit.store.parked import ParkedLetter, ParkedLetters, now
from eventkit.store.presence import Presence
from eventkit.store.records import RecordedEvent, StoredMessage, time_from_ns

log = logging.getLogger("eventkit.reaction")


@dataclass(slots=True)
class ReactorStats:
    handled: int = 0
    failed: int = 0
    parked: int = 0
    passed_over: int = 0
    in_flight: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ReactorRunner:
    """Runs one reactor in this process, sharing its consumer with every other worker."""

    def __init__(self, reactor: Reactor, store: Any, *, concurrency: int | None = None) -> None:
        self.reactor = reactor
        self.store = store
        self.name = reactor.name
        self.concurrency = int(concurrency or reactor.concurrency)
        if reactor.ack_policy == "all" or reactor.ordered == "subject":
            # ack all acknowledges everything before the acked message: one at a time
            self.concurrency = 1 if reactor.ack_policy == "all" else self.concurrency
        self.stats = ReactorStats()
        self._end = 0
        self.state = "starting"
        self.obs = WorkerObserver("reactor", self.name, log)
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(self.concurrency)
        self.letters = ParkedLetters(store)
        self.scheduler = JetStreamScheduler(store)
        self._due = due_subject(store.stream, self.name)
        self._retry = retry_subject(store.stream, self.name)
        batch = max(1, min(self.concurrency, 256))
        self._puller = Puller(
            store,
            self.name,
            reactor.filters(store.stream),
            batch=batch,
            ack="none" if reactor.ack_policy == "none" else "explicit",
            name=consumer_name(self.name),
            setup=lambda: ensure_consumer(reactor, store),
            group=PIN_GROUP if reactor.ordered == "subject" else None,
        )
        self._watch = RewindWatch(self)

    def stop(self) -> None:
        """Stop pulling; in-flight handlers finish (and ack) before :meth:`run` returns."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> ReactorStats:
        return await self._run(once=False)

    async def catch_up(self) -> ReactorStats:
        """Handle until the consumer has nothing pending and nothing unacknowledged."""
        return await self._run(once=True)

    async def _run(self, *, once: bool) -> ReactorStats:
        self._end = 0
        if once:
            ends = [await self.store.last_sequence(f) for f in self._puller.filters]
            self._end = max(ends, default=0)
        await self._watch.start()  # before pulling: a stream that went back stops it here
        await self._puller.start()
        self.state = "running"
        self.obs.state("running")
        idle_since: float | None = None
        waiting = asyncio.ensure_future(self._keep_buffered())
        presence = Presence(self.store, self.name)
        heartbeat = asyncio.ensure_future(presence.keep(self._figures))
        try:
            while not self.stopping:
                free = self.concurrency - len(self._tasks)
                if free <= 0:
                    await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                    continue
                msgs = await self._puller.take(free, 0.2)
                for m in msgs:
                    self._spawn(m)
                if msgs:
                    idle_since = None
                    continue
                if not self._tasks:  # nothing came within the wait, nothing in hand: caught up
                    self.obs.state("live", checkpoint=self.obs.figures.checkpoint)
                if not once:
                    continue
                if self._tasks:
                    await asyncio.wait(set(self._tasks), timeout=0.2)
                    continue
                idle_since = idle_since or time.monotonic()
                if await self._drained():
                    break
        finally:
            waiting.cancel()
            heartbeat.cancel()
            for m in self._puller.take_buffered():  # not started: hand back to other workers
                with contextlib.suppress(Exception):
                    await self._puller.acknowledge(m, b"-NAK")
            await self._puller.stop()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await presence.leave()
            await self._watch.stop()
            self.state = "stopped"
            self.obs.state("stopped", checkpoint=self.obs.figures.checkpoint)
        self._watch.raise_if_rewound()
        return self.stats

    def _figures(self) -> dict[str, int]:
        return {"handled": self.stats.handled, "in_flight": self.stats.in_flight}

    async def _drained(self) -> bool:
        info = await self.store.js.consumer_info(self.store.stream, consumer_name(self.name))
        delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
        return (
            int(info.num_pending or 0) == 0
            and int(info.num_ack_pending or 0) == 0
            and delivered >= self._end  # replay_policy original holds events back
        )

    def _spawn(self, msg: Delivered) -> None:
        self._watch.saw(msg)
        prior: asyncio.Task[None] | None = None
        if self.reactor.ordered == "subject":
            prior = self._tails.get(msg.subject)
        task = asyncio.ensure_future(self._handle(msg, prior))
        self._tasks.add(task)
        if self.reactor.ordered == "subject":
            self._tails[msg.subject] = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        for subject, tail in list(self._tails.items()):
            if tail is task:
                del self._tails[subject]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %s", self.name, task.exception())

    # -- one message ----------------------------------------------------------------------
    async def _record(self, msg: Delivered, sseq: int, ts: int) -> RecordedEvent[Any] | None:
        """The delivered event (a deadline or a retried letter resolved), None to pass over."""
        headers = dict(msg.headers or {})
        subject = msg.subject
        if subject == self._retry:
            sseq = int(headers.get(RETRY_SEQUENCE, "0"))
            stored = await self.store.get(sseq)
            if stored is None:
                log.warning("%s: retried sequence %d is gone from the stream", self.name, sseq)
                await self.letters.remove(self.name, sseq)
                return None
            if stored.subject == self._due:
                return await self._record_due(stored)
            return await self._decode(stored)
        stored = StoredMessage(subject, sseq, time_from_ns(ts), headers, msg.data)
        if subject == self._due:
            return await self._record_due(stored)
        return await self._decode(stored)

    async def _record_due(self, stored: StoredMessage) -> RecordedEvent[Any] | None:
        opened = await open_due(self.store, stored)  # None: about a forgotten subject
        return None if opened is None else await self._decode(opened)

    async def _decode(self, stored: StoredMessage) -> RecordedEvent[Any] | None:
        if self.reactor.verify_chains:
            problem = ChainCheck(links=False).check(stored)
            if problem is not None:
                raise problem.error()
        event_type = stored.headers.get(p.EVENT_TYPE)
        if event_type is None:
            bound = self.reactor.foreign_class(stored.subject)
            if bound is None or p.SYSTEM in stored.headers:
                return None
            foreign: RecordedEvent[Any] = self.store.codec.decode_foreign(
                stored, bound, self.store.stream
            )
            return foreign
        if not self.reactor.handles(event_type):
            return None
        cipher = self.store.codec.cipher
        if cipher is not None and p.ENCRYPTION in stored.headers:
            await cipher.prepare([stored.subject], create=False)
        record: RecordedEvent[Any] = self.store.codec.decode(stored)
        return record

    async def _handle(self, msg: Delivered, prior: asyncio.Task[None] | None) -> None:
        if prior is not None:
            with contextlib.suppress(BaseException):
                await prior
        sseq, _, ts, pending = parse_reply(msg.reply)
        deliveries = delivered_count(msg.reply)
        self.obs.delivered(sseq, ts, pending, deliveries)
        reactor = self.reactor
        key_seq = sseq
        if msg.subject == self._retry:
            key_seq = int((msg.headers or {}).get(RETRY_SEQUENCE, "0"))
        record: RecordedEvent[Any] | None = None
        try:
            record = await self._record(msg, sseq, ts)
        except EventkitError as e:
            await self._park(msg, key_seq, deliveries, e, "?")
            return
        if record is None:
            self.stats.passed_over += 1
            await self._puller.acknowledge(msg)
            return
        if deliveries > reactor.max_deliver:
            # the worker running the last attempt died: park without running it again
            await self._park(msg, key_seq, deliveries - 1, None, record.event_type)
            return
        attempt = deliveries
        self.stats.in_flight += 1
        keeper = asyncio.ensure_future(self._keep_in_progress(msg))
        try:
            while True:
                try:
                    await self.obs.handle(
                        reactor.handle,
                        record,
                        ReactorContext(self.name, record, self.store, self.scheduler),
                    )
                    self.stats.handled += 1
                    if key_seq != sseq:
                        await self.letters.remove(self.name, key_seq)
                    await self._puller.acknowledge(msg)
                    return
                except Exception as e:
                    self.stats.failed += 1
                    log.warning(
                        "%s: seq %d (%s) failed on attempt %d: %r",
                        self.name,
                        key_seq,
                        record.event_type,
                        attempt,
                        e,
                    )
                    if attempt >= reactor.max_deliver or reactor.ack_policy == "none":
                        await self._park(msg, key_seq, attempt, e, record.event_type)
                        return
                    delay = _delay(reactor.backoff, attempt)
                    if reactor.ordered == "subject" or reactor.ack_policy == "all":
                        # in place: later events of the subject wait; under ack "all" an ack of
                        # a later event would acknowledge this one, so nothing later goes first
                        await asyncio.sleep(delay)
                        attempt += 1
                        continue
                    body = b"-NAK " + json.dumps({"delay": int(delay * 1e9)}).encode()
                    await self._puller.acknowledge(msg, body)
                    return
        finally:
            keeper.cancel()
            self.stats.in_flight -= 1

    async def _keep_buffered(self) -> None:
        """Delivered events waiting for a free handler slot keep their ack deadline too."""
        if self.reactor.ack_policy == "none":
            return
        while True:
            await asyncio.sleep(self.reactor.ack_wait / 3)
            for m in self._puller.buffered():
                with contextlib.suppress(Exception):
                    await self._puller.acknowledge(m, b"+WPI")

    async def _keep_in_progress(self, msg: Delivered) -> None:
        while True:
            await asyncio.sleep(self.reactor.ack_wait / 3)
            with contextlib.suppress(Exception):
                await self._puller.acknowledge(msg, b"+WPI")

    async def _park(
        self,
        msg: Delivered,
        sequence: int,
        attempts: int,
        error: BaseException | None,
        event_type: str,
    ) -> None:
        text = (
            f"{type(error).__name__}: {error}"[:2000]
            if error is not None
            else "the worker stopped during the last attempt"
        )
        subject = msg.subject
        if subject == self._retry:
            stored = await self.store.get(sequence)
            subject = stored.subject if stored is not None else subject
        letter = ParkedLetter(self.name, sequence, subject, event_type, text, attempts, now())
        await self.letters.park(letter)
        self.stats.parked += 1
        self.obs.parked(sequence, event_type, attempts, text)
        await self._puller.acknowledge(msg, b"+TERM")


def _delay(backoff: list[float], attempt: int) -> float:
    if not backoff:
        return 0.0
    return float(backoff[min(attempt - 1, len(backoff) - 1)])


async def run_reactors(
    reactors: list[Reactor],
    store: Any,
    *,
    once: bool = True,
    runners: list[ReactorRunner] | None = None,
) -> list[ReactorStats]:
    """Run reactors side by side in this process (``once``: until each is drained)."""
    made = [ReactorRunner(r, store) for r in reactors]
    if runners is not None:
        runners.extend(made)
    return list(await asyncio.gather(*[r.catch_up() if once else r.run() for r in made]))


__all__ = ["ReactorRunner", "ReactorStats", "run_reactors"]
