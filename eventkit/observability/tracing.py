"""Tracing with OpenTelemetry (the optional extra ``otel``): a producer span per append and a
consumer span per event a projector or reactor handles, linked by W3C ``traceparent`` headers.

eventkit only uses the OpenTelemetry *API*; the application configures the SDK (exporter,
sampler, resource) as for any other library::

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    trace.set_tracer_provider(TracerProvider())      # + a span processor and exporter

Without the extra nothing of OpenTelemetry is imported (one guarded import at module level);
with it but no tracer provider set, every hook returns at its first check and appends carry no
trace headers. The context travels in the message headers through the propagator API (default:
``traceparent``, ``tracestate``, ``baggage``), so a service in another language continues the
same trace.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

try:  # the one check: is the extra installed?
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by a subprocess test with otel blocked
    _trace = None  # type: ignore[assignment]

AVAILABLE = _trace is not None
"""True when the OpenTelemetry API is importable."""

TRACER_NAME = "eventkit"
SYSTEM = "nats"

_F = TypeVar("_F", bound=Callable[..., Coroutine[Any, Any, list[int]]])


class _Write(Protocol):
    subject: str
    ids: list[str]

    @property
    def events(self) -> Sequence[Any]: ...


class _Record(Protocol):
    subject: str
    event_id: str
    event_type: str
    sequence: int
    headers: dict[str, str]


_cache: tuple[Any, Any] = (None, None)  # (tracer provider, its eventkit tracer)
_provider: Any = None  # set_tracer_provider's, over the global one


def set_tracer_provider(provider: Any) -> None:
    """Make spans with ``provider`` instead of OpenTelemetry's global one (``None``: the global
    one again), e.g. a test's provider with an in-memory exporter."""
    global _provider
    _provider = provider


_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ


def _global_provider() -> Any:
    """OpenTelemetry's global tracer provider, None while none is set. Reads the API's module
    global (``get_tracer_provider`` looks up the environment on every call: ~1 µs per append)."""
    provider = getattr(_trace, "_TRACER_PROVIDER", _trace)
    if provider is None and not _FROM_ENV:
        return None
    if provider is _trace or provider is None:
        return _trace.get_tracer_provider()  # an API without that global, or set by env var
    return provider


def tracer() -> Any:
    """eventkit's tracer, or None when tracing is off (no extra, or no tracer provider set)."""
    global _cache
    if _trace is None:
        return None
    provider = _provider or _global_provider()
    if provider is None:
        return None
    if provider is _cache[0]:
        return _cache[1]
    if isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
        return None
    from eventkit._version import __version__

    _cache = (provider, provider.get_tracer(TRACER_NAME, __version__))
    return _cache[1]


def active() -> bool:
    """Whether spans are being made (the extra is installed and a tracer provider is set)."""
    return tracer() is not None


def trace_headers() -> dict[str, str] | None:
    """The current trace context as message headers, or None when tracing is off."""
    if _trace is None or tracer() is None:
        return None
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    return carrier or None


def destination_template(subject: str) -> str:
    """The low-cardinality form of a subject for span names: ``bank.account.*``."""
    tokens = subject.split(".")
    return ".".join(tokens[:2]) + ".*" if len(tokens) > 2 else subject


# -- appends (producer) ------------------------------------------------------------------------
@contextlib.contextmanager
def _send_span(stream: str, writes: Sequence[_Write]) -> Iterator[Any]:
    t = tracer()
    first = writes[0].subject
    count = sum(len(w.ids) for w in writes)
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": first,
        "messaging.destination.template": destination_template(first),
        "eventkit.stream": stream,
    }
    if count == 1:
        attributes["messaging.message.id"] = writes[0].ids[0]
        attributes["eventkit.event_type"] = writes[0].events[0].event_type
    else:
        attributes["messaging.batch.message_count"] = count
    if len(writes) > 1:
        attributes["eventkit.subjects"] = [w.subject for w in writes]
    with t.start_as_current_span(
        f"send {destination_template(first)}",
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def traced_append(fn: _F) -> _F:
    """Decorates a store's ``append_many``: counts appends, conflicts and (when tracing is on)
    wraps the call in a producer span whose context the encoded messages carry."""
    from eventkit.errors import ConcurrencyError
    from eventkit.observability.metrics import PROCESS

    @functools.wraps(fn)
    async def append_many(self: Any, writes: Sequence[Any]) -> list[int]:
        try:
            if tracer() is None or not writes:
                result = await fn(self, writes)
            else:
                with _send_span(self.stream, writes) as span:
                    result = await fn(self, writes)
                    span.set_attribute("eventkit.sequence", result[-1])
        except ConcurrencyError:
            PROCESS.conflict(self.stream)
            raise
        PROCESS.appended(self.stream, writes)
        return result

    return cast(_F, append_many)


# -- handled events (consumer) -----------------------------------------------------------------
def _consume_attributes(kind: str, worker: str, record: _Record) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.subject,
        "messaging.destination.template": destination_template(record.subject),
        "messaging.message.id": record.event_id,
        "messaging.consumer.group.name": worker,
        "eventkit.worker.kind": kind,
        "eventkit.event_type": record.event_type,
        "eventkit.sequence": record.sequence,
    }


@contextlib.contextmanager
def consume_span(kind: str, worker: str, record: _Record) -> Iterator[Any]:
    """A consumer span for one handled event, child of the trace its headers carry."""
    t = tracer()
    if t is None:
        yield None
        return
    parent = _propagate.extract(record.headers) if record.headers else None
    with t.start_as_current_span(
        f"process {destination_template(record.subject)}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=_consume_attributes(kind, worker, record),
        record_exception=True,
        set_status_on_exception=True,
    ) as span:
        yield span


def traced_apply(worker: str, apply: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """``apply(record, db)`` of a projector in a consumer span, or ``apply`` itself when off."""
    if tracer() is None:
        return apply

    def traced(record: Any, db: Any) -> None:
        with consume_span("projector", worker, record):
            apply(record, db)

    return traced


def traced_apply_many(
    worker: str, apply_many: Callable[[list[Any], Any], None]
) -> Callable[[list[Any], Any], None]:
    """A projector's bulk ``apply_many(records, db)`` in one consumer span linked to the trace of
    every record (the messaging conventions' batch process span), or itself when off."""
    t = tracer()
    if t is None:
        return apply_many

    def traced(records: list[Any], db: Any) -> None:
        links = []
        for r in records:
            ctx = _trace.get_current_span(_propagate.extract(r.headers)).get_span_context()
            if ctx.is_valid:
                links.append(Link(ctx))
        first = records[0]
        attributes = _consume_attributes("projector", worker, first)
        del attributes["messaging.message.id"]
        attributes["messaging.batch.message_count"] = len(records)
        with t.start_as_current_span(
            f"process {destination_template(first.subject)}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ):
            apply_many(records, db)

    return traced


def mark_failed(span: Any, error: BaseException) -> None:
    """Record a handler's failure on its span (the runner goes on: retry, park or halt)."""
    if span is not None:
        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)[:200]))


def add_attributes(span: Any, attributes: Mapping[str, Any]) -> None:
    if span is not None:
        span.set_attributes(dict(attributes))


__all__ = [
    "AVAILABLE",
    "active",
    "consume_span",
    "destination_template",
    "mark_failed",
    "set_tracer_provider",
    "trace_headers",
    "traced_append",
    "traced_apply",
    "traced_apply_many",
    "tracer",
]
