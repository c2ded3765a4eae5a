"""The figures eventkit keeps for metrics: per projector and reactor of this process, and per
process (appends, conflicts, retries).

Counters and gauges are plain attributes updated where the work happens (an integer add) and
read only when something scrapes them (:mod:`eventkit.observability.prometheus`,
:mod:`eventkit.observability.otel_metrics`). Durations (handler and batch histograms) are
measured only while an exporter records them: with none, timing costs nothing.

The metric names, as Prometheus shows them (labels ``kind`` = projector | reactor, ``worker`` =
its name; ``stream`` for the process counters)::

    eventkit_events_applied_total   eventkit_lag_events        eventkit_lag_seconds
    eventkit_handler_duration_seconds (histogram)   eventkit_batch_duration_seconds (histogram)
    eventkit_redeliveries_total     eventkit_parked_total      eventkit_failures_total
    eventkit_halted                 eventkit_checkpoint        eventkit_worker_up
    eventkit_appends_total          eventkit_appended_events_total
    eventkit_append_conflicts_total eventkit_append_retries_total
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

WorkerKind = Literal["projector", "reactor"]

HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class MetricInfo:
    name: str  # the Prometheus name (counters without _total)
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    unit: str = ""


WORKER_METRICS = (
    MetricInfo(
        "eventkit_events_applied", "counter", "Events a projector applied or a reactor handled."
    ),
    MetricInfo(
        "eventkit_lag_events", "gauge", "Events in the stream the worker has not handled yet."
    ),
    MetricInfo(
        "eventkit_lag_seconds",
        "gauge",
        "Age of the last handled event while behind (0 when caught up).",
        "s",
    ),
    MetricInfo(
        "eventkit_redeliveries", "counter", "Events delivered again after a failure or timeout."
    ),
    MetricInfo("eventkit_parked", "counter", "Events parked as dead letters."),
    MetricInfo("eventkit_failures", "counter", "Handler calls that raised."),
    MetricInfo("eventkit_halted", "gauge", "1 while a projector is halted on a bad event."),
    MetricInfo("eventkit_checkpoint", "gauge", "Stream sequence of the last event handled."),
    MetricInfo("eventkit_worker_up", "gauge", "1 while the worker runs in this process."),
)
HISTOGRAMS = (
    MetricInfo(
        "eventkit_handler_duration_seconds", "histogram", "Time in one event's handler.", "s"
    ),
    MetricInfo(
        "eventkit_batch_duration_seconds",
        "histogram",
        "Time to apply and commit one batch (projectors).",
        "s",
    ),
)
PROCESS_METRICS = (
    MetricInfo("eventkit_appends", "counter", "Appends stored (one per append call)."),
    MetricInfo("eventkit_appended_events", "counter", "Events stored by appends."),
    MetricInfo("eventkit_append_conflicts", "counter", "Appends refused as a ConcurrencyError."),
    MetricInfo(
        "eventkit_append_retries", "counter", "Append attempts sent again (no answer, or a race)."
    ),
)


def metric_names() -> list[str]:
    """Every series name eventkit exports, as a Prometheus query names it."""
    out: list[str] = []
    for m in (*WORKER_METRICS, *PROCESS_METRICS):
        out.append(m.name + "_total" if m.kind == "counter" else m.name)
    for h in HISTOGRAMS:
        out += [h.name + "_bucket", h.name + "_sum", h.name + "_count"]
    return out


@dataclass(slots=True)
class Figures:
    """One projector or reactor in this process (kept across its runner's restarts)."""

    kind: WorkerKind
    name: str
    applied: int = 0
    lag_events: int = 0
    last_event_ns: int = 0
    checkpoint: int = 0
    redelivered: int = 0
    parked: int = 0
    failed: int = 0
    halted: bool = False
    running: bool = False
    state: str = "starting"

    def lag_seconds(self, now_ns: int | None = None) -> float:
        if self.lag_events <= 0 or not self.last_event_ns:
            return 0.0
        now_ns = time.time_ns() if now_ns is None else now_ns
        return max(0.0, (now_ns - self.last_event_ns) / 1e9)

    def handled(self, n: int, sequence: int, timestamp_ns: int, pending: int) -> None:
        """``n`` events handled, the last at ``sequence`` (stream time ``timestamp_ns``) with
        ``pending`` more in the stream after it."""
        self.applied += n
        self.lag_events = pending
        if sequence > self.checkpoint:
            self.checkpoint = sequence
            self.last_event_ns = timestamp_ns

    def values(self) -> dict[str, float]:
        """The current value of every worker metric, by name."""
        return {
            "eventkit_events_applied": self.applied,
            "eventkit_lag_events": self.lag_events,
            "eventkit_lag_seconds": self.lag_seconds(),
            "eventkit_redeliveries": self.redelivered,
            "eventkit_parked": self.parked,
            "eventkit_failures": self.failed,
            "eventkit_halted": 1 if self.halted else 0,
            "eventkit_checkpoint": self.checkpoint,
            "eventkit_worker_up": 1 if self.running else 0,
        }


class Recorder(Protocol):
    """Something that records durations (a Prometheus or OpenTelemetry histogram pair)."""

    def handler(self, kind: str, worker: str, seconds: float) -> None: ...

    def batch(self, kind: str, worker: str, seconds: float) -> None: ...


_lock = threading.Lock()
_workers: dict[tuple[str, str], Figures] = {}
RECORDERS: list[Recorder] = []
"""The exporters recording durations; empty: nothing is timed."""


def worker_figures(kind: WorkerKind, name: str) -> Figures:
    """The figures of projector or reactor ``name`` in this process (made on first use)."""
    key = (kind, name)
    with _lock:
        found = _workers.get(key)
        if found is None:
            found = _workers[key] = Figures(kind, name)
        return found


def all_workers() -> list[Figures]:
    with _lock:
        return list(_workers.values())


def add_recorder(recorder: Recorder) -> None:
    if recorder not in RECORDERS:
        RECORDERS.append(recorder)


def remove_recorder(recorder: Recorder) -> None:
    if recorder in RECORDERS:
        RECORDERS.remove(recorder)


def record_handler(kind: str, worker: str, seconds: float) -> None:
    for r in RECORDERS:
        r.handler(kind, worker, seconds)


def record_batch(kind: str, worker: str, seconds: float) -> None:
    for r in RECORDERS:
        r.batch(kind, worker, seconds)


@dataclass
class ProcessCounters:
    """Appends of this process, per stream."""

    appends: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)

    def appended(self, stream: str, writes: Sequence[Any]) -> None:
        self.appends[stream] = self.appends.get(stream, 0) + 1
        n = 0
        for w in writes:
            n += len(w.ids)
        self.events[stream] = self.events.get(stream, 0) + n

    def conflict(self, stream: str) -> None:
        self.conflicts[stream] = self.conflicts.get(stream, 0) + 1

    def retried(self, stream: str) -> None:
        self.retries[stream] = self.retries.get(stream, 0) + 1

    def values(self) -> dict[str, dict[str, int]]:
        """Metric name -> {stream: value}."""
        return {
            "eventkit_appends": dict(self.appends),
            "eventkit_appended_events": dict(self.events),
            "eventkit_append_conflicts": dict(self.conflicts),
            "eventkit_append_retries": dict(self.retries),
        }


PROCESS = ProcessCounters()


def reset() -> None:
    """Forget every figure (for tests)."""
    with _lock:
        _workers.clear()
    PROCESS.appends.clear()
    PROCESS.events.clear()
    PROCESS.conflicts.clear()
    PROCESS.retries.clear()


__all__ = [
    "HISTOGRAMS",
    "PROCESS",
    "PROCESS_METRICS",
    "RECORDERS",
    "WORKER_METRICS",
    "Figures",
    "MetricInfo",
    "ProcessCounters",
    "Recorder",
    "add_recorder",
    "all_workers",
    "metric_names",
    "record_batch",
    "record_handler",
    "remove_recorder",
    "worker_figures",
]
