"""Deadlines (``ctx.schedule``) and retries of parked events, delivered to one reactor.

A deadline is stored as a schedule message ``<stream>._eventkit.schedule.<reactor>.<id>`` that
the server publishes at its due time to ``<stream>._eventkit.reactor.<reactor>.due``, a subject
only that reactor's consumer follows. The event's type travels as ``Eventkit-Due-Type`` (not
``Eventkit-Type``), so projectors and ``read_all`` pass deadlines over. ``dlq retry`` stores a
small message on ``<stream>._eventkit.reactor.<reactor>.retry`` naming the parked sequence; a
worker of the reactor picks it up and runs the handler on the original event (same derived ids).
"""

from __future__ import annotations

from typing import Any

from eventkit.domain.events import new_event_id as new_id
from eventkit.observability.tracing import trace_headers
from eventkit.reaction.context import Deadline
from eventkit.store import protocol as p
from eventkit.store import schedules

DUE_TYPE = "Eventkit-Due-Type"
DUE_ID = "Eventkit-Due-Id"
RETRY_SEQUENCE = "Eventkit-Retry-Sequence"


def due_subject(stream: str, reactor: str) -> str:
    return f"{stream}.{p.SYSTEM_TOKEN}.reactor.{reactor}.due"


def retry_subject(stream: str, reactor: str) -> str:
    return f"{stream}.{p.SYSTEM_TOKEN}.reactor.{reactor}.retry"


def schedule_subject(stream: str, reactor: str, event_id: str) -> str:
    return f"{stream}.{p.SYSTEM_TOKEN}.schedule.{reactor}.{event_id}"


class JetStreamScheduler:
    """Stores deadlines as server message schedules (nats-server 2.12+)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def schedule(self, deadline: Deadline) -> None:
        store = self.store
        await schedules.enable_schedules(store)
        subject = schedule_subject(store.stream, deadline.reactor, deadline.event_id)
        headers, payload = store.codec.encode(subject, deadline.event, deadline.event_id)
        headers[DUE_TYPE] = headers.pop(p.EVENT_TYPE)
        headers[DUE_ID] = deadline.event_id
        headers.update(deadline.headers)
        headers.update(trace_headers() or {})  # the deadline continues the handler's trace
        headers[schedules.SCHEDULE] = schedules.schedule_at(deadline.due)
        headers[schedules.SCHEDULE_TARGET] = due_subject(store.stream, deadline.reactor)
        await schedules.publish(store, subject, payload, headers)


async def request_retry(store: Any, reactor: str, sequence: int) -> int:
    """Ask the reactor's workers to run the handler on parked event ``sequence`` again."""
    headers = {p.MSG_ID: new_id(), RETRY_SEQUENCE: str(sequence), p.SYSTEM: "retry"}
    return await schedules.publish(store, retry_subject(store.stream, reactor), b"", headers)


__all__ = ["DUE_ID", "DUE_TYPE", "RETRY_SEQUENCE", "JetStreamScheduler", "request_retry"]
