"""A finished runner's lease stays released: a renewal still in flight when ``run --once`` (or a
replay) returned never brings it back, so the next command does not wait on a process that is
gone."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from sqlalchemy import Engine

from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection import checkpoints
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent
from eventkit.testing.waiting import wait_until

pytestmark = [pytest.mark.nats]


class LeaseTicked(Event):
    event_type = "LeaseTicked"
    n: int


class Ticks(Projector):
    name = "lease_ticks"
    idempotent = True

    @on(LeaseTicked)
    def ticked(self, e: LeaseTicked, rec: RecordedEvent[Any], db: Any) -> None:
        time.sleep(0.002)  # slow enough for the keeper to renew during the run


class SlowRenewals(ProjectionRunner):
    """A database that answers renewals late: each one lands 0.3 s after it was sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0
        self.landed = 0
        renew = self._lease.renew

        def slow_renew() -> bool:
            self.sent += 1
            try:
                time.sleep(0.3)
                return renew()
            finally:
                self.landed += 1

        self._lease.renew = slow_renew  # type: ignore[method-assign]


async def test_a_renewal_in_flight_does_not_bring_a_released_lease_back(
    store: JetStreamEventStore, engine: Engine
) -> None:
    for i in range(400):
        await store.append(f"{store.stream}.tick.{uuid.uuid4().hex[:6]}", [LeaseTicked(n=i)])
    projector = type(
        "Ticks_" + uuid.uuid4().hex[:6], (Ticks,), {"name": f"t_{uuid.uuid4().hex[:6]}"}
    )()
    first = SlowRenewals(projector, store, engine, owner="first", lease_ttl=0.6)
    await first.catch_up()
    # every renewal sent before the return has landed
    assert first.sent > 0  # renewals were sent during the run
    assert await wait_until(lambda: first.landed == first.sent, 30), (first.sent, first.landed)
    with read_transaction(engine) as db:
        lease = checkpoints.get_lease(db, projector.name)
    assert lease is not None and not lease.live and lease.owner != "first"
    # the next command takes the lease at once, not after the ttl of a gone process
    second = ProjectionRunner(projector, store, engine, owner="second", lease_wait=0.0)
    result = await second.catch_up()
    assert result.checkpoint == await store.last_sequence()
