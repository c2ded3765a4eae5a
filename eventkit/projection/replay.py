"""Replay a projector from the start, a sequence or a time, never silently double-applying.

::

    plan = await plan_replay(Balances(), store, engine, from_time=parse_when("2h"))
    print(plan.describe())
    result = await replay(plan, Balances(), store, engine)

From the start, ``reset(db)`` empties the read model in the same transaction that sets the
checkpoint to 0. From a point, the projector must implement ``rewind(to_sequence, db)`` (called
in that transaction) or declare ``idempotent = True``; otherwise nothing changes and
:class:`ProjectionError` says what to do.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints as cps
from eventkit.projection import letters
from eventkit.projection import partition_rows as pr
from eventkit.projection import passedover as pov
from eventkit.projection.projector import Projector
from eventkit.projection.runner import (
    DEFAULT_LEASE_TTL,
    ProjectionRunner,
    RunResult,
    default_owner,
    runner_for,
)
from eventkit.projection.sql import read_transaction, transaction
from eventkit.projection.targets import label
from eventkit.store.positions import (
    first_at_or_after_time,
    pending_after,
)

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
CLOCK_SKEW = timedelta(seconds=2)


def parse_when(
    text: str,
    now: datetime | None = None,
    *,
    everything: str = "--from-start to replay everything",
) -> datetime:
    """``--from-time``: ISO 8601 with a zone, or relative ``90s``/``15m``/``2h``/``3d`` ago.
    ``everything`` names the way to reach back to the start (said when a time is out of range).

    Example::

        parse_when("2026-03-01T09:00:00+01:00"); parse_when("15m")
    """
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text)
    if m:
        try:
            return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
        except OverflowError:
            raise ConfigError(
                f"relative time {text!r} reaches before year 1: give a smaller one, or {everything}"
            ) from None
    raw = text.strip()
    try:
        when = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ConfigError(
            f"invalid time {text!r}: give ISO 8601 with a zone (2026-03-01T09:00:00Z, "
            f"2026-03-01T10:00:00+01:00) or a relative time (90s, 15m, 2h, 3d)"
        ) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ConfigError(
            f"time {text!r} has no time zone; add one (Z or +01:00) so it means one instant"
        )
    if when > now + CLOCK_SKEW:
        raise ConfigError(f"time {text!r} is in the future (now is {now.isoformat()})")
    return when.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay will do, checked before anything changes."""

    projector: str
    mode: Literal["start", "sequence", "time"]
    start_sequence: int
    method: Literal["reset", "rewind", "idempotent"]
    checkpoint: int
    stream_last_sequence: int
    events: int
    from_time: datetime | None = None
    shown: str = ""
    """How messages name the projector (``balances (version 2)`` for a blue/green version)."""

    def describe(self) -> str:
        how = {
            "reset": "empty the read model (reset) and apply every event again",
            "rewind": f"rewind the read model to sequence {self.start_sequence - 1}",
            "idempotent": "re-apply events over the current rows (the projector is idempotent)",
        }[self.method]
        at = f" (first event at or after {self.from_time.isoformat()})" if self.from_time else ""
        return (
            f"replay {self.shown or self.projector!r} from sequence {self.start_sequence}{at}: "
            f"{how}; {self.events} messages on its subjects to go through (checkpoint now "
            f"{self.checkpoint}, stream end {self.stream_last_sequence})"
        )


def _method(projector: Projector, mode: str) -> Literal["reset", "rewind", "idempotent"]:
    if mode == "start":
        if type(projector).reset is Projector.reset:
            raise ProjectionError(
                f"projector {projector.name!r} has no reset(db): implement it (delete its rows) "
                f"so it can be replayed from the start"
            )
        return "reset"
    if projector.declares_rewind():
        return "rewind"
    if projector.idempotent:
        return "idempotent"
    raise ProjectionError(
        f"projector {projector.name!r} is not idempotent and has no rewind(to_sequence, db): "
        f"a replay from a point would apply events twice. Set idempotent = True if applying an "
        f"event twice is harmless, implement rewind, or replay --from-start"
    )


def check_replay_args(
    from_start: bool, from_sequence: int | None, from_time: datetime | None
) -> None:
    """The checks of a replay's start that need no store: exactly one start, a sequence >= 1."""
    given = sum([bool(from_start), from_sequence is not None, from_time is not None])
    if given != 1:
        raise ConfigError("give exactly one of --from-start, --from-seq N, --from-time T")
    if from_sequence is not None:
        if isinstance(from_sequence, bool) or not isinstance(from_sequence, int):
            raise ConfigError(f"--from-seq must be a whole number, got {from_sequence!r}")
        if from_sequence < 1:
            raise ConfigError(f"--from-seq must be 1 or more, got {from_sequence}")


