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
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nats.aio.msg import Msg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from eventkit.errors import ConfigError, ForgottenError, ProjectionError, StoreUnavailableError
from eventkit.projection import checkpoints as cps
from eventkit.projection import passedover as pov
from eventkit.projection.bluegreen import deployed
from eventkit.projection.projector import Projector, SystemEvents
from eventkit.projection.redaction import halt_message
from eventkit.projection.sql import bound_waits, is_outage, read_transaction, transaction
from eventkit.store import protocol as p
from eventkit.store.consumer import AckMode, Puller, parse_reply
from eventkit.store.erasure import is_marker
from eventkit.store.records import StoredMessage, time_from_ns
from eventkit.store.subjects import subject_matches

log = logging.getLogger("eventkit.projection")

RunnerState = Literal["starting", "standby", "waiting", "catching-up", "live", "halted", "stopped"]

DEFAULT_LEASE_TTL = 5.0


OUTAGE_DELAY_CAP = 5.0
"""Longest wait between tries while the database (or NATS) does not answer."""


_HINTS = {
    "foreign": ": messages without Eventkit-Type; bind their subjects with foreign_events",
    "forgotten": ": their data keys were shredded",
}


def _eventkits_own(subject: str, headers: dict[str, str], stream: str) -> bool:
    """eventkit's own messages that are not events (notices, deadlines, reactor requests)."""
    return (
        p.SYSTEM in headers
        or "Eventkit-Due-Type" in headers
        or subject.startswith(p.system_prefix(stream))
    )


def default_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a runner ended: its checkpoint, how many messages it committed, whether it halted."""

    projector: str
    checkpoint: int
    processed: int
    halted: bool = False
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    sequence: int
    timestamp_ns: int
    pending: int
    msg: Msg


class _BadEvent(Exception):
    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class _BadBulk(Exception):
    """A projector's ``apply_many`` failed on a run of events: find the bad one singly."""


class _LeaseLost(Exception):
    pass


