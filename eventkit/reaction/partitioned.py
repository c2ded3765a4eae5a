"""The runner of a partitioned reactor (``partitions = N``, ``ordered = "subject"``): any number
of processes share its partitions, each partition handled in stream order by one worker at a
time.

::

    runner = ReactorRunner(Payments(), store)     # a PartitionedReactorRunner: one per process
    await runner.run()

Each partition ``i`` has a durable consumer of its own, ``eventkit_reactor_<name>~p<i>``, over
the whole stream, in a pinned-client priority group. Which worker pulls which
partition is decided by membership (heartbeats in the workers bucket,
:mod:`eventkit.runtime.membership`) and rendezvous hashing (:mod:`eventkit.runtime.partitions`);
the pin of the partition's consumer keeps a second puller (a worker that has not yet seen a
join, a frozen one) from receiving anything. A worker runs one :class:`ReactorRunner` per
partition it holds; its consumer acknowledges on arrival what is not on the reactor's subjects
or is of another partition (its hash differs), and hands the partition's own events to the
handlers, one key after another.

- A worker that joins: the members recompute the owners; the worker that gives a partition
  up stops pulling it, lets its pull requests end, handles what it received, and then unpins
  the consumer (only if the pin is still its own), so the new owner starts at once where it
  ended.
- A worker that stops cleanly does the same for all its partitions.
- A worker that dies or freezes: its heartbeat stops, so the others compute new owners within
  ``lease_ttl``. The new owner finds the consumer with events unacknowledged and waits until
  they are back or for :func:`~eventkit.reaction.consumer.pin_timeout` (the ack wait and a
  pull request's life) before it pulls (a frozen worker's pin lapses after the same time); the
  server then redelivers them before anything later, and the new owner puts them back in
  stream order (:mod:`eventkit.reaction.takeover`).
  A frozen worker that wakes may finish a handler whose event was meanwhile handled again by
  the new owner: delivery is at least once (outputs through ``ctx`` carry derived ids; other
  side effects should be idempotent, keyed by the event id).

Each partition's consumer reads the whole stream: N partitions cost N reads of it (each
passed-over message is one acknowledgement). Measured (``bench/reactor_partitions.py``), one
whole-stream consumer costs the server far less per message than one filtered on the
reactor's subjects, down to a small share of the stream. Size N to a few times the number of
workers you expect (4-16), not to hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from eventkit.errors import ForgottenError
from eventkit.observability.worker import WorkerObserver
from eventkit.reaction.consumer import (
    PIN_GROUP,
    PULL_EXPIRES,
    ensure_consumer,
    partition_consumer_name,
    pin_timeout,
    unpin,
)
from eventkit.reaction.handling import ReactorStats
from eventkit.reaction.reactor import Reactor
from eventkit.reaction.runner import ReactorRunner
from eventkit.reaction.schedule import DUE_SUBJECT, due_subject
from eventkit.reaction.takeover import TakeoverConsumer
from eventkit.runtime.membership import keep_membership, refresh_membership
from eventkit.runtime.partitions import default_key, owned_by, partition_of
from eventkit.runtime.port import Consumer, Delivery
from eventkit.runtime.presence import Presence
from eventkit.runtime.pulling import Puller, parse_reply
from eventkit.store import protocol as p
from eventkit.store.nats.delivery import Delivered
from eventkit.store.records import time_from_ns
from eventkit.store.subjects import subject_matches

log = logging.getLogger("eventkit.reaction")

DEFAULT_TTL = 5.0
"""Seconds after its last heartbeat a worker's partitions go to the others."""
_KEY_CACHE = 100_000


