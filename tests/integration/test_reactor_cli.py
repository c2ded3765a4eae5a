"""``eventkit run --once``, ``status``, ``dlq list`` and ``dlq retry`` with a reactor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from reactor_worker import RwDone, RwJob  # type: ignore[import-not-found]

from eventkit import JetStreamEventStore

pytestmark = pytest.mark.nats

HERE = Path(__file__).parent


async def eventkit(env: dict[str, str], *args: str) -> tuple[int, str]:
    full = {**os.environ, **env, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parents[1]}"}
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "eventkit", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout + proc.stderr if proc.returncode else proc.stdout


async def test_cli_runs_parks_lists_and_retries_reactor_events(
    store: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    for n in range(3):
        await store.append(f"{store.stream}.job.{n}", [RwJob(n=n)])
    env = {
        "EVENTKIT_NATS_URL": nats_url,
        "EVENTKIT_APP": "reactor_worker:APP",
        "EVENTKIT_HOME": str(tmp_path),
        "EVENTKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'rm.db'}",
        "RW_STREAM": store.stream,
    }
    code, out = await eventkit({**env, "RW_BROKEN": "1"}, "run", "--once", "--json")
    assert code == 0, out  # parking is a decision, not a failure
    (flaky,) = [e for e in json.loads(out) if e.get("name") == "flaky"]
    assert flaky["parked"] == 1
    assert flaky["handled"] == 2

    code, out = await eventkit(env, "status", "--json")
    assert code == 0, out
    (row,) = [e for e in json.loads(out) if e["name"] == "flaky"]
    assert row["parked"] == 1
    assert row["pending"] == 0
    assert row["in_flight"] == 0

    code, out = await eventkit(env, "dlq", "list", "--json")
    assert code == 0, out
    letters: list[dict[str, Any]] = json.loads(out)
    assert [(x["name"], x["sequence"], x["id"]) for x in letters] == [("flaky", 2, "flaky:2")]

    code, out = await eventkit(env, "dlq", "retry", "flaky:2")
    assert code == 0, out
    code, out = await eventkit(env, "run", "flaky", "--once", "--json")
    assert code == 0, out
    code, out = await eventkit(env, "dlq", "list", "--json")
    assert json.loads(out) == []
    done = [r.event async for r in store.read_all(subjects=[f"{store.stream}.done.>"])]
    assert sorted(d.n for d in done if isinstance(d, RwDone)) == [0, 1, 2]

    code, out = await eventkit(env, "dlq", "retry", "flaky:99")
    assert code != 0
    code, out = await eventkit(env, "run", "nosuch", "--once")
    assert code == 2
