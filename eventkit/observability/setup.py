"""What ``eventkit run`` sets up before its workers start: the log format, the Prometheus
endpoint and, when the application configured a meter provider, OpenTelemetry metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eventkit.observability.logs import configure_logging


@dataclass
class Observing:
    """The running exporters; :meth:`close` stops them."""

    metrics: Any = None
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None


def start_observing(
    log_format: str = "text", metrics_port: int | None = None, metrics_host: str = "127.0.0.1"
) -> Observing:
    """Set the log format (state changes at INFO), serve ``/metrics`` on ``metrics_port`` (None:
    not served) and report to OpenTelemetry metrics when a meter provider is set.

    Raises ``ConfigError`` (before anything starts) for an unknown format, a missing
    ``prometheus_client`` or a port that cannot be bound."""
    configure_logging(log_format, level=logging.INFO)
    observing = Observing()
    if metrics_port is not None:
        from eventkit.observability.prometheus import serve_metrics

        observing.metrics = serve_metrics(metrics_port, metrics_host)
        logging.getLogger("eventkit.observability").info(
            "metrics at http://%s:%d/metrics",
            metrics_host,
            observing.metrics.port,
            extra={"eventkit": {"event": "metrics", "port": observing.metrics.port}},
        )
    from eventkit.observability import otel_metrics

    if otel_metrics.configured():
        otel_metrics.enable_otel_metrics()
    return observing


__all__ = ["Observing", "start_observing"]
