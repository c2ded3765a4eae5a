"""The reactor runner: every process running a reactor pulls from its one durable consumer.

::

    runner = ReactorRunner(LargeWithdrawals(), store)
    await runner.run()          # until stop() (SIGTERM): what it holds is finished or handed back
    await runner.catch_up()     # until nothing is pending and nothing unacknowledged

It runs over the consumer port (:mod:`eventkit.runtime.port`): a JetStream durable consumer,
or the in-memory consumer over an ``InMemoryEventStore`` (``ReactorScenario``). What one
delivery goes through is :mod:`eventkit.reaction.handling`. ``eventkit run`` runs it under the
supervisor (:mod:`eventkit.runtime.supervisor`), which sets it up again after a transient fault.

Every delivery the worker holds, from its arrival to its ack (buffered, waiting behind its
subject's earlier events, running), gets an in-progress ack every ``ack_wait / 3``, so the
server never hands a second copy to anyone while it is held; a copy that comes back anyway (a
leader change) joins the one held, it never runs twice at once.

Stopping: deliveries not started are handed back (``nak``) to the other workers; under ack
policy ``none`` (nothing can be handed back) the runner asks for nothing more, waits for its
pull requests to end and handles everything it received before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar

from eventkit.observability.worker import WorkerObserver
from eventkit.reaction.consumer import PIN_GROUP, ensure_consumer
from eventkit.reaction.handling import Handling, ReactorStats
from eventkit.reaction.reactor import Reactor, consumer_name
from eventkit.reaction.rewound import RewindWatch
from eventkit.reaction.schedule import JetStreamScheduler, due_subject, retry_subject
from eventkit.runtime.deadletters import DeadLetterStore
from eventkit.runtime.memory import MemoryConsumer
from eventkit.runtime.parked import ParkedLetters
from eventkit.runtime.port import Consumer, Delivery, JetStreamConsumer
from eventkit.runtime.presence import Presence
from eventkit.runtime.pulling import Puller
from eventkit.runtime.services import memory_parked

log = logging.getLogger("eventkit.reaction")

DRAIN_PULLS = 2.0
"""Pull requests' expiry under ack policy none (a stop waits for them to end)."""


