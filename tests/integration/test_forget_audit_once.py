"""Two forgets of one subject at the same time both finish, and the audit log holds one entry
for the erasure (not one per run, each counting every erased message)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Engine

from eventkit import App, Event
from eventkit.gdpr import audit_entries, forget_subject
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

MESSAGES = 400


class AuNoted(Event):
    n: int


async def test_concurrent_forgets_of_one_subject_leave_one_audit_entry(
    store: JetStreamEventStore, engine: Engine
) -> None:
    app = App(stream=store.stream)
    subject = f"{store.stream}.note.n-1"
    for start in range(0, MESSAGES, 100):
        await store.append(subject, [AuNoted(n=i) for i in range(start, start + 100)])
    other = f"{store.stream}.note.n-2"
    await store.append(other, [AuNoted(n=0)])

    first, second = await asyncio.gather(
        forget_subject(app, store, engine, subject), forget_subject(app, store, engine, subject)
    )
    entries = [e for e in audit_entries(engine, store.stream) if e["kind"] == "subject"]
    assert len(entries) == 1, entries
    assert entries[0]["messages_erased"] == MESSAGES
    assert [first.joined, second.joined].count(True) == 1  # both ran; one wrote the entry
    assert [m async for m in store.read_raw(subject) if m.headers.get("Eventkit-Type")] == []

    # a later forget of another subject is its own erasure, with its own entry
    await forget_subject(app, store, engine, other)
    entries = [e for e in audit_entries(engine, store.stream) if e["kind"] == "subject"]
    assert [e["messages_erased"] for e in entries] == [MESSAGES, 1]
