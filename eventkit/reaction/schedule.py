"""Deadlines (``ctx.schedule``) and retries of parked events, delivered to one reactor.

A deadline is stored as a schedule message ``<stream>._eventkit.schedule.<reactor>.<about>.<id>``
(``<about>``: a digest of the subject the deadline concerns) that the server publishes at its
due time to ``<stream>._eventkit.reactor.<reactor>.due``, a subject only that reactor's consumer
follows. The event's type travels as ``Eventkit-Due-Type`` (not ``Eventkit-Type``), so
projectors and ``read_all`` pass deadlines over; the subject it concerns as
``Eventkit-Due-Subject``. A deadline about a personal-data subject (or of a ``personal_data``
class) is sealed under that subject's data key; ``forget`` erases the subject's deadlines,
pending and fired (:func:`erase_deadlines`), and a fired copy whose subject was forgotten is
passed over and erased, never handled (:func:`open_due`). ``dlq retry`` stores a small message
on ``<stream>._eventkit.reactor.<reactor>.retry`` naming the parked sequence; a worker of the
reactor picks it up and runs the handler on the original event (same derived ids).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from eventkit.domain.events import new_event_id as new_id
from eventkit.errors import EventkitError, ForgottenError
from eventkit.observability.tracing import trace_headers
from eventkit.reaction.context import Deadline
from eventkit.store import schedules
from eventkit.store.erasure import is_marker
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import ENCRYPTION, EVENT_TYPE, MSG_ID, SYSTEM, SYSTEM_TOKEN

log = logging.getLogger("eventkit.reaction")

DUE_TYPE = "Eventkit-Due-Type"
DUE_ID = "Eventkit-Due-Id"
DUE_SUBJECT = "Eventkit-Due-Subject"
"""The subject a deadline concerns (its data key seals it; forgetting it erases it)."""
RETRY_SEQUENCE = "Eventkit-Retry-Sequence"


def due_subject(stream: str, reactor: str) -> str:
    return f"{stream}.{SYSTEM_TOKEN}.reactor.{reactor}.due"


def retry_subject(stream: str, reactor: str) -> str:
    return f"{stream}.{SYSTEM_TOKEN}.reactor.{reactor}.retry"


def schedule_subject(stream: str, reactor: str, event_id: str, about: str | None = None) -> str:
    if about is None:
        return f"{stream}.{SYSTEM_TOKEN}.schedule.{reactor}.{event_id}"
    return f"{stream}.{SYSTEM_TOKEN}.schedule.{reactor}.{about_token(about)}.{event_id}"


def about_token(subject: str) -> str:
    """The token that files a subject's deadlines together (a digest: no name in clear)."""
    return hashlib.sha256(f"eventkit deadline\x00{subject}".encode()).hexdigest()[:32]


class JetStreamScheduler:
    """Stores deadlines as server message schedules (nats-server 2.12+)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def schedule(self, deadline: Deadline) -> None:
        store = self.store
        await schedules.enable_schedules(store)
        about = deadline.about
        subject = schedule_subject(store.stream, deadline.reactor, deadline.event_id, about)
        codec = store.codec
        # sealed (when personal) under the key of the subject it is about, not the schedule's
        sealing = about if about is not None else subject
        if codec.cipher is not None and codec.needs_keys(sealing, [deadline.event]):
            await codec.cipher.prepare([sealing], create=True)  # ForgottenError once forgotten
        if about is not None:
            last = await store.last_message(about)
            if last is not None and is_marker(last.headers):
                raise ForgottenError(about)
        headers, payload = codec.encode(sealing, deadline.event, deadline.event_id)
        headers[DUE_TYPE] = headers.pop(EVENT_TYPE)
        headers[DUE_ID] = deadline.event_id
        if about is not None:
            headers[DUE_SUBJECT] = about
        headers.update(deadline.headers)
        headers.update(trace_headers() or {})  # the deadline continues the handler's trace
        headers[schedules.SCHEDULE] = schedules.schedule_at(deadline.due)
        headers[schedules.SCHEDULE_TARGET] = due_subject(store.stream, deadline.reactor)
        await schedules.publish(store, subject, payload, headers)


async def open_due(store: Any, stored: StoredMessage) -> StoredMessage | None:
    """A fired deadline as the message to decode (its type in ``Eventkit-Type``, its subject the
    one it concerns, whose key opens it); None to pass over: not a deadline, or about a subject
    forgotten since (then the fired copy is erased too)."""
    headers = dict(stored.headers)
    if DUE_TYPE not in headers:
        return None
    headers[EVENT_TYPE] = headers.pop(DUE_TYPE)
    headers[MSG_ID] = headers.get(DUE_ID, "")
    about = headers.get(DUE_SUBJECT)
    if about is None:  # stored before deadlines named their subject
        return StoredMessage(stored.subject, stored.sequence, stored.time, headers, stored.data)
    forgotten = False
    cipher = store.codec.cipher
    try:
        if cipher is not None and ENCRYPTION in headers:
            await cipher.prepare([about], create=False)
        last = await store.last_message(about)
        forgotten = last is not None and is_marker(last.headers)
    except ForgottenError:
        forgotten = True
    if forgotten:
        log.info("a deadline (seq %d) about a forgotten subject: passed over", stored.sequence)
        try:
            await store.delete(stored.sequence)
        except EventkitError as e:  # passed over all the same; forget run again erases it
            log.warning("cannot erase deadline seq %d: %s", stored.sequence, e)
        return None
    return StoredMessage(about, stored.sequence, stored.time, headers, stored.data)


async def erase_deadlines(store: Any, subject: str) -> int:
    """Erase (secure erase, one by one) every deadline about ``subject``: the schedules still
    pending and the copies already fired. Returns how many were erased."""
    if not hasattr(store, "js"):
        return 0  # deadlines live on JetStream only
    stream = store.stream
    pending = f"{stream}.{SYSTEM_TOKEN}.schedule.*.{about_token(subject)}.*"
    fired = f"{stream}.{SYSTEM_TOKEN}.reactor.*.due"
    sequences = [m.sequence async for m in store.read_raw(pending)]
    sequences += [
        m.sequence
        async for m in store.read_raw(fired)
        if (m.headers or {}).get(DUE_SUBJECT) == subject
    ]
    erased = 0
    for seq in sequences:
        if await store.delete(seq):
            erased += 1
    return erased


async def request_retry(store: Any, reactor: str, sequence: int) -> int:
    """Ask the reactor's workers to run the handler on parked event ``sequence`` again."""
    headers = {MSG_ID: new_id(), RETRY_SEQUENCE: str(sequence), SYSTEM: "retry"}
    return await schedules.publish(store, retry_subject(store.stream, reactor), b"", headers)


__all__ = [
    "DUE_ID",
    "DUE_SUBJECT",
    "DUE_TYPE",
    "RETRY_SEQUENCE",
    "JetStreamScheduler",
    "erase_deadlines",
    "open_due",
    "request_retry",
]
