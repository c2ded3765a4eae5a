"""The projection runner: a durable consumer feeding one SQL transaction per batch.

::

    engine = make_engine("sqlite:///app.db")
    upgrade(engine)
    result = await ProjectionRunner(Balances(), store, engine).catch_up()   # to the stream's end
    await run_projectors(app, store, engine, once=False)                    # live until stop()

Per batch, one transaction holds the read-model writes, the checkpoint update and the lease
check, so a crash at any instant leaves the read model exactly at its checkpoint. Messages at or
below the checkpoint are skipped; types the projector does not handle are passed over by their
``Eventkit-Type`` header without decoding; events whose subject was forgotten (crypto-shredded)
are passed over. While one batch commits in a worker thread, the next one is already arriving.

Only one runner per projector applies at a time: it holds a SQL lease (``eventkit_leases``),
renews it, and verifies it inside every batch transaction; a standby takes over once it expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from eventkit.errors import ConfigError, ProjectionError, StoreUnavailableError
from eventkit.observability.worker import WorkerObserver
from eventkit.projection.applying import BatchApplier
from eventkit.projection.committing import BatchTransaction, Restart
from eventkit.projection.deployment import deployed
from eventkit.projection.failures import BadEvents
from eventkit.projection.feed import Feed, feed_filters, prepare_keys
from eventkit.projection.lease import LeaseLost, RunnerLease
from eventkit.projection.pauses import Pauses
from eventkit.projection.progress import (
    DEFAULT_LEASE_TTL,
    Progress,
    RunnerState,
    RunResult,
    Shown,
    default_owner,
)
from eventkit.projection.projector import Projector, SystemEvents
from eventkit.projection.registry import Retired
from eventkit.projection.rewound import halted_on_rewind
from eventkit.projection.rowcache import row_cache_of
from eventkit.projection.sql import ended_as_idle, is_outage
from eventkit.projection.targets import base_name, label
from eventkit.runtime.pulling import AckMode, Puller

log = logging.getLogger("eventkit.projection")


class ProjectionRunner:
    """Runs one projector from its SQL checkpoint.

    ``catch_up()`` applies everything up to the stream's end as it was when called, then
    returns; ``run()`` goes on live until :meth:`stop`. ``owner`` names this runner in the lease
    (default: host:pid:random); ``lease_ttl`` is how long a dead runner blocks a standby.

    Example::

        runner = ProjectionRunner(Balances(), store, engine)
        result = await runner.catch_up()
        print(result.checkpoint)
    """

    checkpoint = Shown[int]()
    processed = Shown[int]()
    passed_over = Shown[int]()
    parked = Shown[int]()
    lag = Shown[int]()
    state = Shown[RunnerState]()
    halted_error = Shown[str | None]()

    _partitioned: ClassVar[type[ProjectionRunner] | None] = None
    """The runner of a projector with ``partitions > 1``: the subclass declared with
    ``partitioned=True`` (:class:`~eventkit.projection.partitioned.PartitionedRunner`, loaded
    with the package)."""

    def __init_subclass__(cls, *, partitioned: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if partitioned:
            ProjectionRunner._partitioned = cls

    def __new__(cls, projector: Projector, *args: Any, **kwargs: Any) -> ProjectionRunner:
        """A projector with ``partitions > 1`` gets this process's share of it
        (:class:`~eventkit.projection.partitioned.PartitionedRunner`), however it is made: a
        plain runner would stand by for ever behind the partitions' hold on its lease."""
        if cls is ProjectionRunner and getattr(projector, "partitions", 1) > 1:
            if ProjectionRunner._partitioned is None:  # (eventkit.projection loads it first)
                raise ConfigError(
                    f"projector {projector.name!r} has partitions but the partitioned runner "
                    f"is not loaded: import eventkit.projection.partitioned"
                )
            return super().__new__(ProjectionRunner._partitioned)
        return super().__new__(cls)

    def __init__(
        self,
        projector: Projector,
        store: Any,
        engine: Engine,
        *,
        owner: str | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        lease_wait: float | None = None,
        batch_size: int | None = None,
        ack: AckMode = "none",
        idle_timeout: float = 0.25,
        on_batch: Callable[[ProjectionRunner, int], None] | None = None,
        system: SystemEvents | None = None,
    ) -> None:
        if lease_ttl <= 0:
            raise ConfigError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        # blue/green: a higher version's slot now (its name is needed); version 1 is recorded
        # and checked when it first takes the lease, off the event loop
        self._undeployed = getattr(projector, "version", 1) == 1
        self._held = False
        if not self._undeployed:
            projector = deployed(projector, engine, store.stream)
        self.projector = projector
        self.store = store
        self.engine = engine
        self.owner = owner or default_owner()
        self.lease_ttl = float(lease_ttl)
        self.lease_wait = lease_wait
        self.batch_size = int(batch_size or projector.batch_size)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        self.ack: AckMode = ack
        self.idle_timeout = idle_timeout
        self.on_batch = on_batch
        self.filters = feed_filters(projector, store.stream, system)
        self.system = system
        self.progress = Progress()
        """Where the runner stands (``runner.checkpoint`` and the like are its)."""
        self._stopping = asyncio.Event()
        self._lease = RunnerLease(engine, projector.name, self.owner, self.lease_ttl)
        self.obs = WorkerObserver("projector", label(projector), log)
        self._applier = BatchApplier(projector, store, system, self.obs)
        self._pauses = Pauses(projector.name, self._stopping)
        self._feed = Feed(
            Puller(store, projector.name, self.filters, batch=self.batch_size, ack=ack, cover=True),
            self.filters,
        )
        self._rows = row_cache_of(projector)
        self._fresh = False
        self._transaction = BatchTransaction(
            projector, store, self._lease, self._applier, self._rows, self.progress, self.obs
        )
        self._bad_events = BadEvents(self._transaction)

    kind = "projector"

    @property
    def name(self) -> str:
        return self.projector.name

    @property
    def _puller(self) -> Puller:
        """The runner's consumer (the feed's)."""
        return self._feed.puller

    def transient(self, error: BaseException) -> bool:
        """A database outage (for the supervisor: set the runner up again after a wait)."""
        return isinstance(error, DBAPIError) and is_outage(error)

    def stop(self) -> None:
        """Ask the runner to stop after the batch in hand (thread-safe from a signal handler)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- entry points -----------------------------------------------------------------------
    async def catch_up(self) -> RunResult:
        """Apply every event up to the stream's end at call time, then release and return."""
        return await self._run(once=True)

    async def run(self) -> RunResult:
        """Catch up, then apply new events as they arrive until :meth:`stop` (or a halt)."""
        return await self._run(once=False)

    async def _run(self, *, once: bool) -> RunResult:
        end: int | None = None
        if once:
            end = await self.store.last_sequence()
        wait = self.lease_wait
        self.obs.state("starting")
        if wait is None and once:
            wait = self.lease_ttl * 3
        try:
            while not self.stopping:
                if not await self._acquire(wait):
                    break
                keeper = asyncio.create_task(self._lease.keep())
                self.obs.lease_taken(self.owner, self.checkpoint)
                try:
                    finished = await self._consume(end)
                except Retired as e:
                    self.progress.retire(e)
                    break
                except LeaseLost:
                    self.obs.lease_lost(self.owner)
                    if once:
                        raise ProjectionError(
                            f"projector {label(self.projector)!r}: another runner took the "
                            f"lease while catching up; it carries on from the checkpoint"
                        ) from None
                    continue
                except (DBAPIError, StoreUnavailableError) as e:
                    if isinstance(e, DBAPIError) and ended_as_idle(e):
                        if await self._bad_events.ended_as_idle():
                            break  # halted
                        continue
                    if once or (isinstance(e, DBAPIError) and not is_outage(e)):
                        raise
                    await self._wait_out(e)
                    continue
                finally:
                    keeper.cancel()
                    with contextlib.suppress(BaseException):
                        await keeper
                    await self._puller.stop()
                    if not self._lease.lost:
                        with contextlib.suppress(Exception):
                            await asyncio.to_thread(self._lease.release)
                if finished:
                    break
        finally:
            if self.state != "halted":
                self.state = "stopped"
            self.obs.state(self.state, checkpoint=self.checkpoint)
        return self._result()

    def _result(self) -> RunResult:
        """What this run did, as :meth:`run` returns it."""
        return self.progress.result(
            base_name(self.projector), getattr(self.projector, "version", 1)
        )

    def _halt_with(self, message: str) -> None:
        """Halt the projector, ``message`` on its checkpoint row."""
        self._transaction.halt_with(message)

    # -- lease ------------------------------------------------------------------------------
    def _try_acquire(self) -> bool:
        if self._undeployed:
            deployed(self.projector, self.engine, self.store.stream)
            self._undeployed = False
        taken = self._lease.try_acquire()
        if taken is None:
            return False
        if self._rows is not None:
            self._rows.invalidate()  # another runner may have written the rows meanwhile
        self.checkpoint = taken.checkpoint
        self._transaction.clear_error = taken.had_error
        self._fresh = True  # the lease moved: delivery moves with it
        self._held = True
        return True

    async def _acquire(self, wait: float | None) -> bool:
        deadline = None if wait is None else time.monotonic() + wait
        while not self.stopping:
            try:
                acquired = await asyncio.to_thread(self._try_acquire)
            except Retired as e:
                if not self._held:
                    raise  # refused at its start: an error, not a stop
                self.progress.retire(e)
                return False
            except DBAPIError as e:
                if not is_outage(e):
                    raise
                await self._wait_out(e)
                continue
            if acquired:
                self._pauses.got_through()
                return True
            self.obs.state("standby")
            self.state = "standby"
            if deadline is not None and time.monotonic() >= deadline:
                holder = await asyncio.to_thread(self._lease.holder)
                raise ProjectionError(
                    f"projector {label(self.projector)!r} is being run by {holder}; stop that "
                    f"runner (or wait {self.lease_ttl:g}s after it died) and try again"
                )
            await self._pauses.sleep(min(1.0, self.lease_ttl / 4))
        return False

    async def _wait_out(self, error: BaseException) -> None:
        """Wait, with capped backoff, for the database or the store to answer again."""
        self.state = "waiting"
        await self._pauses.wait_out(error)

    # -- consuming --------------------------------------------------------------------------
    async def _consume(self, end: int | None) -> bool:
        """Apply batches until stopped or done; True when the runner should not go on."""
        while True:
            if await halted_on_rewind(self):
                return True
            if end is not None and self.checkpoint >= end:
                return True
            fresh, self._fresh = self._fresh, False
            self._applier.only = await self._feed.start(self.checkpoint, fresh=fresh)
            if end is not None and self._feed.pending_at_start == 0:
                return True
            self.state = "catching-up"
            self.obs.state("catching-up", checkpoint=self.checkpoint)
            try:
                return await self._batches(end)
            except Restart:
                log.warning("%s: repositioning the consumer at %d", self.name, self.checkpoint + 1)
                continue

    async def _between_batches(self) -> None:
        """Before each fetch (the partitioned runner rebalances here)."""

    async def _batches(self, end: int | None) -> bool:
        cipher = self.store.codec.cipher
        while not self.stopping:
            if self._lease.lost:
                raise LeaseLost
            await self._between_batches()
            msgs = await self._feed.take(self.batch_size, self.idle_timeout)
            if not msgs:
                if end is None:
                    self.state = "live"
                    self.lag = 0
                    self.obs.state("live", checkpoint=self.checkpoint)
                continue
            if cipher is not None:
                await prepare_keys(cipher, msgs, self.projector.handles, self._applier.only)
            items, reached_end = self._feed.split(msgs, end)  # per message: no thread hop
            if items:
                started = time.perf_counter()
                before = self.processed
                halted = await self._bad_events.commit(items)
                if halted:
                    return True
                last = items[-1]
                self.lag = last.pending
                self.obs.batch(
                    self.processed - before, last.sequence, last.timestamp_ns, last.pending, started
                )
                await self._puller.ack_all(last.msg)
                if self.on_batch is not None:
                    self.on_batch(self, len(items))
                if end is not None and last.pending == 0:
                    return True
            if reached_end:
                return True
        return True


