"""The runner against a real nats-server and SQLite / PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from projection_worker import (  # type: ignore[import-not-found]
    PwNoise,
    PwPoison,
    append_items,
    create_tables,
    expected_model,
    make_projector,
    read_model,
)
from sqlalchemy import Engine

from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints, letters
from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import (
    current_revision,
    migrations_location,
    transaction,
    upgrade,
)
from eventkit.projection.status import status
from eventkit.runtime.pulling import consumer_name

pytestmark = pytest.mark.nats


def prefix() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def test_upgrade_creates_tables_with_own_version_table(engine: Engine) -> None:
    from alembic.script import ScriptDirectory
    from sqlalchemy import inspect

    head = ScriptDirectory(migrations_location()).get_current_head()
    assert current_revision(engine) == head
    assert inspect(engine).has_table("eventkit_alembic_version")
    assert not inspect(engine).has_table("alembic_version")
    upgrade(engine)  # idempotent
    with transaction(engine) as db:
        assert checkpoints.get_checkpoint(db, "nope").last_sequence == 0


async def test_catch_up_applies_everything_once_and_resumes(store: Any, engine: Engine) -> None:
    px = prefix()
    create_tables(engine, px)
    items = await append_items(store, 120)
    projector = make_projector(px)
    result = await ProjectionRunner(projector, store, engine, batch_size=32).catch_up()
    last = await store.last_sequence()
    assert result.checkpoint == last and not result.halted
    assert read_model(engine, px) == expected_model(items)
    # a second catch-up applies nothing twice; new events are applied from the checkpoint
    more = await append_items(store, 30, start=120)
    result = await ProjectionRunner(make_projector(px), store, engine).catch_up()
    assert result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(items + more)
    [st] = await status([projector], store, engine)
    # caught up and no runner active: "stopped" (running means a runner holds the lease)
    assert (st.checkpoint, st.lag_events, st.state) == (result.checkpoint, 0, "stopped")
    info = await store.js.consumer_info(store.stream, consumer_name(projector.name))
    assert info.config.durable_name == consumer_name(projector.name)


async def test_filtered_projector_reaches_end_when_last_event_is_not_its_own(
    store: Any, engine: Engine
) -> None:
    px = prefix()
    create_tables(engine, px)
    items = await append_items(store, 20)
    await store.append(f"{store.stream}.noise.x", [PwNoise(x=1)])
    projector = make_projector(px, subjects=[f"{store.stream}.item.>"])
    result = await asyncio.wait_for(ProjectionRunner(projector, store, engine).catch_up(), 20)
    assert result.checkpoint == items[-1][0]
    assert read_model(engine, px) == expected_model(items)


async def test_live_mode_applies_new_events_and_stops_cleanly(store: Any, engine: Engine) -> None:
    px = prefix()
    create_tables(engine, px)
    items = await append_items(store, 10)
    runner = ProjectionRunner(make_projector(px), store, engine, lease_ttl=2)
    task = asyncio.create_task(runner.run())
    for _ in range(100):
        if runner.state == "live":
            break
        await asyncio.sleep(0.05)
    more = await append_items(store, 10, start=10)
    last = await store.last_sequence()
    for _ in range(100):
        if runner.checkpoint == last:
            break
        await asyncio.sleep(0.05)
    runner.stop()
    result = await asyncio.wait_for(task, 10)
    assert result.checkpoint == last
    assert read_model(engine, px) == expected_model(items + more)
    with transaction(engine) as db:
        lease = checkpoints.get_lease(db, runner.name)
    assert lease is not None and not lease.live  # released on a clean stop


async def test_poison_event_halts_after_committing_what_precedes_it(
    store: Any, engine: Engine
) -> None:
    px = prefix()
    create_tables(engine, px)
    before = await append_items(store, 10)
    bad = await store.append(f"{store.stream}.item.bad", [PwPoison(reason="broken")])
    await append_items(store, 10, start=10)
    projector = make_projector(px)
    result = await ProjectionRunner(projector, store, engine, batch_size=500).catch_up()
    assert result.halted and result.checkpoint == bad - 1
    assert read_model(engine, px) == expected_model(before)  # nothing after it applied
    [st] = await status([projector], store, engine)
    assert st.state == "halted" and st.last_error and "poison: broken" in st.last_error
    assert st.checkpoint == bad - 1 and st.lag_events > 0


async def test_park_policy_records_dead_letter_and_goes_on_then_retry_resolves(
    store: Any, engine: Engine
) -> None:
    px = prefix()
    create_tables(engine, px)
    before = await append_items(store, 5)
    bad = await store.append(f"{store.stream}.item.bad", [PwPoison(reason="broken")])
    flaky = await store.append(f"{store.stream}.item.flaky", [PwPoison(reason="flaky")])
    after = await append_items(store, 5, start=5)
    projector = make_projector(px, on_error="park", max_retries=0)
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(before + after)
    letters = list_dead_letters(engine, projector.name)
    assert [(d.sequence, d.event_type) for d in letters] == [
        (bad, "PwPoison"),
        (flaky, "PwPoison"),
    ]
    assert "poison: broken" in letters[0].error
    outcomes = await retry_dead_letters([projector], store, engine, letter_id=letters[1].id)
    assert outcomes[0].ok
    assert [d.sequence for d in list_dead_letters(engine, projector.name)] == [bad]
    outcomes = await retry_dead_letters([projector], store, engine, all_open=True)
    assert not outcomes[0].ok and "poison" in (outcomes[0].error or "")
    with pytest.raises(ConfigError):
        await retry_dead_letters([projector], store, engine, letter_id=999_999)


async def test_retry_with_backoff_recovers_a_flaky_handler(store: Any, engine: Engine) -> None:
    px = prefix()
    create_tables(engine, px)
    items = await append_items(store, 3)
    await store.append(f"{store.stream}.item.flaky", [PwPoison(reason="flaky")])
    items += await append_items(store, 3, start=3)
    projector = make_projector(px, max_retries=2)
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(items)


async def test_second_runner_waits_for_the_lease(store: Any, engine: Engine) -> None:
    px = prefix()
    create_tables(engine, px)
    await append_items(store, 3)
    with transaction(engine) as db:
        assert checkpoints.try_acquire_lease(db, f"{px}_totals", "someone-else", 30)
    runner = ProjectionRunner(make_projector(px), store, engine, lease_ttl=1, lease_wait=0.5)
    with pytest.raises(ProjectionError, match="someone-else"):
        await runner.catch_up()
    assert read_model(engine, px) == ([], [])


async def test_concurrent_retries_of_one_dead_letter_apply_it_once(
    store: Any, engine: Engine
) -> None:
    px = prefix()
    create_tables(engine, px)
    items = await append_items(store, 1)
    seq, key, _ = items[0]
    projector = make_projector(px)
    with transaction(engine) as db:
        letters.park(
            db,
            projector.name,
            sequence=seq,
            subject=f"{store.stream}.item.{key}",
            event_type="PwItemAdded",
            error="parked by the test",
            attempts=1,
        )
    [letter] = list_dead_letters(engine, projector.name)
    outcomes = await asyncio.gather(
        *(retry_dead_letters([projector], store, engine, all_open=True) for _ in range(4))
    )
    assert all(o.ok for batch in outcomes for o in batch), outcomes
    # the log table's primary key is the sequence: a second apply would have failed
    assert read_model(engine, px) == expected_model(items)
    assert list_dead_letters(engine, projector.name) == []
    assert letter.resolved_at is None


async def test_a_worker_on_older_tables_says_to_upgrade(store: Any, tmp_path: Any) -> None:
    from eventkit.projection.sql import make_engine

    engine = make_engine(f"sqlite:///{tmp_path}/old.db")
    upgrade(engine, revision="0004")  # before the checkpoints' revision column
    px = prefix()
    create_tables(engine, px)
    await append_items(store, 3)
    with pytest.raises(ConfigError, match="eventkit db upgrade"):
        await ProjectionRunner(make_projector(px), store, engine).catch_up()
    upgrade(engine)
    result = await ProjectionRunner(make_projector(px), store, engine).catch_up()
    assert result.checkpoint == await store.last_sequence()
    engine.dispose()
