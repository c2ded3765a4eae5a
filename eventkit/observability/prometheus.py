"""eventkit's figures in the Prometheus text format (the optional extra ``metrics``:
``prometheus_client``).

::

    server = serve_metrics(9464)          # http://127.0.0.1:9464/metrics
    ...
    server.close()

``eventkit run --metrics-port 9464`` does this. The registry also holds the process and platform
collectors of ``prometheus_client`` (CPU, memory, open files of the worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eventkit.errors import ConfigError
from eventkit.observability import metrics

INSTALL_HINT = "pip install 'eventkit[metrics]'"


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError as e:
        raise ConfigError(
            f"metrics in the Prometheus format need the prometheus_client package: {INSTALL_HINT}"
        ) from e
    return prometheus_client


class EventkitCollector:
    """Reads the figures at scrape time (nothing is kept twice)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        workers = metrics.all_workers()
        for info in metrics.WORKER_METRICS:
            family = CounterMetricFamily if info.kind == "counter" else GaugeMetricFamily
            fam = family(info.name, info.help, labels=["kind", "worker"], unit="")
            for f in workers:
                fam.add_metric([f.kind, f.name], f.values()[info.name])
            yield fam
        process = metrics.PROCESS.values()
        streams = sorted({s for values in process.values() for s in values})
        for info in metrics.PROCESS_METRICS:
            fam = CounterMetricFamily(info.name, info.help, labels=["stream"])
            for stream in streams:  # 0 until the first conflict: rate() needs the series
                fam.add_metric([stream], process[info.name].get(stream, 0))
            yield fam

    def describe(self) -> list[Any]:
        return []  # collected on each scrape, never at registration


class PrometheusRecorder:
    """The duration histograms, in a Prometheus registry."""

    def __init__(self, registry: Any) -> None:
        client = _client()
        handler, batch = metrics.HISTOGRAMS
        self._handler = client.Histogram(
            handler.name.removesuffix("_seconds"),
            handler.help,
            ["kind", "worker"],
            unit="seconds",
            registry=registry,
            buckets=metrics.HANDLER_BUCKETS,
        )
        self._batch = client.Histogram(
            batch.name.removesuffix("_seconds"),
            batch.help,
            ["kind", "worker"],
            unit="seconds",
            registry=registry,
            buckets=metrics.BATCH_BUCKETS,
        )
        self._handlers: dict[tuple[str, str], Any] = {}
        self._batches: dict[tuple[str, str], Any] = {}

    def handler(self, kind: str, worker: str, seconds: float) -> None:
        child = self._handlers.get((kind, worker))
        if child is None:
            child = self._handlers[(kind, worker)] = self._handler.labels(kind, worker)
        child.observe(seconds)

    def batch(self, kind: str, worker: str, seconds: float) -> None:
        child = self._batches.get((kind, worker))
        if child is None:
            child = self._batches[(kind, worker)] = self._batch.labels(kind, worker)
        child.observe(seconds)


def make_registry() -> tuple[Any, PrometheusRecorder]:
    """A registry with eventkit's collector, its histograms and the process collectors."""
    client = _client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(EventkitCollector())
    client.ProcessCollector(registry=registry)
    client.PlatformCollector(registry=registry)
    return registry, PrometheusRecorder(registry)


@dataclass
class MetricsServer:
    """The running ``/metrics`` endpoint; :meth:`close` stops it and its recording."""

    port: int
    host: str
    registry: Any
    recorder: PrometheusRecorder
    _server: Any
    _thread: Any

    def text(self) -> str:
        """What a scrape would return now."""
        out: bytes = _client().generate_latest(self.registry)
        return out.decode()

    def close(self) -> None:
        metrics.remove_recorder(self.recorder)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(port: int, host: str = "127.0.0.1") -> MetricsServer:
    """Serve eventkit's metrics at ``http://host:port/metrics`` from a background thread.

    Raises ``ConfigError`` when ``prometheus_client`` is missing (with the install hint) or the
    port cannot be bound."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"metrics port must be an int 0..65535, got {port!r}")
    client = _client()
    registry, recorder = make_registry()
    try:
        server, thread = client.start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {e.strerror or e}; pick a free port with "
            f"--metrics-port"
        ) from e
    metrics.add_recorder(recorder)
    return MetricsServer(server.server_port, host, registry, recorder, server, thread)


__all__ = [
    "EventkitCollector",
    "MetricsServer",
    "PrometheusRecorder",
    "make_registry",
    "serve_metrics",
]
