"""Replay (library and CLI) and the CLI's validation of times, sequences and names."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from projection_worker import (  # type: ignore[import-not-found]
    append_items,
    create_tables,
    expected_model,
    make_projector,
    read_model,
)
from sqlalchemy import Engine
from typer.testing import CliRunner

from eventkit.cli.main import app as cli
from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection import checkpoints
from eventkit.projection.replay import parse_when, plan_replay, replay
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import make_engine, read_transaction, upgrade

pytestmark = pytest.mark.nats


def checkpoint(engine: Engine, name: str) -> int:
    with read_transaction(engine) as db:
        return checkpoints.get_checkpoint(db, name).last_sequence


def test_parse_when_accepts_zones_and_relative_times_and_rejects_the_rest() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_when("2026-03-01T09:00:00Z", now) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert parse_when("2026-03-01T10:00:00+01:00", now) == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert parse_when("90s", now) == now - timedelta(seconds=90)
    assert parse_when("15m", now) == now - timedelta(minutes=15)
    assert parse_when("2h", now) == now - timedelta(hours=2)
    assert parse_when("3d", now) == now - timedelta(days=3)
    for bad, why in [
        ("2026-03-01T09:00:00", "no time zone"),
        ("yesterday", "invalid time"),
        ("2026-03-02T09:00:00Z", "future"),
        ("5 weeks", "invalid time"),
    ]:
        with pytest.raises(ConfigError, match=why):
            parse_when(bad, now)


async def test_from_time_starts_at_the_first_event_at_or_after_t(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    first = await append_items(store, 20, 0)
    await asyncio.sleep(0.3)
    t = datetime.now(UTC)
    await asyncio.sleep(0.05)
    second = await append_items(store, 20, 20)
    projector = make_projector(px, with_rewind=True)
    await ProjectionRunner(projector, store, engine).catch_up()
    plan = await plan_replay(projector, store, engine, from_time=t)
    assert plan.start_sequence == second[0][0]  # the first event stored at or after t
    assert plan.method == "rewind"
    result = await replay(plan, projector, store, engine)
    last = await store.last_sequence()
    assert result.checkpoint == last
    # only events from t on were delivered: the items applied, the noise passed over
    assert result.processed == len(second)
    assert result.processed + result.passed_over == last - second[0][0] + 1
    assert read_model(engine, px) == expected_model(first + second)


async def test_replay_from_start_of_a_non_idempotent_projector_resets_it_first(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    items = await append_items(store, 30, 0)
    projector = make_projector(px)
    await ProjectionRunner(projector, store, engine).catch_up()
    plan = await plan_replay(projector, store, engine, from_start=True)
    assert plan.method == "reset" and plan.start_sequence == 1
    result = await replay(plan, projector, store, engine)
    assert not result.halted and result.checkpoint == await store.last_sequence()
    assert read_model(engine, px) == expected_model(items)  # applied once, not twice


async def test_replay_from_a_point_needs_idempotent_or_rewind_and_changes_nothing(
    store: Any, engine: Engine
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    create_tables(engine, px)
    items = await append_items(store, 10, 0)
    projector = make_projector(px)
    await ProjectionRunner(projector, store, engine).catch_up()
    before = (checkpoint(engine, projector.name), read_model(engine, px))
    with pytest.raises(ProjectionError, match="not idempotent"):
        await plan_replay(projector, store, engine, from_sequence=3)
    assert (checkpoint(engine, projector.name), read_model(engine, px)) == before
    assert read_model(engine, px) == expected_model(items)
    create_tables(engine, f"{px}i")
    idem = make_projector(f"{px}i", name=f"{px}_idem", idempotent=True)
    await ProjectionRunner(idem, store, engine).catch_up()
    plan = await plan_replay(idem, store, engine, from_sequence=3)
    assert plan.method == "idempotent" and plan.start_sequence == 3


# -- the CLI -------------------------------------------------------------------------------
def invoke(nats_url: str, db_url: str, *args: str) -> Any:
    return CliRunner().invoke(
        cli,
        [
            "--app",
            "projection_worker:cli_app",
            "--nats-url",
            nats_url,
            "--database-url",
            db_url,
            *args,
        ],
        catch_exceptions=False,
    )


async def test_cli_rejects_bad_times_sequences_and_names_and_changes_nothing(
    store: Any, nats_url: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    px = f"t_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PW_PREFIX", px)
    monkeypatch.setenv("PW_STREAM", store.stream)
    engine = make_engine(sqlite_url)
    upgrade(engine)
    create_tables(engine, px)
    create_tables(engine, f"{px}i")
    items = await append_items(store, 10, 0)
    ok = await asyncio.to_thread(invoke, nats_url, sqlite_url, "run", "--once", "--json")
    assert ok.exit_code == 0, ok.output
    name = f"{px}_totals"
    before = (checkpoint(engine, name), read_model(engine, px))
    assert before == (await store.last_sequence(), expected_model(items))
    end = await store.last_sequence()
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [
        (["replay", name, "--from-time", "2026-01-01T00:00:00", "--yes"], "no time zone"),
        (["replay", name, "--from-time", "last tuesday", "--yes"], "invalid time"),
        (["replay", name, "--from-time", future, "--yes"], "future"),
        (["replay", name, "--from-seq", "0", "--yes"], "1 or more"),
        (["replay", name, "--from-seq", "-4", "--yes"], "1 or more"),
        (["replay", name, "--from-seq", str(end + 10), "--yes"], "beyond the end"),
        (["replay", name, "--from-seq", "abc", "--yes"], "integer"),
        (["replay", "nope", "--from-start", "--yes"], "no projector named 'nope'"),
        (["replay", name, "--yes"], "exactly one"),
        (["replay", name, "--from-start", "--from-seq", "2", "--yes"], "exactly one"),
        (["run", "nope", "--once"], "no projector named 'nope'"),
    ]
    for args, message in cases:
        res = await asyncio.to_thread(invoke, nats_url, sqlite_url, *args)
        assert res.exit_code == 2, (args, res.output)
        assert message in " ".join(res.output.split()), (args, res.output)
        assert (checkpoint(engine, name), read_model(engine, px)) == before, args
    # replay from a point of a non-idempotent projector: a clear error, nothing changed
    res = await asyncio.to_thread(
        invoke, nats_url, sqlite_url, "replay", name, "--from-seq", "2", "--yes"
    )
    assert res.exit_code == 1 and "not idempotent" in " ".join(res.output.split())
    assert (checkpoint(engine, name), read_model(engine, px)) == before
    # declining the confirmation changes nothing
    res = await asyncio.to_thread(
        lambda: CliRunner().invoke(
            cli,
            [
                "--app",
                "projection_worker:cli_app",
                "--nats-url",
                nats_url,
                "--database-url",
                sqlite_url,
                "replay",
                name,
                "--from-start",
            ],
            input="n\n",
        )
    )
    assert res.exit_code == 1 and "nothing changed" in res.output
    assert (checkpoint(engine, name), read_model(engine, px)) == before
    # a good replay from the start, and status --json
    res = await asyncio.to_thread(
        invoke, nats_url, sqlite_url, "replay", name, "--from-start", "--yes"
    )
    assert res.exit_code == 0, res.output
    assert read_model(engine, px) == expected_model(items)
    res = await asyncio.to_thread(invoke, nats_url, sqlite_url, "status", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert rows[name]["checkpoint"] == end and rows[name]["lag_events"] == 0
    assert rows[f"{px}_idem"]["state"] == "stopped"  # not halted, and no runner holds it now
    res = await asyncio.to_thread(invoke, nats_url, sqlite_url, "dlq", "list", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == []
    engine.dispose()
