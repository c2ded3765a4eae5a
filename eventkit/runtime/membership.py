"""Who shares the partitions of one projector or reactor: the live members, heard of through
heartbeats in the workers bucket (:mod:`eventkit.runtime.presence`).

::

    presence = Presence(store, membership_name("balances"))
    await refresh_membership(store, lease, presence)     # beat once, read the members once
    keeper = asyncio.create_task(keep_membership(store, lease, presence))

Membership only says which partitions a worker should hold; the lease of each partition (a SQL
row, :mod:`eventkit.projection.partition_lease`) decides who may apply it, or, for a reactor,
the pinned client of the partition's consumer (:mod:`eventkit.reaction.partitioned`), so a
failed refresh is logged and the members known stay. The members are the workers that beat
under the same name as ``presence`` (a projector's :func:`membership_name`, a reactor's own
name) within the ttl.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sized
from typing import Any, Protocol

import nats.errors
import nats.js.errors

from eventkit.errors import StoreUnavailableError
from eventkit.runtime.presence import Presence, workers

log = logging.getLogger("eventkit.projection")


class Member(Protocol):
    """What membership reads and sets on a worker's partition lease."""

    name: str
    """The projector's or reactor's name."""
    ttl: float
    member: str
    """This worker's id among the members."""
    members: list[str] | None
    """The live members (None until the bucket was read once)."""

    @property
    def held(self) -> Sized: ...


def membership_name(projector: str) -> str:
    """The name a partitioned projector's workers heartbeat under (in the workers bucket)."""
    return f"partitions-{projector}"


async def heard_of(store: Any, projector: str, within: float) -> list[str]:
    """The workers of ``projector`` that wrote a heartbeat within ``within`` seconds."""
    return await beating(store, membership_name(projector), within)


async def beating(store: Any, name: str, within: float) -> list[str]:
    """The workers that wrote a heartbeat under ``name`` within ``within`` seconds."""
    found = (await workers(store, [name]))[name]
    now = time.time()
    return sorted(
        str(w["worker"]) for w in found if "worker" in w and now - float(w.get("at", 0)) <= within
    )


async def refresh_membership(
    store: Any,
    lease: Member,
    presence: Presence,
    figures: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Heartbeat this worker (with ``figures``) and read the members once (a failure is
    logged: the members known stay, the leases or pins keep deciding)."""
    try:
        await presence.beat({"partitions": len(lease.held), **(figures() if figures else {})})
        members = await beating(store, presence.reactor, lease.ttl)
        lease.members = sorted(set(members) | {lease.member})
    except (nats.errors.Error, nats.js.errors.Error, StoreUnavailableError, OSError) as e:
        log.warning("%s: membership not refreshed: %r", lease.name, e)


async def keep_membership(
    store: Any,
    lease: Member,
    presence: Presence,
    figures: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """:func:`refresh_membership` every ``ttl / 3`` until cancelled."""
    while True:
        await asyncio.sleep(lease.ttl / 3)
        await refresh_membership(store, lease, presence, figures)


__all__ = [
    "Member",
    "beating",
    "heard_of",
    "keep_membership",
    "membership_name",
    "refresh_membership",
]
