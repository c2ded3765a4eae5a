"""A reactor's durable consumer: created from its options, checked for changes, reset on demand.

The declared options are recorded in the consumer's metadata. The server's ``max_deliver`` is
unlimited: the runner counts deliveries and parks at the reactor's ``max_deliver``, so an event
leaves the consumer only handled or parked, whatever a worker of an older deploy believes.
On start, options JetStream can change in place (``ack_wait``, ``max_ack_pending``,
``max_deliver``, ``backoff``) are updated; any other change raises
:class:`ConsumerChangedError` naming the options and the fix (``eventkit reactor reset NAME``):
the reactor never silently re-delivers or skips the stream.

A partitioned reactor (``partitions = N``) has one such consumer per partition,
``eventkit_reactor_<name>~p<i>`` (``~`` never appears in a reactor's name), each over the whole
stream (the worker passes over what is not the reactor's) and pinned to one worker at a time.
Its number of partitions is recorded with its options: a reactor whose ``partitions`` differ
from the consumers on the server is refused with :class:`PartitionsChangedError`.
"""

from __future__ import annotations

import contextlib
import json
import re
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


class PartitionsChangedError(EventkitError):
    """A reactor's ``partitions`` differ from those of its consumers on the server."""

    def __init__(self, reactor: str, before: int, now: int) -> None:
        self.reactor = reactor
        self.before = before
        self.now = now
        super().__init__(
            f"reactor {reactor!r} has {before} partition(s) on the server but the class declares "
            f"partitions = {now}; nothing was delivered. Changing the partitions would hand "
            f"events already under way to other workers out of order: restore partitions = "
            f"{before}, or stop every worker and reset it with 'eventkit reactor reset "
            f"{reactor}' (delivery then starts again by its deliver_policy)"
        )


def partition_consumer_name(reactor: str, partition: int) -> str:
    """The consumer of one partition of a partitioned reactor."""
    return f"{consumer_name(reactor)}~p{partition}"


PULL_EXPIRES = 2.0
"""Pull requests of a partition's consumer end after this long: a worker giving a partition
up waits for them to end before it unpins (nothing then reaches it after its hand-back)."""


def pin_timeout(reactor: Reactor) -> float:
    """Seconds a pinned worker may go without pulling before a standby gets the pin: more than
    the ack wait after its last pull, so what the silent worker held comes back (first)
    before later events go to the next worker."""
    if reactor.partitions > 1:  # its last in-progress ack may come a request's life later
        return max(reactor.ack_wait + PULL_EXPIRES + 1.0, 5.0)
    return max(reactor.ack_wait, 5.0)


