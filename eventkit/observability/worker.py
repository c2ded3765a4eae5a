"""The observer of one projector or reactor runner: its figures, its state-change log lines and
the spans around its handlers, behind one-line hooks in the runners.

::

    self.obs = WorkerObserver("projector", projector.name, log)
    self.obs.state("live", checkpoint=self.checkpoint)      # logs once per change
    apply = self.obs.apply(projector.apply)                  # the handler itself when off

With tracing and duration recording off, the wrappers hand back the handler unchanged: the
per-event path costs nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from eventkit.observability import metrics, tracing
from eventkit.observability.logs import state_change

_MESSAGES = {
    "starting": "starting",
    "standby": "standing by (another runner holds the lease)",
    "catching-up": "catching up from %(checkpoint)s",
    "live": "caught up at %(checkpoint)s",
    "running": "running",
    "waiting": "waiting for %(what)s",
    "halted": "halted at %(error)s",
    "stopped": "stopped at %(checkpoint)s",
}
_EVENTS = {"live": "caught_up", "catching-up": "catching_up"}
_LEVELS = {"halted": logging.ERROR, "waiting": logging.WARNING}


class WorkerObserver:
    """Figures, logs and spans of one runner (``kind`` projector or reactor)."""

    def __init__(self, kind: metrics.WorkerKind, name: str, logger: logging.Logger) -> None:
        self.kind = kind
        self.name = name
        self.log = logger
        self.figures = metrics.worker_figures(kind, name)
        self.current = ""

    # -- state changes ------------------------------------------------------------------------
    def state(self, new: str, **facts: Any) -> None:
        """The runner is now in state ``new``: log it once per change (not per poll)."""
        if new == self.current:
            return
        self.current = new
        f = self.figures
        f.state = new
        f.running = new not in ("stopped", "halted")
        if new == "live":
            f.lag_events = 0
        f.halted = new == "halted"
        text = _MESSAGES.get(new, new)
        try:
            message = text % facts
        except (KeyError, TypeError):
            message = new
        state_change(
            self.log,
            self.kind,
            self.name,
            _EVENTS.get(new, new),
            "%s",
            message,
            level=_LEVELS.get(new, logging.INFO),
            state=new,
            **facts,
        )

    def lease_taken(self, owner: str, checkpoint: int) -> None:
        self.figures.checkpoint = max(self.figures.checkpoint, checkpoint)
        state_change(
            self.log,
            self.kind,
            self.name,
            "lease_taken",
            "lease taken by %s at checkpoint %d",
            owner,
            checkpoint,
            owner=owner,
            checkpoint=checkpoint,
        )

    def lease_lost(self, owner: str) -> None:
        self.current = ""
        state_change(
            self.log,
            self.kind,
            self.name,
            "lease_lost",
            "lease lost to another runner; standing by",
            level=logging.WARNING,
            owner=owner,
        )

    def parked(self, sequence: int, event_type: str, attempts: int, error: str) -> None:
        self.figures.parked += 1
        state_change(
            self.log,
            self.kind,
            self.name,
            "parked",
            "parked seq %d (%s) after %d attempts: %s",
            sequence,
            event_type,
            attempts,
            error,
            level=logging.ERROR,
            sequence=sequence,
            event_type=event_type,
            attempts=attempts,
            error=error,
        )

    # -- figures --------------------------------------------------------------------------------
    def batch(self, n: int, sequence: int, timestamp_ns: int, pending: int, started: float) -> None:
        """A projector committed ``n`` events up to ``sequence``; ``started``: perf_counter()."""
        self.figures.handled(n, sequence, timestamp_ns, pending)
        if metrics.RECORDERS:
            metrics.record_batch(self.kind, self.name, time.perf_counter() - started)

    def failed(self) -> None:
        self.figures.failed += 1

    def delivered(self, sequence: int, timestamp_ns: int, pending: int, deliveries: int) -> None:
        """A reactor was handed the event at ``sequence`` (its ``deliveries``-th delivery)."""
        f = self.figures
        f.lag_events = pending
        if sequence > f.checkpoint:
            f.checkpoint = sequence
            f.last_event_ns = timestamp_ns
        if deliveries > 1:
            f.redelivered += 1

    # -- handlers -------------------------------------------------------------------------------
    def apply(self, apply: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        """A projector's ``apply(record, db)`` traced and timed, or itself when both are off."""
        traced = tracing.traced_apply(self.name, apply)
        if not metrics.RECORDERS:
            return traced
        kind, name = self.kind, self.name

        def timed(record: Any, db: Any) -> None:
            t0 = time.perf_counter()
            try:
                traced(record, db)
            finally:
                metrics.record_handler(kind, name, time.perf_counter() - t0)

        return timed

    def apply_many(
        self, apply_many: Callable[[list[Any], Any], None]
    ) -> Callable[[list[Any], Any], None]:
        """A projector's bulk ``apply_many(records, db)`` in one span, or itself when off."""
        return tracing.traced_apply_many(self.name, apply_many)

    async def handle(
        self, handle: Callable[[Any, Any], Awaitable[None]], record: Any, ctx: Any
    ) -> None:
        """Run a reactor's handler in a consumer span (its outputs' appends become its
        children), counting it and timing it."""
        if tracing.tracer() is None and not metrics.RECORDERS:
            try:
                await handle(record, ctx)
            except Exception:
                self.figures.failed += 1
                raise
            self.figures.applied += 1
            return
        t0 = time.perf_counter()
        with tracing.consume_span(self.kind, self.name, record):
            try:
                await handle(record, ctx)
            except Exception:
                self.figures.failed += 1  # the span records the exception itself
                raise
            finally:
                if metrics.RECORDERS:
                    metrics.record_handler(self.kind, self.name, time.perf_counter() - t0)
        self.figures.applied += 1


__all__ = ["WorkerObserver"]