class Keyer:
    """The partition of a delivered message (see :meth:`Reactor.partition_key`)."""

    def __init__(self, reactor: Reactor, store: Any) -> None:
        self.reactor = reactor
        self.store = store
        self.partitions = reactor.partitions
        self.keyed = reactor.keys_partitions()
        self.due = due_subject(store.stream, reactor.name)
        self.filters = reactor.filters(store.stream)
        self._by_subject: dict[str, int] = {}

    def key(
        self, subject: str, headers: dict[str, str] | None, data: bytes, sequence: int, ns: int
    ) -> str:
        headers = headers or {}
        if subject == self.due:  # a deadline: the partition of the subject it concerns
            return default_key(headers.get(DUE_SUBJECT, subject))
        if self.keyed:
            event_type = headers.get(p.EVENT_TYPE)
            if event_type is not None and self.reactor.handles(event_type):
                try:
                    rec = self.store.codec.decode_parts(
                        subject, sequence, time_from_ns(ns), headers, data
                    )
                except (ForgottenError, ValueError, KeyError, TypeError):
                    pass  # handled (or parked) in the partition of its subject
                else:
                    return str(self.reactor.partition_key(rec))
        return default_key(subject)

    def of_message(self, msg: Delivered) -> int:
        """The partition of ``msg``; -1 when it is not on the reactor's subjects (the
        consumer takes the whole stream)."""
        found = self._by_subject.get(msg.subject)
        if found is None:
            if len(self._by_subject) >= _KEY_CACHE:
                self._by_subject.clear()
            if not any(subject_matches(f, msg.subject) for f in self.filters):
                found = -1
            elif msg.subject == self.due or self.keyed:
                found = -2  # keyed by content: not cached
            else:
                found = partition_of(default_key(msg.subject), self.partitions)
            self._by_subject[msg.subject] = found
        if found != -2:
            return found
        sequence, _, ns, _ = parse_reply(msg.reply)
        key = self.key(msg.subject, msg.headers, msg.data, sequence, ns)
        return partition_of(key, self.partitions)

    def of_delivery(self, d: Delivery) -> str:
        return self.key(d.subject, d.headers, d.data, d.sequence, d.time_ns)


class _Quiet(WorkerObserver):
    """A partition's observer: figures shared with the worker's, state reported by it."""

    def state(self, new: str, **facts: Any) -> None:
        pass


