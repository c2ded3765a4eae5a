"""Applying one batch of delivered messages to a projector, inside the batch's transaction.

::

    applier = BatchApplier(projector, store, system)
    applier.apply(items, db, after=checkpoint)   # raises BadEvent(i, error) on the event at i

Per message: a marker (the subject was forgotten) calls ``projector.forget``; eventkit's system
events go to ``system``; types the projector does not handle are passed over by their
``Eventkit-Type`` header without decoding; foreign messages are decoded when the projector binds
their subject and passed over otherwise; events whose key was shredded are passed over. What is
passed over is counted per reason in the same transaction (``eventkit status``) and logged once
per reason and runner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from eventkit.errors import ForgottenError
from eventkit.observability.worker import WorkerObserver
from eventkit.projection import passedover
from eventkit.projection.projector import Projector, SystemEvents
from eventkit.projection.sql import is_outage
from eventkit.store.chain import ChainCheck
from eventkit.store.erasure import is_marker
from eventkit.store.nats.delivery import Delivered
from eventkit.store.records import StoredMessage, time_from_ns
from eventkit.store.wire_constants import EVENT_TYPE, SYSTEM, system_prefix

log = logging.getLogger("eventkit.projection")

_HINTS = {
    "foreign": ": messages without Eventkit-Type; bind their subjects with foreign_events",
    "forgotten": ": their data keys were shredded",
}


class Item(NamedTuple):
    """One delivered message with what its reply subject says about it (a tuple: one is made
    per message)."""

    sequence: int
    timestamp_ns: int
    pending: int
    msg: Delivered


class BadEvent(Exception):
    """The event at ``index`` of the batch failed (decoding or the handler)."""

    def __init__(self, index: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


class BadBulk(Exception):
    """A projector's ``apply_many`` failed on a run of events: find the bad one singly."""


def eventkits_own(subject: str, headers: dict[str, str], stream: str) -> bool:
    """eventkit's own messages that are not events (notices, deadlines, reactor requests)."""
    return (
        SYSTEM in headers
        or "Eventkit-Due-Type" in headers
        or subject.startswith(system_prefix(stream))
    )


class BatchApplier:
    """Folds a batch of items into one projector within a transaction the caller holds."""

    def __init__(
        self,
        projector: Projector,
        store: Any,
        system: SystemEvents | None,
        obs: WorkerObserver | None = None,
    ) -> None:
        self.obs = obs or WorkerObserver("projector", projector.name, log)
        self.projector = projector
        self.store = store
        self.system = system
        self._bulk = projector.applies_in_bulk()
        self._told: set[str] = set()
        self.chains = ChainCheck(trust_first=True) if projector.verify_chains else None
        self.only: Callable[[str], bool] | None = None
        """The subjects to apply when the consumer delivers more (the whole stream); the rest
        is not this projector's and passed over uncounted."""

    def apply(self, items: Sequence[Item], db: Session, *, after: int) -> int:
        """Apply the items past sequence ``after``; record what was passed over. Returns how
        many events the projector's handlers were given (the rest was passed over)."""
        projector = self.projector
        handles = projector.handles
        codec = self.store.codec
        decode, foreign = codec.decode_parts, codec.decode_foreign
        stream = self.store.stream
        system = self.system
        bulk: list[tuple[int, Any]] | None = [] if self._bulk else None
        apply, apply_many = (
            self.obs.apply(projector.apply),
            self.obs.apply_many(projector.apply_many),
        )
        skipped: dict[str, tuple[int, int]] = {}
        only = self.only
        applied = 0

        def flush() -> None:
            if not bulk:
                return
            try:
                apply_many([record for _, record in bulk], db)
            except Exception as e:
                if is_outage(e):
                    raise
                if len(bulk) == 1:
                    raise BadEvent(bulk[0][0], e) from e
                raise BadBulk from e
            bulk.clear()

        def passed(reason: str, sequence: int) -> None:
            n, _ = skipped.get(reason, (0, 0))
            skipped[reason] = (n + 1, sequence)
            self._tell(reason, sequence)

        for i, item in enumerate(items):
            if item.sequence <= after:
                continue
            msg = item.msg
            if only is not None and not only(msg.subject):
                continue
            headers = msg.headers or {}
            event_type = headers.get(EVENT_TYPE)
            if self.chains is not None:
                at = time_from_ns(item.timestamp_ns)
                problem = self.chains.check(
                    StoredMessage(msg.subject, item.sequence, at, headers, msg.data)
                )
                if problem is not None:
                    raise BadEvent(i, problem.error())
            try:
                if event_type is None:
                    stored = StoredMessage(
                        msg.subject,
                        item.sequence,
                        time_from_ns(item.timestamp_ns),
                        headers,
                        msg.data,
                    )
                    bound = projector.foreign_class(msg.subject)
                    if is_marker(headers):  # the subject was forgotten (here or elsewhere)
                        flush()
                        projector.forget(msg.subject, db)
                        continue
                    if system is not None and system.handles(msg.subject):
                        flush()
                        system.apply(projector, stored, db)
                        continue
                    if bound is None:
                        if not eventkits_own(msg.subject, headers, stream):
                            passed(passedover.FOREIGN, item.sequence)
                        continue
                    record = foreign(stored, bound, stream)
                elif not handles(event_type):
                    passed(passedover.UNHANDLED, item.sequence)
                    continue
                else:
                    record = decode(
                        msg.subject,
                        item.sequence,
                        time_from_ns(item.timestamp_ns),
                        headers,
                        msg.data,
                    )
            except ForgottenError:
                passed(passedover.FORGOTTEN, item.sequence)
                continue
            except Exception as e:
                if is_outage(e):
                    raise  # the database is out of reach: not this event's fault
                raise BadEvent(i, e) from e
            applied += 1
            if bulk is not None:
                bulk.append((i, record))
                continue
            try:
                apply(record, db)
            except Exception as e:
                if is_outage(e):
                    raise  # the database is out of reach: not this event's fault
                raise BadEvent(i, e) from e
        flush()
        if skipped:
            passedover.record(db, projector.name, skipped)
        return applied

    def _tell(self, reason: str, sequence: int) -> None:
        if reason in self._told:
            return
        self._told.add(reason)
        log.warning(
            "%s: passing over %s messages (first at seq %d; counted in eventkit status)%s",
            self.projector.name,
            reason,
            sequence,
            _HINTS.get(reason, ""),
        )


__all__ = ["BadBulk", "BadEvent", "BatchApplier", "Item", "eventkits_own"]
