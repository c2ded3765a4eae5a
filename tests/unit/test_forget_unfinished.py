"""A forget that cannot erase every message is left open (resumable), never audited as done."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventkit import App, Event, InMemoryEventStore
from eventkit.errors import StoreUnavailableError
from eventkit.gdpr import audit_entries, forget_subject
from eventkit.projection.sql import make_engine, upgrade


class UnfinishedNoted(Event):
    text: str


class StubbornStore(InMemoryEventStore):
    """Deletes report success but nothing goes: as if a writer kept appending."""

    async def delete(self, sequence: int, *, keep_links: bool = True) -> bool:
        return True


async def test_forget_that_cannot_erase_everything_stays_open(tmp_path: Path) -> None:
    store = StubbornStore(stream="unf")
    await store.append("unf.note.n-1", [UnfinishedNoted(text="x")])
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    upgrade(engine)
    try:
        with pytest.raises(StoreUnavailableError, match="run forget again"):
            await forget_subject(App(stream="unf"), store, engine, "unf.note.n-1")
        assert audit_entries(engine, "unf") == []  # not recorded as done
        # the request is open: a second run says it resumes
        store.delete = InMemoryEventStore.delete.__get__(store)  # type: ignore[method-assign]
        report = await forget_subject(App(stream="unf"), store, engine, "unf.note.n-1")
        assert report.resumed and report.messages == 1
        assert len(audit_entries(engine, "unf")) == 1
    finally:
        engine.dispose()
