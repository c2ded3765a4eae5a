"""Deadlines in ``ReactorScenario``, as the runner delivers them: about the subject of the event
being handled (or ``about=``), delivered with it as ``rec.subject``, never once it is forgotten."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import pytest

from eventkit import Event, InMemoryEventStore, RecordedEvent, on
from eventkit.errors import InvalidSubjectError
from eventkit.reaction import Reactor, ReactorContext
from eventkit.testing import ReactorScenario


class DsJoined(Event):
    email: str
    about: str | None = None


class DsRemind(Event):
    email: str


class Reminders(Reactor):
    name = "reminders"
    got: ClassVar[list[tuple[str, str]]] = []

    @on(DsJoined)
    async def joined(self, e: DsJoined, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.schedule(DsRemind(email=e.email), after=timedelta(days=1), about=e.about)

    @on(DsRemind)
    async def remind(self, e: DsRemind, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        Reminders.got.append((rec.subject, e.email))


async def test_a_deadline_is_about_its_events_subject_and_not_delivered_once_forgotten() -> None:
    Reminders.got.clear()
    store = InMemoryEventStore(stream="ds")
    await store.append("ds.person.p-1", [DsJoined(email="a@example.com")])
    await store.append("ds.person.p-2", [DsJoined(email="b@example.com")])
    await store.append("ds.signup.s-1", [DsJoined(email="c@example.com", about="ds.person.p-3")])
    test = ReactorScenario(Reminders(), store)
    await test.run()
    assert [d.about for d in test.scheduled] == ["ds.person.p-1", "ds.person.p-2", "ds.person.p-3"]
    await store.mark_forgotten("ds.person.p-2")
    assert await test.fire_deadlines() == 2
    assert Reminders.got == [("ds.person.p-1", "a@example.com"), ("ds.person.p-3", "c@example.com")]


async def test_a_deadline_about_a_bad_subject_is_refused() -> None:
    store = InMemoryEventStore(stream="ds")
    await store.append("ds.signup.s-1", [DsJoined(email="c@example.com", about="other.person.x")])
    with pytest.raises(InvalidSubjectError):
        await ReactorScenario(Reminders(), store).run()
