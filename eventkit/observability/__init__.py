"""Observability: traces (OpenTelemetry), metrics (Prometheus text format or OpenTelemetry) and
structured logs of eventkit's appends, projectors and reactors.

- :mod:`~eventkit.observability.tracing`: producer spans per append, consumer spans per handled
  event, the trace context carried in message headers (``traceparent``). Extra ``otel``.
- :mod:`~eventkit.observability.metrics`: the figures (per worker and per process);
  :mod:`~eventkit.observability.prometheus` serves them (extra ``metrics``),
  :mod:`~eventkit.observability.otel_metrics` reports them to an OpenTelemetry meter provider.
- :mod:`~eventkit.observability.logs`: one line per state change, as text or JSON.

Nothing here imports an optional package unless it is installed and asked for.
"""

from __future__ import annotations

from eventkit.observability.logs import configure_logging
from eventkit.observability.metrics import metric_names

__all__ = ["configure_logging", "metric_names"]
