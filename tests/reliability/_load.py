"""Append load with bookkeeping: which appends were acknowledged, and what the stream holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eventkit.errors import EventkitError, StoreUnavailableError
from eventkit.store.base import EventStore
from eventkit.store.wire_constants import MSG_ID

from ._domain import RelAdded


@dataclass
class Append:
    event_id: str
    subject: str
    amount: int
    started: float
    ended: float = 0.0
    sequence: int | None = None
    error: str | None = None


@dataclass
class LoadLog:
    """Every append attempted, with its outcome."""

    appends: list[Append] = field(default_factory=list)

    @property
    def acked(self) -> list[Append]:
        return [a for a in self.appends if a.sequence is not None]

    @property
    def failed(self) -> list[Append]:
        return [a for a in self.appends if a.sequence is None]

    def resume_after(self, t: float) -> float | None:
        """Seconds from ``t`` to the first acknowledgement of an append started after ``t``."""
        ends = [a.ended for a in self.acked if a.started >= t]
        return min(ends) - t if ends else None

    def max_latency(self) -> float:
        return max((a.ended - a.started for a in self.acked), default=0.0)


async def writer(
    store: EventStore, log: LoadLog, stop: asyncio.Event, *, prefix: str, subjects: int = 5
) -> None:
    """Append one event at a time (fresh event id each) until ``stop`` is set."""
    i = 0
    while not stop.is_set():
        subject = f"{store.stream}.load.{prefix}-{i % subjects}"
        a = Append(str(uuid.uuid4()), subject, i + 1, time.monotonic())
        log.appends.append(a)
        try:
            a.sequence = await store.append(
                subject, [RelAdded(amount=a.amount)], event_ids=[a.event_id]
            )
        except StoreUnavailableError as e:
            a.error = f"unavailable: {e}"
        except EventkitError as e:
            a.error = f"{type(e).__name__}: {e}"
        a.ended = time.monotonic()
        i += 1


@dataclass
class StreamCheck:
    acked: int
    stored: int
    lost: list[str]
    duplicated: list[str]
    unacked_stored: int


async def check_stream(store: EventStore, log: LoadLog) -> StreamCheck:
    """Read the whole stream back and compare with the acknowledged appends."""
    ids: Counter[str] = Counter()
    async for m in store.read_raw():
        ids[m.headers.get(MSG_ID, "")] += 1
    acked = {a.event_id for a in log.acked}
    lost = sorted(i for i in acked if ids[i] == 0)
    dup = sorted(i for i, n in ids.items() if n > 1)
    unacked_stored = sum(1 for a in log.failed if ids[a.event_id] > 0)
    return StreamCheck(len(acked), sum(ids.values()), lost, dup, unacked_stored)


def fold_totals(records: Any) -> dict[str, int]:
    """The read model a projector should reach: the total per subject."""
    out: dict[str, int] = {}
    for r in records:
        if isinstance(r.event, RelAdded):
            out[r.subject] = out.get(r.subject, 0) + r.event.amount
    return out
