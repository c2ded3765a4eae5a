"""``eventkit run --metrics-port`` serves Prometheus metrics a scrape parses, whose lag falls to 0
as the projector catches up; ``--log-format json`` writes one JSON object per line (real
nats-server, SQLite file, the CLI in a subprocess)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from obs_app import ObTicked  # type: ignore[import-not-found]
from prometheus_client.parser import text_string_to_metric_families

from eventkit import JetStreamEventStore
from eventkit.server import free_port

pytestmark = pytest.mark.nats

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EVENTS = 1000


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return families


def value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float | None:
    f = families.get(family)
    if f is None:
        return None
    for s in f.samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


async def test_metrics_endpoint_shows_lag_falling_to_zero_and_json_logs(
    store: JetStreamEventStore, nats_url: str, tmp_path: Path
) -> None:
    for i in range(0, EVENTS, 100):
        for n in range(i, i + 100):
            await store.append(f"{store.stream}.tick.t{n % 10}", [ObTicked(n=n)])
    env = {
        **os.environ,
        "EVENTKIT_NATS_URL": nats_url,
        "EVENTKIT_APP": "obs_app:APP",
        "EVENTKIT_HOME": str(tmp_path),
        "EVENTKIT_DATABASE_URL": f"sqlite:///{tmp_path / 'rm.db'}",
        "OBS_STREAM": store.stream,
        "PYTHONPATH": f"{HERE}{os.pathsep}{ROOT}",
    }
    await asyncio.to_thread(run_and_scrape, env, store.stream)


def run_and_scrape(env: dict[str, str], stream: str) -> None:
    up = subprocess.run(
        [sys.executable, "-m", "eventkit", "db", "upgrade"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eventkit",
            "run",
            "--metrics-port",
            str(port),
            "--metrics-host",
            "127.0.0.1",
            "--log-format",
            "json",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lags: list[float] = []
    families: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                families = scrape(port)
            except OSError:
                time.sleep(0.05)
                continue
            applied = value(
                families,
                "eventkit_events_applied",
                "eventkit_events_applied_total",
                kind="projector",
                worker="ticks",
            )
            lag = value(
                families,
                "eventkit_lag_events",
                "eventkit_lag_events",
                kind="projector",
                worker="ticks",
            )
            if applied:
                assert lag is not None
                lags.append(lag)
                if applied == EVENTS and lag == 0:
                    break
            time.sleep(0.05)
        assert lags and lags[-1] == 0, lags
        assert max(lags) > 0, f"never saw the projector behind: {lags}"
        assert lags == sorted(lags, reverse=True), "lag only falls while nothing is appended"
        worker = {"kind": "projector", "worker": "ticks"}
        assert value(families, "eventkit_lag_seconds", "eventkit_lag_seconds", **worker) == 0
        assert value(families, "eventkit_checkpoint", "eventkit_checkpoint", **worker) == EVENTS
        assert value(families, "eventkit_halted", "eventkit_halted", **worker) == 0
        assert value(families, "eventkit_worker_up", "eventkit_worker_up", **worker) == 1
        batches = value(
            families,
            "eventkit_batch_duration_seconds",
            "eventkit_batch_duration_seconds_count",
            **worker,
        )
        assert batches is not None and batches >= EVENTS / 50
        handled = value(
            families,
            "eventkit_handler_duration_seconds",
            "eventkit_handler_duration_seconds_count",
            **worker,
        )
        assert handled == EVENTS
        # the reactor handled every tick and appended its outputs (a process counter)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            families = scrape(port)
            reacted = value(
                families,
                "eventkit_events_applied",
                "eventkit_events_applied_total",
                kind="reactor",
                worker="tocker",
            )
            if reacted == EVENTS:
                break
            time.sleep(0.1)
        assert reacted == EVENTS
        assert (
            value(families, "eventkit_appends", "eventkit_appends_total", stream=stream)
            == EVENTS // 100
        )
        # every metric the dashboard queries is in the scrape
        names = set(families) | {s.name for f in families.values() for s in f.samples}
        dashboard = (ROOT / "deploy" / "grafana" / "eventkit.json").read_text()
        queried = set(re.findall(r"\beventkit_[a-z_]+", dashboard)) - {"eventkit"}
        assert queried - names == set()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    events = [(x.get("worker"), x.get("event")) for x in lines]
    assert ("ticks", "lease_taken") in events
    assert ("ticks", "caught_up") in events
    assert ("ticks", "stopped") in events
    assert ("tocker", "running") in events
    assert ("tocker", "caught_up") in events
    assert events.count(("tocker", "caught_up")) == 1  # once, not per idle poll
    assert all({"time", "level", "logger", "message"} <= set(x) for x in lines)
