"""The per-subject hash chain: every event carries a link over the link before it and its own
stored bytes, so a subject's history proves itself (docs/wire-format.md, "Hash chain").

``link = hex(SHA-256(prev LF subject LF type LF schema LF event-id LF system LF body))``,
where ``prev`` is the link of the chained message before it on the subject (64 zeros for the
first), ``type``/``schema``/``event id``/``system`` the values of the headers
``Eventkit-Type``/``Eventkit-Schema``/``Nats-Msg-Id``/``Eventkit-System`` (empty when absent) and
``body`` the payload as stored (the encrypted envelope for an encrypted event). Header values and
subjects hold no newline, so the input is unambiguous; the body comes last.

A message with no ``Eventkit-Chain`` is outside the chains: an eventkit event written before
chains existed is *unchained*, another service's message *foreign*; neither breaks a chain.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from eventkit.errors import IntegrityError
from eventkit.store.erasure import is_marker
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import (
    CHAIN,
    CHAIN_PREV,
    EVENT_TYPE,
    MSG_ID,
    SCHEMA_VERSION,
    SYSTEM,
    system_prefix,
)

GENESIS: Final = "0" * 64
"""The ``prev`` of a subject's first chained message."""

ERASED_LINK: Final = "erased-message"
"""``Eventkit-System`` of the record ``forget --seq`` leaves for the message it erased."""
ERASED_SEQUENCE: Final = "Eventkit-Erased-Sequence"
ERASED_PREV: Final = "Eventkit-Erased-Prev"
ERASED_CHAIN: Final = "Eventkit-Erased-Chain"

_sha256 = hashlib.sha256


def link(prev: str, subject: str, headers: Mapping[str, str], body: bytes) -> str:
    """The chain link of a message given the link before it (see the module docstring)."""
    get = headers.get
    h = _sha256(
        f"{prev}\n{subject}\n{get(EVENT_TYPE, '')}\n{get(SCHEMA_VERSION, '')}\n"
        f"{get(MSG_ID, '')}\n{get(SYSTEM, '')}\n".encode()
    )
    h.update(body)
    return h.hexdigest()


def seal(prev: str, subject: str, headers: dict[str, str], body: bytes) -> str:
    """Add ``Eventkit-Chain-Prev`` and ``Eventkit-Chain`` to ``headers``; return the link."""
    value = link(prev, subject, headers, body)
    headers[CHAIN_PREV] = prev
    headers[CHAIN] = value
    return value


def head_after(previous: StoredMessage | None) -> str | None:
    """The ``prev`` of a message appended right after ``previous`` (the subject's last message,
    None when it has none), computed from its headers alone; None when ``previous`` is outside
    the chains (foreign or unchained) and the head must be found by reading the subject."""
    if previous is None:
        return GENESIS
    return previous.headers.get(CHAIN)


def head_of(messages: Iterable[StoredMessage], start: str = GENESIS) -> str:
    """The head of a subject's chain after ``messages`` (in order): the last link among them."""
    head = start
    for m in messages:
        value = m.headers.get(CHAIN)
        if value is not None:
            head = value
    return head


class ChainHeads:
    """Heads of recently read or written chains: subject -> (sequence of the subject's last
    message, the link a message appended after it follows). An append that expects that very
    sequence needs no read to chain its events."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def note(self, subject: str, sequence: int, head: str) -> None:
        heads = self._heads
        heads[subject] = (sequence, head)
        heads.move_to_end(subject)
        if len(heads) > self._size:
            heads.popitem(last=False)

    def note_last(self, subject: str, last: StoredMessage | None) -> None:
        """The subject's last message was just read: remember the head after it (if its
        headers give it)."""
        head = head_after(last)
        if head is not None:
            self.note(subject, last.sequence if last is not None else 0, head)

    def get(self, subject: str, sequence: int) -> str | None:
        known = self._heads.get(subject)
        return known[1] if known is not None and known[0] == sequence else None

    def note_appended(
        self, messages: Sequence[tuple[str, dict[str, str], bytes]], lasts: Mapping[str, int]
    ) -> None:
        """After an append: each subject's head is the link of its last message sent."""
        for subject, headers, _ in reversed(messages):
            value = headers.get(CHAIN)
            seq = lasts.get(subject)
            if value is not None and seq is not None and self.get(subject, seq) is None:
                self.note(subject, seq, value)


@dataclass(frozen=True, slots=True)
class ErasedLink:
    """What ``forget --seq`` recorded of a chained message it erased: its links, not its data."""

    sequence: int
    prev: str
    link: str


def erased_link_of(headers: Mapping[str, str]) -> ErasedLink | None:
    """The record in an erased-message record's headers (None if they hold none)."""
    if headers.get(SYSTEM) != ERASED_LINK:
        return None
    try:
        return ErasedLink(
            int(headers[ERASED_SEQUENCE]), headers[ERASED_PREV], headers[ERASED_CHAIN]
        )
    except (KeyError, ValueError):
        return None