class ReactorRunner:
    """Runs one reactor in this process, sharing its consumer with every other worker.

    ``consumer``, ``letters`` and ``scheduler`` default to the store's kind: JetStream (durable
    consumer, parked-letters bucket, server message schedules) or in-memory. ``heartbeat``:
    write this worker's presence (a partition's runner does not: its worker does);
    ``lease_ttl``: used by partitioned reactors only (seconds a dead worker keeps its
    partitions)."""

    kind = "reactor"
    _partitioned: ClassVar[type[ReactorRunner] | None] = None
    """The runner of reactors with ``partitions > 1``: the subclass declared with
    ``partitioned=True`` (:class:`~eventkit.reaction.partitioned.PartitionedReactorRunner`,
    loaded by ``eventkit.reaction``)."""

    def __init_subclass__(cls, *, partitioned: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if partitioned:
            ReactorRunner._partitioned = cls

    def __new__(cls, reactor: Reactor, *args: Any, **kwargs: Any) -> ReactorRunner:
        """A partitioned reactor's runner is the partitioned one, however it is made (in
        memory, ``ReactorScenario``: the plain one, which keeps each subject's order)."""
        store = args[0] if args else kwargs.get("store")
        if cls is ReactorRunner and reactor.partitions > 1 and getattr(store, "js", None):
            if ReactorRunner._partitioned is None:  # (eventkit.reaction loads it first)
                raise RuntimeError(
                    f"reactor {reactor.name!r} has partitions but the partitioned runner is not "
                    f"loaded: import eventkit.reaction.partitioned"
                )
            return super().__new__(ReactorRunner._partitioned)
        return super().__new__(cls)

    def __init__(
        self,
        reactor: Reactor,
        store: Any,
        *,
        concurrency: int | None = None,
        consumer: Consumer | None = None,
        letters: DeadLetterStore | None = None,
        scheduler: Any = None,
        backoff_scale: float = 1.0,
        heartbeat: bool = True,
        lease_ttl: float | None = None,
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.name = reactor.name
        self.concurrency = int(concurrency or reactor.concurrency)
        if reactor.ack_policy == "all":
            self.concurrency = 1  # an ack acknowledges everything before it: one at a time
        self.stats = ReactorStats()
        self.state = "starting"
        self.obs = WorkerObserver("reactor", self.name, log)
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tails: dict[str, asyncio.Task[None]] = {}
        self._held: dict[int, Delivery] = {}
        """Deliveries taken and not settled, by stream sequence: the newest copy of each."""
        self.due_subject = due_subject(store.stream, self.name)
        self.retry_subject = retry_subject(store.stream, self.name)
        jetstream = getattr(store, "js", None) is not None
        self.consumer: Consumer = consumer or (
            self._jetstream_consumer() if jetstream else self._memory_consumer()
        )
        self.letters: DeadLetterStore = letters or (
            ParkedLetters(store) if jetstream else memory_parked(store)
        )
        self.scheduler = scheduler or (JetStreamScheduler(store) if jetstream else None)
        self._presence = jetstream and heartbeat
        self._handling = Handling(self)
        self._watch = RewindWatch(self) if jetstream else None
        """The stream's "went back" check (a stream that lost what was handled stops it)."""
        self.backoff_scale = backoff_scale
        """Scales the ``backoff`` delays (``ReactorScenario``: 0, retries at once)."""
        self.last_failure: BaseException | None = None

    def _jetstream_consumer(self) -> Consumer:
        reactor = self.reactor
        ack_none = reactor.ack_policy == "none"
        pinned = reactor.ordered == "subject" or reactor.ack_policy == "all"
        puller = Puller(
            self.store,
            self.name,
            reactor.filters(self.store.stream),
            batch=max(1, min(self.concurrency, 256)),
            ack="none" if ack_none else "explicit",
            expires=DRAIN_PULLS if ack_none else 30.0,
            name=consumer_name(self.name),
            setup=lambda: ensure_consumer(reactor, self.store),
            group=PIN_GROUP if pinned else None,
        )
        return JetStreamConsumer(puller)

    def _memory_consumer(self) -> Consumer:
        r = self.reactor
        return MemoryConsumer(
            self.store,
            consumer_name(self.name),
            r.filters(self.store.stream),
            ack="none" if r.ack_policy == "none" else "explicit",
            ack_wait=r.ack_wait,
        )

    def stop(self) -> None:
        """Stop pulling; what it holds is finished (or handed back) before :meth:`run` returns."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> ReactorStats:
        return await self._run(once=False)

    async def catch_up(self) -> ReactorStats:
        """Handle until the consumer has nothing pending and nothing unacknowledged."""
        return await self._run(once=True)

    def figures(self) -> dict[str, int]:
        return {"handled": self.stats.handled, "in_flight": self.stats.in_flight}

    def current(self, d: Delivery) -> Delivery:
        """The newest copy of ``d`` this worker holds (the one to settle)."""
        return self._held.get(d.sequence, d)

    async def _run(self, *, once: bool) -> ReactorStats:
        end = 0
        if once:
            ends = [await self.store.last_sequence(f) for f in self.consumer.filters]
            end = max(ends, default=0)
        if self._watch is not None:
            await self._watch.start()  # before pulling: a stream that went back stops it here
        await self.consumer.start()
        self.state = "running"
        self.obs.state("running")
        keeper = asyncio.ensure_future(self._keep_held())
        presence = Presence(self.store, self.name) if self._presence else None
        heartbeat = asyncio.ensure_future(presence.keep(self.figures)) if presence else None
        try:
            while not self.stopping:
                free = self.concurrency - len(self._tasks)
                if free <= 0:
                    await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                    continue
                got = await self.consumer.take(free, 0.2)
                for d in got:
                    self._spawn(d)
                if got:
                    continue
                if not self._tasks:  # nothing came within the wait, nothing in hand: caught up
                    self.obs.state("live", checkpoint=self.obs.figures.checkpoint)
                if not once:
                    continue
                if self._tasks:
                    await asyncio.wait(set(self._tasks), timeout=0.2)
                    continue
                if await self.consumer.drained(end):
                    break
        except asyncio.CancelledError:
            for task in self._tasks:  # cancelled, not stopped: nothing waits for the handlers
                task.cancel()
            raise
        finally:
            try:
                await self._drain()
            finally:
                keeper.cancel()
                if heartbeat is not None:
                    heartbeat.cancel()
                await self.consumer.stop()
                if presence is not None:
                    await presence.leave()
                if self._watch is not None:
                    await self._watch.stop()
                self.state = "stopped"
                self.obs.state("stopped", checkpoint=self.obs.figures.checkpoint)
        if self._watch is not None:
            self._watch.raise_if_rewound()
        return self.stats

    async def _drain(self) -> None:
        """Finish what is running; hand back what was not started (ack policy none: handle it,
        since nothing handed back comes again)."""
        if self.consumer.ack == "none":
            await self.consumer.halt_pulling(DRAIN_PULLS + 1.0)
            for d in self.consumer.take_buffered():
                self._spawn(d)
        else:
            for d in self.consumer.take_buffered():
                try:
                    await d.nak()
                except Exception as e:  # the server went away: it comes back after ack_wait
                    log.debug("%s: hand-back of seq %d failed: %r", self.name, d.sequence, e)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, d: Delivery) -> None:
        if self._watch is not None:
            self._watch.saw(d)
        held = self._held.get(d.sequence)
        self._held[d.sequence] = d
        if held is not None:
            return  # a second copy of what runs: it settles the newest copy, runs once
        prior: asyncio.Task[None] | None = None
        ordered = self.reactor.ordered == "subject"
        key = self._order_key(d) if ordered else ""
        if ordered:
            prior = self._tails.get(key)
        task = asyncio.ensure_future(self._one(d, prior))
        self._tasks.add(task)
        if ordered:
            self._tails[key] = task
        task.add_done_callback(self._done)

    def _order_key(self, d: Delivery) -> str:
        """What ``ordered = "subject"`` runs one after another: the subject's events."""
        return d.subject

    async def _one(self, d: Delivery, prior: asyncio.Task[None] | None) -> None:
        try:
            if prior is not None:
                await asyncio.wait([prior])
            await self._handling.handle(d)
        except Exception as e:  # settling failed (the server went away): it comes back
            log.warning("%s: seq %d not settled: %r", self.name, d.sequence, e)
            with contextlib.suppress(Exception):
                await self.current(d).nak(1.0)
        finally:
            self._held.pop(d.sequence, None)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        for key, tail in list(self._tails.items()):
            if tail is task:
                del self._tails[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: %r", self.name, task.exception())

    async def _keep_held(self) -> None:
        """Everything held, from its delivery to its ack, keeps its ack deadline."""
        if self.reactor.ack_policy == "none":
            return
        period = self.reactor.ack_wait / 3
        while True:
            await asyncio.sleep(period)
            started = time.monotonic()
            for d in [*self._held.values(), *self.consumer.buffered()]:
                try:
                    await d.in_progress()
                except Exception as e:
                    log.debug("%s: in-progress ack of seq %d failed: %r", self.name, d.sequence, e)
            if time.monotonic() - started > period:
                log.warning("%s: in-progress acks took longer than ack_wait / 3", self.name)


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
