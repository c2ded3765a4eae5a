"""A reactor's durable consumer: created from its options, checked for changes, reset on demand.

The declared options are recorded in the consumer's metadata. The server's ``max_deliver`` is
unlimited: the runner counts deliveries and parks at the reactor's ``max_deliver``, so an event
leaves the consumer only handled or parked, whatever a worker of an older deploy believes.
On start, options JetStream can change in place (``ack_wait``, ``max_ack_pending``,
``max_deliver``, ``backoff``) are updated; any other change raises
:class:`ConsumerChangedError` naming the options and the fix (``eventkit reactor reset NAME``):
the reactor never silently re-delivers or skips the stream.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy

from eventkit.errors import EventkitError
from eventkit.reaction.reactor import UPDATABLE, Reactor, consumer_name

OPTIONS_KEY = "eventkit_options"
PIN_GROUP = "eventkit"
"""The priority group of ``ordered = "subject"`` reactors (pinned client, nats-server 2.11+)."""


@dataclass
class _Config(ConsumerConfig):
    """nats-py's consumer config plus the priority-group fields it does not know yet."""

    priority_groups: list[str] | None = None
    priority_policy: str | None = None
    priority_timeout: int | None = None  # nanoseconds


class ConsumerChangedError(EventkitError):
    """A reactor's options changed in a way its existing consumer cannot take in place."""

    def __init__(self, reactor: str, changed: list[str]) -> None:
        self.reactor = reactor
        self.changed = changed
        super().__init__(
            f"reactor {reactor!r}: {', '.join(changed)} changed, and JetStream cannot change "
            f"that on the existing consumer; nothing was delivered. Reset it with "
            f"'eventkit reactor reset {reactor}' (it then starts again by its deliver_policy), "
            f"or restore the old options"
        )


def consumer_config(reactor: Reactor, stream: str) -> ConsumerConfig:
    policy = DeliverPolicy(reactor.deliver_policy)
    start_time = reactor.start_time
    if reactor.start_at_time_delta is not None:
        start_time = datetime.now(UTC) - reactor.start_at_time_delta
    pinned = reactor.ordered == "subject"
    return _Config(
        priority_groups=[PIN_GROUP] if pinned else None,
        priority_policy="pinned_client" if pinned else None,
        # a pinned worker that stops pulling for this long loses the pin to a standby
        priority_timeout=int(max(reactor.ack_wait, 5.0) * 1e9) if pinned else None,
        durable_name=consumer_name(reactor.name),
        description=f"eventkit reactor {reactor.name}",
        filter_subjects=reactor.filters(stream),
        deliver_policy=policy,
        opt_start_seq=reactor.start_sequence,
        opt_start_time=start_time.astimezone(UTC) if start_time else None,
        ack_policy=AckPolicy(reactor.ack_policy),
        ack_wait=float(reactor.ack_wait),
        max_deliver=-1,
        max_ack_pending=max_ack_pending(reactor),
        replay_policy=ReplayPolicy(reactor.replay_policy),
        max_waiting=512,
        inactive_threshold=None,
        metadata={OPTIONS_KEY: json.dumps(reactor.options(), sort_keys=True)},
    )


def max_ack_pending(reactor: Reactor) -> int:
    """Under ack policy ``all`` one event at a time over all workers: an ack acknowledges
    everything delivered before it, so with two in flight a worker's ack would cover the other
    worker's event (lost if that worker dies)."""
    if reactor.ack_policy == "none":
        return -1
    return 1 if reactor.ack_policy == "all" else reactor.max_ack_pending


def changed_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


async def ensure_consumer(reactor: Reactor, store: Any) -> int:
    """Create the consumer, or check and update the existing one; returns its pending count."""
    js = store.js
    name = consumer_name(reactor.name)
    try:
        info = await js.consumer_info(store.stream, name)
    except nats.js.errors.NotFoundError:
        info = None
    if info is None:
        created = await js.add_consumer(store.stream, consumer_config(reactor, store.stream))
        return int(created.num_pending or 0)
    recorded = (info.config.metadata or {}).get(OPTIONS_KEY)
    old = json.loads(recorded) if recorded else {}
    new = reactor.options()
    changed = changed_options(old, new)
    fixed = [k for k in changed if k not in UPDATABLE]
    if fixed:
        raise ConsumerChangedError(reactor.name, fixed)
    cfg = info.config
    if changed or cfg.max_deliver != -1 or cfg.max_ack_pending != max_ack_pending(reactor):
        # max_deliver is the runner's count, never the server's: a worker whose max_deliver is
        # higher (a rolling deploy) would nak an event the server then drops silently
        cfg.ack_wait = float(reactor.ack_wait)
        cfg.max_ack_pending = max_ack_pending(reactor)
        cfg.max_deliver = -1
        cfg.metadata = {**(cfg.metadata or {}), OPTIONS_KEY: json.dumps(new, sort_keys=True)}
        updated = await js.add_consumer(store.stream, cfg)
        return int(updated.num_pending or 0)
    return int(info.num_pending or 0)


async def reset_consumer(reactor_name: str, store: Any) -> bool:
    """Delete the reactor's consumer (the next start creates it from the current options);
    False when there was none. Parked events stay parked."""
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await store.js.delete_consumer(store.stream, consumer_name(reactor_name))
        return True
    return False


__all__ = ["ConsumerChangedError", "consumer_config", "ensure_consumer", "reset_consumer"]