def runner_for(
    projector: Projector, store: Any, engine: Engine, **options: Any
) -> ProjectionRunner:
    """The runner of one projector: a :class:`ProjectionRunner`, or for ``partitions > 1`` a
    :class:`~eventkit.projection.partitioned.PartitionedRunner` (this process's share)."""
    return ProjectionRunner(projector, store, engine, **options)  # (__new__ chooses)


async def run_projectors(
    app: Any,
    store: Any,
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    once: bool = True,
    runners: list[ProjectionRunner] | None = None,
    **options: Any,
) -> list[RunResult]:
    """Run the app's projectors (or those named) side by side; return how each ended.

    ``once=True`` catches each up to the stream's end and returns; ``once=False`` runs them live
    until each runner's ``stop()``. Pass ``runners`` (a list to fill) to watch or stop them.

    Example::

        results = await run_projectors(app, store, engine, ["balances"], once=True)
    """
    projectors = app.select(list(names or []))
    if "system" not in options and hasattr(app, "system_events"):
        options["system"] = app.system_events(store)
    made = [runner_for(pr, store, engine, **options) for pr in projectors]
    if runners is not None:
        runners.extend(made)
    coros = [r.catch_up() if once else r.run() for r in made]
    return list(await asyncio.gather(*coros))


__all__ = [
    "DEFAULT_LEASE_TTL",
    "ProjectionRunner",
    "RunResult",
    "default_owner",
    "run_projectors",
    "runner_for",
]