def erased_link_headers(subject: str, erased: StoredMessage) -> dict[str, str] | None:
    """Headers of the record for erasing the chained message ``erased`` (None: unchained)."""
    value = erased.headers.get(CHAIN)
    prev = erased.headers.get(CHAIN_PREV)
    if value is None or prev is None:
        return None
    return {
        SYSTEM: ERASED_LINK,
        MSG_ID: f"eventkit-erased-message-{erased.sequence}-{value[:16]}",
        ERASED_SEQUENCE: str(erased.sequence),
        ERASED_PREV: prev,
        ERASED_CHAIN: value,
    }


def erased_subject(stream: str, subject: str) -> str:
    """Where the records of a subject's erased messages go: ``<stream>._eventkit.erased.<rest>``
    (a system subject: ``read_all`` and projectors pass over it)."""
    return f"{system_prefix(stream)}erased.{subject[len(stream) + 1 :]}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One place where a history differs from what was written."""

    subject: str
    sequence: int
    kind: str
    """``content`` (the message differs), ``link`` (a message before it is missing or was
    rewritten), ``reused`` (a sequence now holds another message), ``replica``."""
    what: str
    node: str | None = None

    def error(self) -> IntegrityError:
        return IntegrityError(self.subject, self.sequence, self.what)


@dataclass
class ChainCheck:
    """Follows the chains of messages given in stream order, one running head per subject.

    ``trust_first``: the messages start mid-subject (a read after a snapshot, a scan from a
    sequence): the first chained message of each subject is taken at its word for its link.
    ``erased``: the erased-message records per subject (``forget --seq``), which bridge a link.
    ``links=False``: check each message's content against its own ``Eventkit-Chain-Prev`` only
    (a reactor's worker sees part of a subject when others compete for its events). A message
    given again (a redelivery) is not checked twice; one that failed fails again.
    """

    trust_first: bool = False
    erased: Mapping[str, Sequence[ErasedLink]] = field(default_factory=dict)
    links: bool = True
    failed: dict[int, Problem] = field(default_factory=dict)
    heads: dict[str, tuple[str, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    chained: int = 0
    unchained: int = 0
    foreign: int = 0
    bridged: int = 0

    def check(self, m: StoredMessage) -> Problem | None:
        """Check one message; return (and keep) the problem found, if any."""
        headers = m.headers
        value = headers.get(CHAIN)
        if value is None:
            if EVENT_TYPE in headers or SYSTEM in headers:
                self.unchained += 1
            else:
                self.foreign += 1
            return None
        subject = m.subject
        seen = self.heads.get(subject)
        if m.sequence in self.failed:
            return self.failed[m.sequence]
        if seen is not None and m.sequence <= seen[1]:
            return None  # checked already
        self.chained += 1
        prev = headers.get(CHAIN_PREV, "")
        running, after = seen if seen is not None else (GENESIS, 0)
        problem = None
        if prev != running and not (
            not self.links
            or is_marker(headers)  # a forget's marker closes the chain whatever was erased before
            or (seen is None and self.trust_first)
            or self._bridge(subject, running, prev)
        ):
            before = (
                f"the chained event before it (sequence {after}) ends at {running[:16]}"
                if after
                else "no chained event of the subject comes before it"
            )
            problem = Problem(
                subject,
                m.sequence,
                "link",
                f"its link to the history before it differs: it follows {prev[:16]}, but "
                f"{before}; a message of the subject"
                f"{f' between sequences {after} and {m.sequence}' if after else ''} "
                f"is missing or was rewritten",
            )
        else:
            computed = link(prev, subject, headers, m.data)
            if computed != value:
                problem = Problem(
                    subject,
                    m.sequence,
                    "content",
                    f"its stored content (type, schema, event id or body) differs from what "
                    f"was written: it hashes to {computed[:16]}, its {CHAIN} header says "
                    f"{value[:16]}",
                )
        self.heads[subject] = (value, m.sequence)
        if problem is not None:
            self.problems.append(problem)
            if len(self.failed) < 10_000:
                self.failed[m.sequence] = problem
        return problem

    def _bridge(self, subject: str, running: str, prev: str) -> bool:
        records = self.erased.get(subject)
        if not records:
            return False
        by_prev = {r.prev: r for r in records}
        for _ in range(len(records)):
            r = by_prev.get(running)
            if r is None:
                return False
            running = r.link
            if running == prev:
                self.bridged += 1
                return True
        return False


__all__ = [
    "ERASED_LINK",
    "GENESIS",
    "ChainCheck",
    "ChainHeads",
    "ErasedLink",
    "Problem",
    "erased_link_headers",
    "erased_link_of",
    "erased_subject",
    "head_after",
    "head_of",
    "link",
    "seal",
]
