"""Shared pieces of the read-model version tests: a sums row projector in two versions."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select

from eventkit import Event, RowProjector, on
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.store.records import RecordedEvent


class VsPaid(Event):
    amount: int


class Kit:
    """A table and two versions of a row projector summing ``amount`` per entity (version 2
    adds ten times the amount, so a row shows which version wrote it)."""

    def __init__(self, store: Any, engine: Engine, *, cache: int = 50_000) -> None:
        self.px = f"vs{uuid.uuid4().hex[:8]}"
        self.store = store
        self.engine = engine
        md = MetaData()
        self.table = Table(
            f"{self.px}_sums",
            md,
            Column("id", String(40), primary_key=True),
            Column("total", Integer, nullable=False, default=0),
        )
        md.create_all(engine)
        subjects = [f"{store.stream}.{self.px}.>"]

        class V1(RowProjector):
            name = self.px
            version = 1
            table = md.tables[f"{self.px}_sums"]
            row_cache = cache

            @on(VsPaid)
            def paid(self, e: VsPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
                row["total"] += e.amount

        class V2(V1):
            name = self.px
            version = 2

            @on(VsPaid)
            def paid(self, e: VsPaid, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
                row["total"] += 10 * e.amount

        V1.subjects = V2.subjects = subjects
        self.V1, self.V2 = V1, V2

    async def pay(self, entity: str, amount: int) -> None:
        await self.store.append(f"{self.store.stream}.{self.px}.{entity}", [VsPaid(amount=amount)])

    def totals(self, name: str | None = None) -> dict[str, int]:
        t = Table(
            name or self.table.name, MetaData(), Column("id", String), Column("total", Integer)
        )
        with read_transaction(self.engine) as db:
            return {r.id: r.total for r in db.execute(select(t))}


async def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(runner: ProjectionRunner) -> AsyncIterator[asyncio.Task[Any]]:
    """The runner live in the background for the block, stopped cleanly after it."""
    task = asyncio.create_task(runner.run())
    try:
        yield task
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
