"""eventkit's figures as OpenTelemetry metrics (extra ``otel``), for a meter provider the
application configured (an OTLP exporter, say)::

    from opentelemetry import metrics
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    enable_otel_metrics()                # eventkit run does this when a provider is set

Counters and gauges are observable instruments read at each collection; the two duration
histograms are recorded as handlers and batches finish. Names are those of the Prometheus
endpoint without the ``_total`` suffix (OpenTelemetry adds it on export to Prometheus).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from eventkit.errors import ConfigError
from eventkit.observability import metrics

_enabled: dict[int, OtelRecorder] = {}


def configured() -> bool:
    """Whether the OpenTelemetry API is installed and a real meter provider is set."""
    try:
        from opentelemetry import metrics as otel
        from opentelemetry.metrics import NoOpMeterProvider
    except ImportError:
        return False
    provider = otel.get_meter_provider()
    return not isinstance(provider, NoOpMeterProvider) and type(provider).__name__ not in (
        "_ProxyMeterProvider",
        "ProxyMeterProvider",
    )


class OtelRecorder:
    """The histograms; also owns the observable instruments (kept alive with it)."""

    def __init__(self, meter: Any) -> None:
        handler, batch = metrics.HISTOGRAMS
        self._handler = meter.create_histogram(handler.name, unit="s", description=handler.help)
        self._batch = meter.create_histogram(batch.name, unit="s", description=batch.help)
        self.instruments: list[Any] = []
        for info in metrics.WORKER_METRICS:
            name = info.name
            make = (
                meter.create_observable_counter
                if info.kind == "counter"
                else meter.create_observable_gauge
            )
            self.instruments.append(
                make(
                    name, callbacks=[_worker_callback(name)], unit=info.unit, description=info.help
                )
            )
        for info in metrics.PROCESS_METRICS:
            self.instruments.append(
                meter.create_observable_counter(
                    info.name, callbacks=[_process_callback(info.name)], description=info.help
                )
            )

    def handler(self, kind: str, worker: str, seconds: float) -> None:
        self._handler.record(seconds, {"kind": kind, "worker": worker})

    def batch(self, kind: str, worker: str, seconds: float) -> None:
        self._batch.record(seconds, {"kind": kind, "worker": worker})


def _worker_callback(name: str) -> Any:
    from opentelemetry.metrics import Observation

    def observe(options: Any) -> Iterable[Any]:
        return [
            Observation(f.values()[name], {"kind": f.kind, "worker": f.name})
            for f in metrics.all_workers()
        ]

    return observe


def _process_callback(name: str) -> Any:
    from opentelemetry.metrics import Observation

    def observe(options: Any) -> Iterable[Any]:
        values = metrics.PROCESS.values()[name]
        return [Observation(v, {"stream": s}) for s, v in sorted(values.items())]

    return observe


def enable_otel_metrics(meter_provider: Any = None) -> OtelRecorder:
    """Report eventkit's metrics through ``meter_provider`` (default: the global one); once
    per provider."""
    try:
        from opentelemetry import metrics as otel
    except ImportError as e:
        raise ConfigError(
            "OpenTelemetry metrics need the OpenTelemetry API: pip install 'eventkit[otel]'"
        ) from e
    provider = meter_provider or otel.get_meter_provider()
    found = _enabled.get(id(provider))
    if found is not None:
        return found
    from eventkit._version import __version__

    recorder = OtelRecorder(provider.get_meter("eventkit", __version__))
    _enabled[id(provider)] = recorder
    metrics.add_recorder(recorder)
    return recorder


__all__ = ["OtelRecorder", "configured", "enable_otel_metrics"]
