"""Forget a subject (GDPR erasure) or one message, verifiably and resumably.

The steps of :func:`forget_subject`, in this order, each idempotent::

    1. record the request (eventkit_forget_requests: HMAC of the subject, step, counts)
    2. leave the erasure marker on the subject (:mod:`eventkit.store.erasure`): from here on
       the server refuses every append to it, from any process, whatever it has cached
    3. shred the subject's data key (secure erase + tombstone): from here on every copy of its
       encrypted events, wherever it is (Raft logs, mirrors, backups), is unreadable
    4. erase every message of the subject but the marker, one by one (secure erase), then its
       reactors' deadlines (pending schedules and fired copies; a copy fired later is passed
       over by the reactor and erased, never handled)
    5. erase its snapshots
    6. run every reading projector's forget(subject, db) on every table eventkit knows of it
       (live, blue/green build, retired copy), fenced like a batch: a version whose runner
       already applied the marker forgot the subject in stream order and is left alone (a
       forget now would also undo what other subjects added since); delete its dead letters
       and redact the errors recorded for its events (a halted projector's ``last_error``), in
       one SQL transaction (SQLite: secure_delete, then the WAL is checkpointed and truncated);
       erase the reactors' dead letters of the subject (a secure erase each) and redact the
       others that quote it
    7. publish the ``forgotten`` notice so other services' projectors forget too
    8. write the audit entry and mark the request finished, in one transaction

The marker and the key go first because they close the subject at once: if the run is
interrupted after them, nothing can be added and nothing readable is left behind while the rest
waits for the re-run. Running ``forget`` again after an interruption at any point finishes the
job, and two runs at once both finish (each erase that finds its message gone counts as done).

Example::

    report = await forget_subject(app, store, engine, "bank.customer.c-1")
    print(report.messages, report.projectors_without_forget)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Engine

from eventkit.errors import ConfigError, InvalidSubjectError, StoreUnavailableError
from eventkit.gdpr import erasure_rows
from eventkit.gdpr.notice import (
    encode_notice,
    is_system_subject,
    notice_subject,
    projectors_for,
    subject_digest,
)
from eventkit.gdpr.reports import CANNOT_ERASE, ForgetReport, MessageForgetReport
from eventkit.projection.projector import Projector
from eventkit.reaction.schedule import erase_deadlines
from eventkit.store.base import EventStore
from eventkit.store.erasure import is_marker
from eventkit.store.subjects import is_wildcard, validate_filter, validate_subject


class Registry(Protocol):
    """What forget reads of an :class:`~eventkit.app.App`: its projectors (an App is one)."""

    @property
    def projectors(self) -> Sequence[Projector]: ...


Progress = Callable[[str, int], None]
"""Called as ``progress(step, count)`` after each step (and each erased message)."""


# -- forget a subject -------------------------------------------------------------------------


async def forget_subject(
    app: Registry,
    store: EventStore,
    engine: Engine,
    subject: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ForgetReport:
    """Erase everything eventkit holds of ``subject``; see the module docstring for the order.

    Example::

        report = await forget_subject(app, store, engine, "bank.customer.c-1", dry_run=True)
    """
    stream = store.stream
    validate_subject(subject, stream)
    if is_system_subject(stream, subject):
        raise InvalidSubjectError(f"{subject!r} is one of eventkit's system subjects, not data")
    cipher = store.codec.cipher
    digest, scheme = subject_digest(subject, stream, cipher)
    report = ForgetReport(
        stream=stream, subject=subject, subject_hmac=digest, hmac_scheme=scheme, dry_run=dry_run
    )
    report.encrypted = cipher is not None and cipher.covers(subject, None)
    readers = projectors_for(subject, app.projectors, stream)
    report.projectors = [p.name for p in readers]
    report.projectors_without_forget = [p.name for p in readers if not p.declares_forget()]
    erasure_rows.check_tables(engine)
    audited = await asyncio.to_thread(erasure_rows.last_audit_id, engine, stream, digest)
    request = await asyncio.to_thread(erasure_rows.load_request, engine, stream, digest)
    if request is not None and request["finished_at"] is None:
        report.resumed = True
    elif request is not None:
        report.previously_finished = request["finished_at"]

    marked = False
    sequences = []
    async for m in store.read_raw(subject):
        if is_marker(m.headers):
            marked = True
        else:
            sequences.append(m.sequence)
    report.messages = len(sequences)
    shredder = getattr(cipher, "shred", None)
    state_of = getattr(cipher, "state", None)
    key_state = str(await state_of(subject)) if state_of is not None else "none"
    if dry_run:
        report.key = {"forgotten": "already shredded"}.get(key_state, key_state)
        report.snapshots = 1 if await _snapshot_exists(store, subject) else 0
        report.already_forgotten = marked and report.messages == 0
        return report
    if (
        report.messages == 0
        and key_state != "active"
        and not report.resumed
        and not await _snapshot_exists(store, subject)
    ):
        report.key = "already shredded" if key_state == "forgotten" else "none"
        report.already_forgotten = marked or key_state == "forgotten"
        report.dead_letters = await _forget_reactor_letters(store, subject)
        return report  # nothing stored: no request, no audit entry, no notice
    # the count the audit entry gives: what the first run found (a resumed or a concurrent run
    # finds only what is left; nothing can be added after the marker)
    first_found = int(request["messages_erased"] or 0) if report.resumed and request else 0
    total = max(first_found, len(sequences))

    def step(name: str, count: int = 0) -> None:
        if progress is not None:
            progress(name, count)

    await asyncio.to_thread(erasure_rows.save_request, engine, stream, digest, "started", total)
    step("started")
    # 2. the marker: after this, no process can store anything on the subject
    report.marker_sequence = await store.mark_forgotten(subject)
    # 3. the key: after this, nothing of the subject is readable anywhere
    if shredder is not None and key_state != "none":
        erased = await shredder(subject)
        report.key = "shredded" if erased else "already shredded"
    await asyncio.to_thread(erasure_rows.save_request, engine, stream, digest, "key", total)
    step("key")
    # 4. every message, one secure erase each (a raw client's appends are caught by the re-scan)
    erased_count = 0
    for _ in range(5):
        for seq in sequences:
            if await store.delete(seq, keep_links=False):  # the marker closed its chain
                erased_count += 1
            step("message", erased_count)
        sequences = [m.sequence async for m in store.read_raw(subject) if not is_marker(m.headers)]
        if not sequences:
            break
    else:
        # appends kept racing in: leave the request open (not audited as done); a re-run resumes
        raise StoreUnavailableError(
            f"{subject!r} still had {len(sequences)} message(s) after 5 erase rounds: something "
            f"keeps appending to it; stop the writer and run forget again to finish"
        )
    report.messages = max(total, erased_count)
    await asyncio.to_thread(
        erasure_rows.save_request, engine, stream, digest, "messages", report.messages
    )
    step("messages", erased_count)
    # 4b. deadlines about the subject: a fired copy left behind is passed over (and erased)
    report.deadlines = await erase_deadlines(store, subject)
    step("deadlines", report.deadlines)
    # 5. snapshots
    report.snapshots += await store.snapshots.delete(subject)  # type: ignore[attr-defined]
    await asyncio.to_thread(
        erasure_rows.save_request, engine, stream, digest, "snapshots", report.messages
    )
    step("snapshots", report.snapshots)
    # 6. read models, dead letters, recorded errors
    report.dead_letters = await asyncio.to_thread(
        erasure_rows.forget_rows, engine, readers, subject, stream, digest, report.marker_sequence
    )
    report.dead_letters += await _forget_reactor_letters(store, subject)
    step("projectors", len(readers))
    # 7. the notice for other services
    report.notice_sequence = await _publish_notice(store, subject, report.marker_sequence)
    await asyncio.to_thread(
        erasure_rows.save_request, engine, stream, digest, "notice", report.messages
    )
    step("notice")
    # 8. audit, done (once: a forget of the subject that ran at the same time and finished
    # first wrote the entry for both)
    report.joined = not await asyncio.to_thread(
        erasure_rows.finish_request, engine, report, audited
    )
    step("done")
    return report


async def subjects_matching(store: EventStore, pattern: str) -> dict[str, int]:
    """The concrete subjects with messages under a wildcard ``pattern``, with their counts."""
    validate_filter(pattern, store.stream)
    counts: dict[str, int] = {}
    async for m in store.read_raw(pattern):
        if not is_system_subject(store.stream, m.subject) and not is_marker(m.headers):
            counts[m.subject] = counts.get(m.subject, 0) + 1
    return counts


async def forget_pattern(
    app: Registry,
    store: EventStore,
    engine: Engine,
    pattern: str,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    confirm: Callable[[dict[str, int]], bool] | None = None,
) -> list[ForgetReport]:
    """Forget every subject with messages under the wildcard ``pattern``, one after the other.

    ``confirm(counts)`` (subject -> messages) is asked first when something matches; False
    erases nothing.
    """
    if not is_wildcard(pattern):
        return [
            await forget_subject(app, store, engine, pattern, dry_run=dry_run, progress=progress)
        ]
    counts = await subjects_matching(store, pattern)
    if counts and confirm is not None and not confirm(counts):
        return []
    reports = []
    for subject in sorted(counts):
        reports.append(
            await forget_subject(app, store, engine, subject, dry_run=dry_run, progress=progress)
        )
    return reports


# -- forget one message ----------------------------------------------------------------------


async def forget_message(
    app: Registry, store: EventStore, engine: Engine, sequence: int, *, dry_run: bool = False
) -> MessageForgetReport:
    """Securely erase the message at stream ``sequence``; name the read models that applied it.

    Example::

        report = await forget_message(app, store, engine, 42)
        report.stale_projectors        # replay these from the start to drop its effect
    """
    if isinstance(sequence, bool) or not isinstance(sequence, int) or sequence < 1:
        raise ConfigError(f"--seq must be a stream sequence >= 1, got {sequence!r}")
    stream = store.stream
    report = MessageForgetReport(stream=stream, sequence=sequence, found=False, dry_run=dry_run)
    msg = await store.get(sequence)
    if msg is None:
        return report
    report.found = True
    report.subject = msg.subject
    if is_system_subject(stream, msg.subject):
        raise InvalidSubjectError(
            f"sequence {sequence} is an eventkit system event ({msg.subject}), not data"
        )
    readers = projectors_for(msg.subject, app.projectors, stream)
    positions = await asyncio.to_thread(erasure_rows.checkpoint_positions, engine)
    report.stale_projectors = [p.name for p in readers if positions.get(p.name, 0) >= sequence]
    if dry_run:
        return report
    erasure_rows.check_tables(engine)
    # its links first (never its data): the rest of its subject's chain still verifies
    await store.record_erasure(msg)
    report.erased = await store.delete(sequence)
    digest, scheme = subject_digest(msg.subject, stream, store.codec.cipher)
    row = {
        "stream": stream,
        "kind": "message",
        "subject_hmac": digest,
        "hmac_scheme": scheme,
        "sequence": sequence,
        "messages_erased": 1 if report.erased else 0,
        "snapshots_erased": 0,
        "key_shredded": False,
        "projectors": json.dumps(report.stale_projectors),
        "projectors_without_forget": "[]",
        "at": datetime.now(UTC),
    }
    await asyncio.to_thread(erasure_rows.insert_audit, engine, row)
    return report


def replay_command(projector: str, app_target: str | None) -> str:
    """The CLI command that rebuilds ``projector`` without an erased message."""
    app = f"--app {app_target} " if app_target else ""
    return f"eventkit {app}replay {projector} --from-start"


# -- internals --------------------------------------------------------------------------------


async def _forget_reactor_letters(store: EventStore, subject: str) -> int:
    """Reactors' dead letters of the subject: erased securely; others quoting it redacted."""
    if getattr(store, "js", None) is None:
        from eventkit.runtime.services import memory_parked

        return await memory_parked(store).forget(subject)
    from eventkit.runtime.parked import ParkedLetters

    return await ParkedLetters(store).forget(subject)


async def _snapshot_exists(store: EventStore, subject: str) -> bool:
    snaps: Any = getattr(store, "snapshots", None)
    return snaps is not None and (await snaps.get(subject)) is not None


async def _publish_notice(store: EventStore, subject: str, marker: int | None) -> int | None:
    js = getattr(store, "js", None)
    if js is None:
        return None
    headers, payload = encode_notice(subject, store.stream, store.codec.cipher, marker)
    ack = await js.publish(notice_subject(store.stream), payload, headers=headers)
    return int(ack.seq)


__all__ = [
    "CANNOT_ERASE",
    "ForgetReport",
    "MessageForgetReport",
    "forget_message",
    "forget_pattern",
    "forget_subject",
    "replay_command",
    "subjects_matching",
]