async def plan_replay(
    projector: Projector,
    store: Any,
    engine: Engine,
    *,
    from_start: bool = False,
    from_sequence: int | None = None,
    from_time: datetime | None = None,
) -> ReplayPlan:
    """Validate a replay and work out where it starts; changes nothing."""
    check_replay_args(from_start, from_sequence, from_time)
    last = await store.last_sequence()
    with read_transaction(engine) as db:
        checkpoint = cps.get_checkpoint(db, projector.name).last_sequence
        parts = pr.rows(db, projector.name) if projector.partitions > 1 else []
    if parts:  # the slowest partition (the projector's row has it as of the last rebalance)
        checkpoint = min(r.last_sequence for r in parts)
    mode: Literal["start", "sequence", "time"]
    if from_start:
        mode, start = "start", 1
    elif from_sequence is not None:
        mode = "sequence"
        if from_sequence > last:
            raise ConfigError(
                f"--from-seq {from_sequence} is beyond the end of stream {store.stream!r} "
                f"(last sequence {last})"
            )
        start = from_sequence
    else:
        assert from_time is not None
        mode = "time"
        if from_time.tzinfo is None:
            raise ConfigError("--from-time needs a time zone (e.g. 2026-03-01T09:00:00Z)")
        if from_time > datetime.now(UTC) + CLOCK_SKEW:
            raise ConfigError(f"--from-time {from_time.isoformat()} is in the future")
        found = await first_at_or_after_time(store, from_time)
        if found is None:
            raise ConfigError(
                f"no event in stream {store.stream!r} at or after {from_time.isoformat()}: "
                f"nothing to replay"
            )
        start = found.sequence
    if mode != "start" and start > checkpoint + 1:
        raise ConfigError(
            f"projector {label(projector)!r} has only applied up to sequence {checkpoint}; a "
            f"replay from {start} would skip events. Run it to catch up instead (eventkit run)"
        )
    method = _method(projector, mode)
    events = await pending_after(store, projector.filters(store.stream), start - 1)
    return ReplayPlan(
        projector=projector.name,
        mode=mode,
        start_sequence=start,
        method=method,
        checkpoint=checkpoint,
        stream_last_sequence=last,
        events=events,
        from_time=from_time if mode == "time" else None,
        shown=label(projector),
    )


async def replay(
    plan: ReplayPlan,
    projector: Projector,
    store: Any,
    engine: Engine,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    runners: list[ProjectionRunner] | None = None,
    **runner_options: Any,
) -> RunResult:
    """Carry out ``plan``: reset or rewind with the new checkpoint in one transaction, then
    catch up to the stream's end. Fails (changing nothing) while another runner holds the lease.
    ``runners`` (a list) receives the runner once it exists: its ``stop()`` ends the replay after
    the batch in flight, with the lease released (the checkpoint says where it stopped).

    Example::

        plan = await plan_replay(p, store, engine, from_start=True)
        result = await replay(plan, p, store, engine)
    """
    if plan.projector != projector.name:
        raise ConfigError(f"plan is for {plan.projector!r}, not {projector.name!r}")
    owner = runner_options.pop("owner", None) or f"replay:{default_owner()}"
    ttl = float(runner_options.pop("lease_ttl", DEFAULT_LEASE_TTL))

    def rewind_and_set() -> None:
        with transaction(engine) as db:
            if projector.partitions > 1 and pr.rows(db, projector.name):
                held = pr.hold_all(db, projector.name, owner, ttl)
                if held:
                    raise ProjectionError(
                        f"projector {projector.name!r} is being run by {held}; stop its "
                        f"workers before replaying (nothing was changed)"
                    )
            elif not cps.try_acquire_lease(db, projector.name, owner, ttl):
                lease = cps.get_lease(db, projector.name)
                holder = lease.owner if lease else "another runner"
                raise ProjectionError(
                    f"projector {projector.name!r} is being run by {holder}; stop its workers "
                    f"before replaying (nothing was changed)"
                )
            to = plan.start_sequence - 1
            cps.touch_rows(db, projector.name)
            if plan.method == "reset":
                projector.reset(db)
                pov.reset(db, projector.name)
            elif plan.method == "rewind":
                projector.rewind(to, db)
            cps.save_checkpoint(
                db, projector.name, last_sequence=to, state="running", last_error=None
            )
            letters.settle_for_replay(db, projector.name, plan.start_sequence)
            pr.rewind_all(db, projector.name, to)

    await asyncio.to_thread(rewind_and_set)

    def progress(runner: ProjectionRunner, _n: int) -> None:
        if on_progress is not None:
            on_progress(runner.processed + runner.passed_over, plan.events)

    runner = runner_for(
        projector,
        store,
        engine,
        owner=owner,
        lease_ttl=ttl,
        lease_wait=0,
        on_batch=progress,
        **runner_options,
    )
    if runners is not None:
        runners.append(runner)
    return await runner.catch_up()


__all__ = ["ReplayPlan", "parse_when", "plan_replay", "replay"]