def consumer_config(reactor: Reactor, stream: str, partition: int | None = None) -> ConsumerConfig:
    policy = DeliverPolicy(reactor.deliver_policy)
    start_time = reactor.start_time
    if reactor.start_at_time_delta is not None:
        start_time = datetime.now(UTC) - reactor.start_at_time_delta
    pinned = reactor.ordered == "subject"
    name = consumer_name(reactor.name)
    what = f"eventkit reactor {reactor.name}"
    if partition is not None:
        name = partition_consumer_name(reactor.name, partition)
        what += f", partition {partition} of {reactor.partitions}"
    return _Config(
        priority_groups=[PIN_GROUP] if pinned else None,
        priority_policy="pinned_client" if pinned else None,
        # a pinned worker that stops pulling for this long loses the pin to a standby
        priority_timeout=int(pin_timeout(reactor) * 1e9) if pinned else None,
        durable_name=name,
        description=what,
        # a partition's consumer takes the whole stream: the server delivers a filtered
        # consumer's messages at a far higher cost (BENCHMARKS.md), and N consumers read it
        filter_subjects=reactor.filters(stream) if partition is None else None,
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


async def _info(store: Any, name: str) -> Any:
    try:
        return await store.js.consumer_info(store.stream, name)
    except nats.js.errors.NotFoundError:
        return None


def _recorded(info: Any) -> dict[str, Any]:
    recorded = (info.config.metadata or {}).get(OPTIONS_KEY)
    return json.loads(recorded) if recorded else {}


async def check_partitions(reactor: Reactor, store: Any) -> None:
    """Refuse (:class:`PartitionsChangedError`) when the consumers on the server were made
    for another number of partitions than the reactor declares."""
    n = reactor.partitions
    if n > 1:
        plain = await _info(store, consumer_name(reactor.name))
        if plain is not None:
            raise PartitionsChangedError(reactor.name, 1, n)
    first = await _info(store, partition_consumer_name(reactor.name, 0))
    if first is not None:
        before = int(_recorded(first).get("partitions", 1))
        if before != n:
            raise PartitionsChangedError(reactor.name, before, n)


async def ensure_consumer(reactor: Reactor, store: Any, partition: int | None = None) -> int:
    """Create the consumer (of ``partition``), or check and update the existing one; returns
    its pending count."""
    js = store.js
    if partition is None:
        name = consumer_name(reactor.name)
        await check_partitions(reactor, store)
    else:
        name = partition_consumer_name(reactor.name, partition)
        if partition == 0:
            await check_partitions(reactor, store)
    info = await _info(store, name)
    if info is None:
        config = consumer_config(reactor, store.stream, partition)
        created = await js.add_consumer(store.stream, config)
        return int(created.num_pending or 0)
    old = _recorded(info)
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


async def partition_consumers(reactor_name: str, store: Any) -> dict[int, Any]:
    """The consumers of a partitioned reactor on the server: partition -> consumer info."""
    pattern = re.compile(re.escape(consumer_name(reactor_name)) + r"~p(\d+)")
    out: dict[int, Any] = {}
    for info in await store.js.consumers_info(store.stream):
        m = pattern.fullmatch(info.name or "")
        if m:
            out[int(m.group(1))] = info
    return out


async def unpin(store: Any, reactor_name: str, partition: int, pin: str) -> bool:
    """Take the pin of a partition's consumer from this worker (pin id ``pin``), so the next
    pull gets it: a worker that handed a partition back lets its next owner start at once.
    Nothing is done (False) when the pin is another worker's or nobody's: a worker woken from a
    freeze must not take the pin from the owner that replaced it."""
    if not pin:
        return False
    name = partition_consumer_name(reactor_name, partition)
    api = f"$JS.API.CONSUMER.{{}}.{store.stream}.{name}"
    info = json.loads((await store.nc.request(api.format("INFO"), b"", timeout=5.0)).data or b"{}")
    pinned = {g.get("group"): g.get("pinned_client_id") for g in info.get("priority_groups") or []}
    if pinned.get(PIN_GROUP) != pin:
        return False
    body = json.dumps({"group": PIN_GROUP}).encode()
    reply = await store.nc.request(api.format("UNPIN"), body, timeout=5.0)
    error = json.loads(reply.data or b"{}").get("error")
    if error:
        raise EventkitError(f"cannot unpin consumer {name!r}: {error.get('description', error)}")
    return True


async def reset_consumer(reactor_name: str, store: Any) -> bool:
    """Delete the reactor's consumer, or every consumer of its partitions (the next start
    creates them from the current options); False when there was none. Parked events stay
    parked."""
    names = [consumer_name(reactor_name)]
    names += [str(i.name) for i in (await partition_consumers(reactor_name, store)).values()]
    deleted = False
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await store.js.delete_consumer(store.stream, name)
            deleted = True
    return deleted


__all__ = [
    "PULL_EXPIRES",
    "ConsumerChangedError",
    "PartitionsChangedError",
    "consumer_config",
    "ensure_consumer",
    "partition_consumer_name",
    "partition_consumers",
    "pin_timeout",
    "reset_consumer",
    "unpin",
]
