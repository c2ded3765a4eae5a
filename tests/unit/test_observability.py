"""Observability without a server: the Prometheus exposition parses, the dashboard queries only
exported metrics, state-change lines parse as JSON, OpenTelemetry metrics report the figures,
and without the extras eventkit imports no OpenTelemetry (nor prometheus_client) module."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from eventkit import Event, InMemoryEventStore
from eventkit.errors import ConcurrencyError, ConfigError
from eventkit.observability import configure_logging, metric_names
from eventkit.observability import metrics as m
from eventkit.observability.prometheus import make_registry, serve_metrics
from eventkit.observability.worker import WorkerObserver

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "eventkit.json"


class ObsNoted(Event):
    n: int


@pytest.fixture(autouse=True)
def fresh_figures() -> Iterator[None]:
    m.reset()
    yield
    m.reset()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_prometheus_text_shows_worker_and_append_figures() -> None:
    store = InMemoryEventStore("obs")
    await store.append("obs.note.n-1", [ObsNoted(n=1), ObsNoted(n=2)], expected_sequence=0)
    with pytest.raises(ConcurrencyError):
        await store.append("obs.note.n-1", [ObsNoted(n=3)], expected_sequence=0)
    obs = WorkerObserver("projector", "notes", logging.getLogger("eventkit.projection"))
    obs.state("catching-up", checkpoint=0)
    obs.batch(5, 5, 1_000, 3, 0.0)
    obs.parked(4, "ObsNoted", 2, "ValueError: no")
    registry, recorder = make_registry()
    m.add_recorder(recorder)
    try:
        obs.apply(lambda rec, db: None)(None, None)
        obs.batch(3, 8, 2_000, 0, 0.0)
        from prometheus_client import generate_latest

        got = samples(generate_latest(registry).decode())
    finally:
        m.remove_recorder(recorder)
    worker = (("kind", "projector"), ("worker", "notes"))
    assert got[("eventkit_events_applied_total", worker)] == 8
    assert got[("eventkit_lag_events", worker)] == 0
    assert got[("eventkit_checkpoint", worker)] == 8
    assert got[("eventkit_parked_total", worker)] == 1
    assert got[("eventkit_halted", worker)] == 0
    assert got[("eventkit_worker_up", worker)] == 1
    assert got[("eventkit_batch_duration_seconds_count", worker)] == 1
    assert got[("eventkit_handler_duration_seconds_count", worker)] == 1
    assert got[("eventkit_appends_total", (("stream", "obs"),))] == 1
    assert got[("eventkit_appended_events_total", (("stream", "obs"),))] == 2
    assert got[("eventkit_append_conflicts_total", (("stream", "obs"),))] == 1


def test_lag_seconds_is_the_age_of_the_last_event_while_behind() -> None:
    f = m.Figures("projector", "p")
    f.handled(10, 10, 1_000_000_000, 5)
    assert f.lag_seconds(now_ns=4_000_000_000) == pytest.approx(3.0)
    f.handled(5, 15, 2_000_000_000, 0)
    assert f.lag_seconds(now_ns=9_000_000_000) == 0.0


def test_halted_state_shows_in_figures_and_logs_an_error() -> None:
    stream = io.StringIO()
    handler = configure_logging("json", stream=stream)
    try:
        obs = WorkerObserver("projector", "p1", logging.getLogger("eventkit.projection"))
        obs.state("halted", error="seq 3 (Bad): ValueError")
    finally:
        logging.getLogger("eventkit").removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["level"] == "error" and line["event"] == "halted" and line["worker"] == "p1"
    assert m.worker_figures("projector", "p1").halted
    assert m.worker_figures("projector", "p1").values()["eventkit_halted"] == 1


def test_state_changes_are_one_json_line_each() -> None:
    stream = io.StringIO()
    handler = configure_logging("json", stream=stream)
    try:
        obs = WorkerObserver("projector", "balances", logging.getLogger("eventkit.projection"))
        obs.state("starting")
        obs.lease_taken("host:1:abc", 0)
        obs.state("catching-up", checkpoint=0)
        obs.state("live", checkpoint=42)
        obs.state("live", checkpoint=42)  # no change: no line
        obs.lease_lost("host:1:abc")
        obs.state("stopped", checkpoint=42)
    finally:
        logging.getLogger("eventkit").removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [x["event"] for x in lines] == [
        "starting",
        "lease_taken",
        "catching_up",
        "caught_up",
        "lease_lost",
        "stopped",
    ]
    caught = lines[3]
    assert caught["message"] == "balances: caught up at 42"
    assert caught["checkpoint"] == 42 and caught["kind"] == "projector"
    assert caught["time"].endswith("Z") and caught["logger"] == "eventkit.projection"


def test_text_format_keeps_the_plain_message() -> None:
    stream = io.StringIO()
    handler = configure_logging("text", stream=stream)
    try:
        WorkerObserver("reactor", "mailer", logging.getLogger("eventkit.reaction")).state("running")
    finally:
        logging.getLogger("eventkit").removeHandler(handler)
    assert re.search(r"INFO eventkit\.reaction: mailer: running$", stream.getvalue().strip())


def test_an_unknown_log_format_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="text, json"):
        configure_logging("xml")


def test_metrics_port_in_use_is_a_clear_error() -> None:
    first = serve_metrics(0, "127.0.0.1")
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            serve_metrics(first.port, "127.0.0.1")
    finally:
        first.close()


def dashboard_queries() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            q = node.get("query")
            if isinstance(q, dict) and isinstance(q.get("query"), str):
                exprs.append(q["query"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(data)
    return exprs


def test_dashboard_is_valid_json_and_queries_only_exported_metrics() -> None:
    data = json.loads(DASHBOARD.read_text())
    assert data["uid"] == "eventkit" and data["panels"]
    exprs = dashboard_queries()
    assert exprs
    used = {name for e in exprs for name in re.findall(r"\beventkit_[a-z_]+", e)}
    exported = set(metric_names())
    assert used - exported == set(), "the dashboard queries metrics eventkit does not export"
    # and it shows every worker and process figure
    bases = {n.removesuffix("_total") for n in used}
    for info in (*m.WORKER_METRICS, *m.PROCESS_METRICS, *m.HISTOGRAMS):
        assert info.name in bases or any(b.startswith(info.name) for b in bases), info.name
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))


def test_otel_metrics_report_the_figures() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from eventkit.observability.otel_metrics import enable_otel_metrics

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    recorder = enable_otel_metrics(provider)
    try:
        obs = WorkerObserver("reactor", "mailer", logging.getLogger("eventkit.reaction"))
        obs.delivered(7, 1_000, 2, deliveries=2)
        obs.figures.applied += 1
        obs.apply(lambda rec, db: None)(None, None)
        data = reader.get_metrics_data()
    finally:
        m.remove_recorder(recorder)
        provider.shutdown()
    points: dict[str, Any] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    if p.attributes.get("worker") == "mailer":
                        points[metric.name] = p
    assert points["eventkit_lag_events"].value == 2
    assert points["eventkit_redeliveries"].value == 1
    assert points["eventkit_events_applied"].value == 1
    assert points["eventkit_handler_duration_seconds"].count == 1


BLOCKER = textwrap.dedent(
    """
    import sys, importlib.abc
    tried = []
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("opentelemetry", "prometheus_client"):
                tried.append(name)
                raise ImportError(f"blocked: {name}")
            return None
    sys.meta_path.insert(0, Block())
    """
)


def test_without_the_extras_eventkit_imports_no_opentelemetry_module(tmp_path: Path) -> None:
    script = BLOCKER + textwrap.dedent(
        """
        import asyncio, json
        import eventkit
        from eventkit import Event, InMemoryEventStore, Projector, on
        from eventkit.observability import tracing
        from eventkit.observability.prometheus import serve_metrics
        import eventkit.cli.main  # the CLI with every command group
        from eventkit.errors import ConfigError

        class Noted(Event):
            n: int

        async def main():
            store = InMemoryEventStore("s")
            await store.append("s.note.a", [Noted(n=1)])
            recs = await store.read("s.note.a")
            assert "traceparent" not in recs[0].headers
        asyncio.run(main())
        try:
            serve_metrics(0)
            hint = None
        except ConfigError as e:
            hint = str(e)
        loaded = sorted(n for n in sys.modules
                        if n.split(".")[0] in ("opentelemetry", "prometheus_client"))
        print(json.dumps({"loaded": loaded, "tried": sorted(set(tried)),
                          "available": tracing.AVAILABLE, "hint": hint}))
        """
    )
    path = tmp_path / "noextra.py"
    path.write_text(script)
    proc = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["available"] is False
    # one guarded import of the API when eventkit loads; prometheus_client only when asked
    assert out["tried"] == ["opentelemetry", "prometheus_client"]
    assert "pip install 'eventkit[metrics]'" in out["hint"]
