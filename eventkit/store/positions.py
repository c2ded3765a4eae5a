"""Stream positions the runner and replay need: first event at a time, pending counts, ends."""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventkit.errors import StoreUnavailableError
from eventkit.store import protocol as p
from eventkit.store.jetstream import parse_nats_time


@dataclass(frozen=True, slots=True)
class Position:
    sequence: int
    time: datetime
    subject: str


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _direct_get(store: Any, request: dict[str, Any]) -> Position | None:
    try:
        msg = await store.nc.request(
            f"$JS.API.DIRECT.GET.{store.stream}", json.dumps(request).encode(), timeout=5.0
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise StoreUnavailableError(f"direct get on stream {store.stream!r} failed: {e}") from e
    headers = msg.headers or {}
    if headers.get(p.STATUS) or p.SEQUENCE not in headers:
        return None
    return Position(
        int(headers[p.SEQUENCE]), parse_nats_time(headers[p.TIME_STAMP]), headers[p.SUBJECT]
    )


async def first_at_or_after_time(store: Any, when: datetime) -> Position | None:
    """The first stored message (any subject) whose server time is at or after ``when``."""
    return await _direct_get(store, {"start_time": _rfc3339(when)})


async def first_matching(store: Any, filters: list[str], from_sequence: int) -> Position | None:
    """The first message at or after ``from_sequence`` on any of ``filters``."""
    found = [
        await _direct_get(store, {"seq": max(1, from_sequence), "next_by_subj": f}) for f in filters
    ]
    hits = [f for f in found if f is not None]
    return min(hits, key=lambda x: x.sequence) if hits else None


async def last_stream_sequence(store: Any) -> tuple[int, datetime | None]:
    """The stream's last sequence and the time of its last message (0, None when empty)."""
    try:
        info = await store.js.stream_info(store.stream)
    except (nats.errors.TimeoutError, nats.js.errors.APIError) as e:
        raise StoreUnavailableError(f"stream info of {store.stream!r} failed: {e}") from e
    last = int(info.state.last_seq or 0)
    ts = info.state.last_ts if hasattr(info.state, "last_ts") else None
    when = parse_nats_time(ts) if isinstance(ts, str) and ts else None
    return last, when


async def pending_after(store: Any, filters: list[str], after_sequence: int) -> int:
    """How many messages on ``filters`` have a sequence above ``after_sequence``."""
    name = f"eventkit_probe_{uuid.uuid4().hex[:12]}"
    cfg = ConsumerConfig(
        name=name,
        filter_subjects=filters,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after_sequence + 1,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    try:
        info = await store.js.add_consumer(store.stream, cfg)
    except (nats.errors.TimeoutError, nats.js.errors.APIError) as e:
        raise StoreUnavailableError(f"cannot count pending events: {e}") from e
    with contextlib.suppress(Exception):
        await store.js.delete_consumer(store.stream, name)
    return int(info.num_pending or 0)
