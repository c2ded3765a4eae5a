"""Checking a subject's chain as it is read (``store.read``, ``Repository.load``).

The check costs one SHA-256 over each event's stored bytes; a subject that does not verify
raises :class:`~eventkit.errors.IntegrityError` naming the subject, the sequence and what differs.
Stores take ``verify_chains=False`` to skip it (documented in the README, "Proving the history").
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from eventkit.store.chain import (
    GENESIS,
    ChainCheck,
    ChainHeads,
    ErasedLink,
    erased_link_of,
    erased_subject,
)
from eventkit.store.records import StoredMessage
from eventkit.store.wire_constants import (
    CHAIN,
    CHAIN_PREV,
    EVENT_TYPE,
    MSG_ID,
    SCHEMA_VERSION,
    SYSTEM,
)


class RawReader(Protocol):
    """What the check needs of a store: the erased-message records are read raw."""

    stream: str

    def read_raw(
        self, subject: str | None = None, from_sequence: int = 1
    ) -> AsyncIterator[StoredMessage]: ...


async def erased_links(store: RawReader, subject: str) -> list[ErasedLink]:
    """The records ``forget --seq`` left of ``subject``'s erased chained messages."""
    out = []
    async for m in store.read_raw(erased_subject(store.stream, subject)):
        record = erased_link_of(m.headers)
        if record is not None:
            out.append(record)
    return out


def chain_holds(subject: str, raw: Sequence[StoredMessage], trust_first: bool) -> bool:
    """Whether every chained message of ``raw`` (one subject, in order) links to the one before
    and hashes to its link: the fast path of a read (no erasures, no markers, no problem).
    :func:`eventkit.store.chain.link`, inlined: it runs once per event loaded."""
    running = GENESIS
    first = True
    sha256 = hashlib.sha256
    chain, chain_prev, typ, schema, msg_id, system = _FIELDS
    for m in raw:
        headers = m.headers
        value = headers.get(chain)
        if value is None:
            continue
        get = headers.get
        prev = get(chain_prev, "")
        if prev != running and not (first and trust_first):
            return False
        h = sha256(
            f"{prev}\n{subject}\n{get(typ, '')}\n{get(schema, '')}\n{get(msg_id, '')}\n"
            f"{get(system, '')}\n".encode()
        )
        h.update(m.data)
        if h.hexdigest() != value:
            return False
        running = value
        first = False
    return True


_FIELDS = (CHAIN, CHAIN_PREV, EVENT_TYPE, SCHEMA_VERSION, MSG_ID, SYSTEM)


async def check_read(
    store: RawReader,
    subject: str,
    raw: Sequence[StoredMessage],
    after: int,
    *,
    verify: bool,
    heads: ChainHeads,
) -> None:
    """Verify the messages of ``subject`` read after sequence ``after`` (when ``verify``) and
    remember the head of its chain for the next append; ``IntegrityError`` when it breaks."""
    if not raw:
        return
    if verify and not chain_holds(subject, raw, after > 0):
        check = ChainCheck(trust_first=after > 0)
        for m in raw:
            check.check(m)
        if any(problem.kind == "link" for problem in check.problems):
            check = ChainCheck(
                trust_first=after > 0, erased={subject: await erased_links(store, subject)}
            )
            for m in raw:
                check.check(m)
        if check.problems:
            raise check.problems[0].error()
    head = None
    for m in reversed(raw):
        head = m.headers.get(CHAIN)
        if head is not None:
            break
    if head is None and after == 0:
        head = GENESIS
    if head is not None:
        heads.note(subject, raw[-1].sequence, head)


__all__ = ["RawReader", "chain_holds", "check_read", "erased_links"]
