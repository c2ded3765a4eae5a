"""Projectors that write a whole run of events at once (``apply_many``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from projection_worker import (  # type: ignore[import-not-found]
    PwItemAdded,
    PwPoison,
    append_items,
    create_tables,
    expected_model,
    make_projector,
    read_model,
    tables,
)
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.status import status
from eventkit.store.records import RecordedEvent

pytestmark = pytest.mark.nats


def bulk_projector(prefix: str, **options: Any) -> tuple[Projector, list[int]]:
    """The totals projector of the other tests, writing each run with one executemany."""
    base = make_projector(prefix, **options)
    _, totals, log = tables(prefix)
    calls: list[int] = []

    class Bulk(type(base)):  # type: ignore[misc]
        def apply_many(self, records: Sequence[RecordedEvent[Any]], db: Session) -> None:
            calls.append(len(records))
            for r in records:
                if isinstance(r.event, PwPoison):
                    self.apply(r, db)  # raises for a poison event
            items = [r for r in records if isinstance(r.event, PwItemAdded)]
            if not items:
                return
            conn = db.connection()
            conn.execute(
                insert(log),
                [{"seq": r.sequence, "key": r.event.key, "n": r.event.n} for r in items],
            )
            sums: dict[str, list[int]] = {}
            for r in items:
                s = sums.setdefault(r.event.key, [0, 0])
                s[0] += r.event.n
                s[1] += 1
            known = set(conn.execute(select(totals.c.key).where(totals.c.key.in_(sums))).scalars())
            for key, (total, count) in sums.items():
                if key in known:
                    conn.execute(
                        update(totals)
                        .where(totals.c.key == key)
                        .values(total=totals.c.total + total, count=totals.c.count + count)
                    )
                else:
                    conn.execute(insert(totals).values(key=key, total=total, count=count))

    return Bulk(), calls


async def test_bulk_projector_gives_the_same_read_model_in_fewer_calls(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    items = await append_items(store, 120)
    projector, calls = bulk_projector(px)
    assert projector.applies_in_bulk()
    result = await ProjectionRunner(projector, store, engine, batch_size=50).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(items)
    assert sum(calls) == len(items) and max(calls) > 1 and len(calls) < len(items)
    # resuming applies only what is new, once
    more = await append_items(store, 30, start=120)
    await ProjectionRunner(projector, store, engine, batch_size=50).catch_up()
    assert read_model(engine, px) == expected_model(items + more)


async def test_bulk_projector_halts_at_the_bad_event_with_what_precedes_it_committed(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    before = await append_items(store, 10)
    bad = await store.append(f"{store.stream}.item.bad", [PwPoison(reason="broken")])
    await append_items(store, 10, start=10)
    projector, _ = bulk_projector(px)
    result = await ProjectionRunner(projector, store, engine, batch_size=500).catch_up()
    assert result.halted and result.checkpoint == bad - 1
    assert read_model(engine, px) == expected_model(before)  # nothing after it applied
    [st] = await status([projector], store, engine)
    assert st.state == "halted" and st.last_error and "poison: broken" in st.last_error


async def test_bulk_projector_parks_the_bad_event_and_applies_the_rest(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    before = await append_items(store, 10)
    await store.append(f"{store.stream}.item.bad", [PwPoison(reason="broken")])
    after = await append_items(store, 10, start=10)
    projector, _ = bulk_projector(px, on_error="park", max_retries=0)
    result = await ProjectionRunner(projector, store, engine, batch_size=500).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(before + after)