class PartitionWorker(ReactorRunner):
    """Handles one partition of a partitioned reactor (run by :class:`PartitionedReactorRunner`)."""

    def __init__(self, owner: PartitionedReactorRunner, partition: int) -> None:
        self.partition = partition
        self.keyer = owner.keyer
        reactor, store = owner.reactor, owner.store
        puller = Puller(
            store,
            reactor.name,
            reactor.filters(store.stream),
            batch=max(1, min(owner.concurrency, 256)),  # (of its own events: others pass)
            ack="explicit",
            expires=PULL_EXPIRES,
            name=partition_consumer_name(reactor.name, partition),
            setup=self._setup,
            group=PIN_GROUP,
            passes_over=lambda msg: self.keyer.of_message(msg) != partition,
        )
        self.puller = puller
        self.takeover = TakeoverConsumer(puller)
        consumer: Consumer = self.takeover
        super().__init__(
            reactor,
            store,
            concurrency=owner.concurrency,
            consumer=consumer,
            backoff_scale=owner.backoff_scale,
            heartbeat=False,
        )
        self.stats = owner.stats
        self.obs = _Quiet("reactor", self.name, log)

    async def _setup(self) -> int:
        """Create or check the partition's consumer; if the previous owner left events
        unacknowledged (it died, or froze), wait until they are back or a pin timeout passed:
        by then the server redelivers them before any later event."""
        pending = await ensure_consumer(self.reactor, self.store, self.partition)
        name = partition_consumer_name(self.name, self.partition)
        wait = pin_timeout(self.reactor)
        deadline = time.monotonic() + wait
        told = False
        while not self.stopping and time.monotonic() < deadline:
            info = await self.store.js.consumer_info(self.store.stream, name)
            if not info.num_ack_pending:
                break
            if not told:
                told = True
                log.info(
                    "%s: partition %d: %d events of its previous owner unacknowledged; waiting "
                    "up to %.0fs for them to come back first",
                    self.name,
                    self.partition,
                    info.num_ack_pending,
                    wait,
                )
            await asyncio.sleep(0.25)
        info = await self.store.js.consumer_info(self.store.stream, name)
        if info.num_ack_pending and info.delivered:
            # they come back before anything later, but not in order: sort them
            self.takeover.gate(int(info.delivered.stream_seq or 0))
        return pending

    def _order_key(self, d: Delivery) -> str:
        return self.keyer.of_delivery(d) if self.keyer.keyed else d.subject

    async def _drain(self) -> None:
        # no new requests, and the ones out end; then everything received is handled here
        # (a nak would race the unpin that follows: the server takes acknowledgements and API
        # requests on separate queues, so the next owner could get later events first)
        await self.consumer.halt_pulling(PULL_EXPIRES + 1.0)
        for d in self.consumer.take_buffered():
            self._spawn(d)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class PartitionedReactorRunner(ReactorRunner, partitioned=True):
    """Runs this process's share of a partitioned reactor (see the module's docstring)."""

    def __init__(
        self,
        reactor: Reactor,
        store: Any,
        *,
        concurrency: int | None = None,
        backoff_scale: float = 1.0,
        lease_ttl: float | None = None,
        **_: Any,
    ) -> None:
        self.reactor = reactor
        self.store = store
        self.name = reactor.name
        self.concurrency = int(concurrency or reactor.concurrency)
        self.backoff_scale = backoff_scale
        self.ttl = float(lease_ttl or DEFAULT_TTL)
        self.stats = ReactorStats()
        self.state = "starting"
        self.obs = WorkerObserver("reactor", self.name, log)
        self.keyer = Keyer(reactor, store)
        self._beating = Presence(store, reactor.name)
        self.member = self._beating.worker
        self.members: list[str] | None = None
        self._stopping = asyncio.Event()
        self._parts: dict[int, tuple[PartitionWorker, asyncio.Task[Any]]] = {}
        self._finished: set[int] = set()
        self._once = False
        self.last_failure: BaseException | None = None

    @property
    def held(self) -> list[int]:
        """The partitions this worker holds now."""
        return sorted(self._parts)

    def figures(self) -> dict[str, Any]:
        return {"handled": self.stats.handled, "in_flight": self.stats.in_flight}

    def _beat(self) -> dict[str, Any]:
        return {**self.figures(), "held": self.held}

    def stop(self) -> None:
        self._stopping.set()
        for worker, _ in self._parts.values():
            worker.stop()

    def wanted(self) -> set[int]:
        if self.members is None:
            return set()
        return owned_by(self.member, self.reactor.partitions, self.members)

    async def _run(self, *, once: bool) -> ReactorStats:
        end = 0
        if once:
            ends = [
                await self.store.last_sequence(f) for f in self.reactor.filters(self.store.stream)
            ]
            end = max(ends, default=0)
        self._once = once
        self._finished.clear()
        await refresh_membership(self.store, self, self._beating, self._beat)
        keeper = asyncio.create_task(keep_membership(self.store, self, self._beating, self._beat))
        self.obs.state("running")
        try:
            while not self.stopping:
                self._raise_failed()
                wanted = self.wanted()
                gone = sorted(set(self._parts) - wanted)
                if gone:
                    await asyncio.gather(*(self._give_back(part) for part in gone))
                for part in sorted(wanted - set(self._parts) - self._finished):
                    self._take(part)
                self.state = "running" if self._parts else "standby"
                self.obs.state(self.state)
                if once and await self._all_drained(end):
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(1.0, self.ttl / 4))
        finally:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
            if self._parts:
                gone = list(self._parts)
                await asyncio.gather(*(self._give_back(p) for p in gone), return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._beating.leave()
            self.state = "stopped"
            self.obs.state("stopped")
        return self.stats

    def _take(self, part: int) -> None:
        worker = PartitionWorker(self, part)
        task = asyncio.ensure_future(worker.catch_up() if self._once else worker.run())
        self._parts[part] = (worker, task)
        log.info("%s: %s takes partition %d", self.name, self.member, part)

    async def _give_back(self, part: int) -> None:
        """Stop handling ``part``: its pull requests end, what it received is handled, and the
        pin goes (the next owner starts at once)."""
        worker, task = self._parts.pop(part)
        worker.stop()
        try:
            await task
        except Exception as e:  # its events come back to the next owner after the ack wait
            log.warning("%s: partition %d stopped with %r", self.name, part, e)
        try:
            await unpin(self.store, self.name, part, worker.puller.pin)
        except Exception as e:  # the pin lapses by itself after the pin timeout
            log.info("%s: partition %d not unpinned: %r", self.name, part, e)
        if not self.stopping:
            log.info("%s: %s gave partition %d back", self.name, self.member, part)

    def _raise_failed(self) -> None:
        """A partition's runner that ended on its own: done (``--once``) or failed."""
        for part, (_, task) in list(self._parts.items()):
            if not task.done():
                continue
            del self._parts[part]
            error = task.exception()
            if error is not None:
                raise error
            if self._once:
                self._finished.add(part)

    async def _all_drained(self, end: int) -> bool:
        js = self.store.js
        for part in range(self.reactor.partitions):
            name = partition_consumer_name(self.name, part)
            try:
                info = await js.consumer_info(self.store.stream, name)
            except Exception:
                return False
            delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
            if info.num_pending or info.num_ack_pending or delivered < end:
                return False
        return True


__all__ = ["DEFAULT_TTL", "Keyer", "PartitionWorker", "PartitionedReactorRunner"]