class _Restart(Exception):
    """The consumer's delivery and the SQL checkpoint disagree: reposition the consumer."""


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{type(error).__name__}: {text}"[:2000]


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
        projector = deployed(projector, engine)  # blue/green: the slot of this version
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
        self.filters = projector.filters(store.stream)
        self._bulk = projector.applies_in_bulk()
        self.system = system
        if system is not None:
            self.filters += [
                s
                for s in system.subjects(store.stream)
                if not any(subject_matches(f, s) for f in self.filters)
            ]
        self.state: RunnerState = "starting"
        self.checkpoint = 0
        self.processed = 0
        self.lag = 0
        self.halted_error: str | None = None
        self._stopping = asyncio.Event()
        self._lease_lost = False
        self._next_cseq = 1
        self._clear_error = False
        self._outage_delay = 0.0
        self._told: set[str] = set()
        self._puller = Puller(store, projector.name, self.filters, batch=self.batch_size, ack=ack)

    @property
    def name(self) -> str:
        return self.projector.name

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
        if wait is None and once:
            wait = self.lease_ttl * 3
        try:
            while not self.stopping:
                if not await self._acquire(wait):
                    break
                keeper = asyncio.create_task(self._keep_lease())
                try:
                    finished = await self._consume(end)
                except _LeaseLost:
                    log.warning("%s: lease lost to another runner; standing by", self.name)
                    if once:
                        raise ProjectionError(
                            f"projector {self.name!r}: another runner took the lease while "
                            f"catching up; it carries on from the checkpoint"
                        ) from None
                    continue
                except (DBAPIError, StoreUnavailableError) as e:
                    if once or (isinstance(e, DBAPIError) and not is_outage(e)):
                        raise
                    await self._wait_out(e)
                    continue
                finally:
                    keeper.cancel()
                    with contextlib.suppress(BaseException):
                        await keeper
                    await self._puller.stop()
                    if not self._lease_lost:
                        with contextlib.suppress(Exception):
                            await asyncio.to_thread(self._release)
                if finished:
                    break
        finally:
            if self.state != "halted":
                self.state = "stopped"
        return RunResult(
            self.name,
            self.checkpoint,
            self.processed,
            halted=self.state == "halted",
            error=self.halted_error,
        )

    # -- lease ------------------------------------------------------------------------------
    def _try_acquire(self) -> bool:
        with transaction(self.engine) as db:
            bound_waits(db, self.lease_ttl)
            if not cps.try_acquire_lease(db, self.name, self.owner, self.lease_ttl):
                return False
            cp = cps.get_checkpoint(db, self.name)
            if cp.updated_at is None:
                cps.save_checkpoint(db, self.name, last_sequence=0, state="running")
            elif cp.state == "halted":
                log.warning("%s: was halted (%s); retrying", self.name, cp.last_error)
                cps.save_checkpoint(db, self.name, last_sequence=cp.last_sequence, state="running")
            self._clear_error = cp.last_error is not None
            self.checkpoint = cp.last_sequence
        return True

    async def _acquire(self, wait: float | None) -> bool:
        deadline = None if wait is None else time.monotonic() + wait
        self._lease_lost = False
        while not self.stopping:
            try:
                acquired = await asyncio.to_thread(self._try_acquire)
            except DBAPIError as e:
                if not is_outage(e):
                    raise
                await self._wait_out(e)
                continue
            if acquired:
                self._outage_delay = 0.0
                return True
            if self.state != "standby":
                log.info("%s: standing by (another runner holds the lease)", self.name)
            self.state = "standby"
            if deadline is not None and time.monotonic() >= deadline:
                lease = await asyncio.to_thread(self._lease)
                holder = lease.owner if lease else "another runner"
                raise ProjectionError(
                    f"projector {self.name!r} is being run by {holder}; stop that runner "
                    f"(or wait {self.lease_ttl:g}s after it died) and try again"
                )
            await self._sleep(min(1.0, self.lease_ttl / 4))
        return False

    async def _wait_out(self, error: BaseException) -> None:
        """Wait, with capped backoff, for the database or the store to answer again."""
        self._outage_delay = min(max(self._outage_delay * 2, 0.25), OUTAGE_DELAY_CAP)
        what = "the database" if isinstance(error, DBAPIError) else "NATS"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        log.warning(
            "%s: waiting for %s (%s); trying again in %.1fs",
            self.name,
            what,
            first_line[:200],
            self._outage_delay,
        )
        self.state = "waiting"
        await self._sleep(self._outage_delay)

    def _lease(self) -> cps.Lease | None:
        with read_transaction(self.engine) as db:
            return cps.get_lease(db, self.name)

    def _renew(self) -> bool:
        with transaction(self.engine) as db:
            return cps.renew_lease(db, self.name, self.owner, self.lease_ttl)

    def _release(self) -> None:
        with transaction(self.engine) as db:
            cps.release_lease(db, self.name, self.owner)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                held = await asyncio.to_thread(self._renew)
            except DBAPIError as e:
                log.warning("%s: cannot renew lease: %s", self.name, e)
                continue
            if not held:
                self._lease_lost = True
                return

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- consuming --------------------------------------------------------------------------
    async def _consume(self, end: int | None) -> bool:
        """Apply batches until stopped or done; True when the runner should not go on."""
        while True:
            if end is not None and self.checkpoint >= end:
                return True
            await self._puller.start(self.checkpoint + 1)
            self._next_cseq = 1
            if end is not None and self._puller.pending_at_start == 0:
                return True
            self.state = "catching-up"
            try:
                return await self._batches(end)
            except _Restart:
                log.warning("%s: repositioning the consumer at %d", self.name, self.checkpoint + 1)
                continue

    async def _batches(self, end: int | None) -> bool:
        cipher = self.store.codec.cipher
        while not self.stopping:
            if self._lease_lost:
                raise _LeaseLost
            msgs = await self._puller.take(self.batch_size, self.idle_timeout)
            if not msgs:
                if end is None:
                    self.state = "live"
                    self.lag = 0
                continue
            if cipher is not None:
                await self._prepare_keys(cipher, msgs)
            items, reached_end = await asyncio.to_thread(self._parse, msgs, end)
            if items:
                halted = await self._commit(items)
                if halted:
                    return True
                last = items[-1]
                self.lag = last.pending
                await self._puller.ack_all(last.msg)
                if self.on_batch is not None:
                    self.on_batch(self, len(items))
                if end is not None and last.pending == 0:
                    return True
            if reached_end:
                return True
        return True

    async def _prepare_keys(self, cipher: Any, msgs: list[Msg]) -> None:
        subjects = {
            m.subject
            for m in msgs
            if m.headers
            and p.ENCRYPTION in m.headers
            and self.projector.handles(m.headers.get(p.EVENT_TYPE, ""))
        }
        if subjects:
            with contextlib.suppress(ForgottenError):
                await cipher.prepare(sorted(subjects), create=False)

    def _parse(self, msgs: list[Msg], end: int | None) -> tuple[list[_Item], bool]:
        items: list[_Item] = []
        expected = self._next_cseq
        for m in msgs:
            sseq, cseq, ts, pending = parse_reply(m.reply)
            if cseq != expected:
                # someone else took deliveries (a stale runner, a lost pull): start over from SQL
                raise _Restart
            expected += 1
            if end is not None and sseq > end:
                self._next_cseq = expected
                return items, True
            items.append(_Item(sseq, ts, pending, m))
        self._next_cseq = expected
        return items, False

    async def _commit(self, items: Sequence[_Item]) -> bool:
        """Commit ``items``; on a bad event split, retry and halt or park. True when halted."""
        while items:
            try:
                await asyncio.to_thread(self._apply, items)
                return False
            except _BadBulk:
                for item in items:  # the slow path: one transaction per event
                    if await self._commit([item]):
                        return True
                return False
            except _BadEvent as bad:
                if bad.index > 0:
                    await asyncio.to_thread(self._apply, items[: bad.index])
                item = items[bad.index]
                error = await self._retry(item, bad.error)
                if error is None:
                    items = items[bad.index + 1 :]
                    continue
                if self.projector.on_error == "park":
                    await asyncio.to_thread(self._park, item, error)
                    items = items[bad.index + 1 :]
                    continue
                await asyncio.to_thread(self._halt, item, error)
                return True
        return False

    async def _retry(self, item: _Item, error: BaseException) -> BaseException | None:
        """Retry one event with backoff; the last error, or None once it applied."""
        for attempt in range(self.projector.max_retries):
            await asyncio.sleep(self.projector.retry_backoff * (2**attempt))
            try:
                await asyncio.to_thread(self._apply, [item])
                return None
            except _BadEvent as bad:
                error = bad.error
        return error

    def _apply(self, items: Sequence[_Item]) -> None:
        """One transaction: verify the lease, apply the items, move the checkpoint."""
        projector = self.projector
        handles = projector.handles
        decode = self.store.codec.decode
        system = self.system
        name = self.name
        bulk: list[tuple[int, Any]] | None = [] if self._bulk else None

        def flush(db: Session) -> None:
            if not bulk:
                return
            try:
                projector.apply_many([record for _, record in bulk], db)
            except Exception as e:
                if is_outage(e):
                    raise
                if len(bulk) == 1:
                    raise _BadEvent(bulk[0][0], e) from e
                raise _BadBulk from e
            bulk.clear()

        skipped: dict[str, tuple[int, int]] = {}
        foreign = self.store.codec.decode_foreign

        def passed(reason: str, sequence: int) -> None:
            n, _ = skipped.get(reason, (0, 0))
            skipped[reason] = (n + 1, sequence)
            if reason not in self._told:
                self._told.add(reason)
                log.warning(
                    "%s: passing over %s messages (first at seq %d; counted in eventkit status)%s",
                    name,
                    reason,
                    sequence,
                    _HINTS.get(reason, ""),
                )

        with self._fenced() as db:
            current = cps.get_checkpoint(db, name).last_sequence
            if current != self.checkpoint:
                self.checkpoint = current
                raise _Restart
            for i, item in enumerate(items):
                if item.sequence <= current:
                    continue
                msg = item.msg
                headers = msg.headers or {}
                event_type = headers.get(p.EVENT_TYPE)
                stored = StoredMessage(
                    msg.subject, item.sequence, time_from_ns(item.timestamp_ns), headers, msg.data
                )
                try:
                    if event_type is None:
                        bound = projector.foreign_class(msg.subject)
                        if is_marker(headers):  # the subject was forgotten (here or elsewhere)
                            flush(db)
                            projector.forget(msg.subject, db)
                            continue
                        if system is not None and system.handles(msg.subject):
                            flush(db)
                            system.apply(projector, stored, db)
                            continue
                        if bound is None:
                            if not _eventkits_own(msg.subject, headers, self.store.stream):
                                passed(pov.FOREIGN, item.sequence)
                            continue
                        record = foreign(stored, bound, self.store.stream)
                    elif not handles(event_type):
                        passed(pov.UNHANDLED, item.sequence)
                        continue
                    else:
                        record = decode(stored)
                except ForgottenError:
                    passed(pov.FORGOTTEN, item.sequence)
                    continue
                except Exception as e:
                    if is_outage(e):
                        raise  # the database is out of reach: not this event's fault
                    raise _BadEvent(i, e) from e
                if bulk is not None:
                    bulk.append((i, record))
                    continue
                try:
                    projector.apply(record, db)
                except Exception as e:
                    if is_outage(e):
                        raise  # the database is out of reach: not this event's fault
                    raise _BadEvent(i, e) from e
            flush(db)
            if skipped:
                pov.record(db, name, skipped)
            last = items[-1]
            if last.sequence > current:
                extra: dict[str, Any] = {}
                if self._clear_error:
                    extra["last_error"] = None
                cps.save_checkpoint(
                    db,
                    name,
                    last_sequence=last.sequence,
                    last_event_time=time_from_ns(last.timestamp_ns),
                    **extra,
                )
        if items[-1].sequence > self.checkpoint:
            self.checkpoint = items[-1].sequence
            self._clear_error = False
        self.processed += len(items)

    def _failure(self, item: _Item, error: BaseException) -> tuple[str, str]:
        event_type = (item.msg.headers or {}).get(p.EVENT_TYPE, "?")
        return event_type, _describe(error)

    @contextlib.contextmanager
    def _fenced(self) -> Iterator[Session]:
        """A transaction that commits only while this runner holds the lease (renewed inside
        it); ``_LeaseLost`` otherwise, with nothing written."""
        with transaction(self.engine) as db:
            bound_waits(db, self.lease_ttl)
            if not cps.renew_lease(db, self.name, self.owner, self.lease_ttl):
                self._lease_lost = True
                raise _LeaseLost
            yield db

    def _park(self, item: _Item, error: BaseException) -> None:
        event_type, text = self._failure(item, error)
        log.error("%s: parked seq %d (%s): %s", self.name, item.sequence, event_type, text)
        with self._fenced() as db:
            cps.park(
                db,
                self.name,
                sequence=item.sequence,
                subject=item.msg.subject,
                event_type=event_type,
                error=text,
                attempts=1 + self.projector.max_retries,
            )
            cps.save_checkpoint(
                db,
                self.name,
                last_sequence=item.sequence,
                last_event_time=time_from_ns(item.timestamp_ns),
            )
        self.checkpoint = item.sequence
        self.processed += 1

    def _halt(self, item: _Item, error: BaseException) -> None:
        event_type, text = self._failure(item, error)
        message = halt_message(item.sequence, event_type, item.msg.subject, text)
        log.error("%s: halted at %s", self.name, message)
        with self._fenced() as db:
            cps.set_state(db, self.name, "halted", message)
        self.state = "halted"
        self.halted_error = message


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
    made = [ProjectionRunner(pr, store, engine, **options) for pr in projectors]
    if runners is not None:
        runners.extend(made)
    coros = [r.catch_up() if once else r.run() for r in made]
    return list(await asyncio.gather(*coros))


__all__ = ["DEFAULT_LEASE_TTL", "ProjectionRunner", "RunResult", "default_owner", "run_projectors"]
