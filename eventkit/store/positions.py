"""Stream positions the runner and replay need: first event at a time, pending counts, ends."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from eventkit.errors import StoreUnavailableError
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.nats.wire import format_nats_time, to_stored
from eventkit.store.records import StoredMessage


async def _first(store: JetStreamEventStore, request: dict[str, Any]) -> StoredMessage | None:
    msgs, _ = await store._direct(request)  # the store's direct get: retried, permission-aware
    return to_stored(msgs[0]) if msgs else None


async def first_at_or_after_time(
    store: JetStreamEventStore, when: datetime
) -> StoredMessage | None:
    """The first stored message (any subject) whose server time is at or after ``when``."""
    return await _first(store, {"start_time": format_nats_time(when)})


async def first_matching(
    store: JetStreamEventStore, filters: list[str], from_sequence: int
) -> StoredMessage | None:
    """The first message at or after ``from_sequence`` on any of ``filters``."""
    found = [
        await _first(store, {"seq": max(1, from_sequence), "next_by_subj": f}) for f in filters
    ]
    hits = [f for f in found if f is not None]
    return min(hits, key=lambda x: x.sequence) if hits else None


async def pending_after(store: JetStreamEventStore, filters: list[str], after_sequence: int) -> int:
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
