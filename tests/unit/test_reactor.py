"""Reactors without a server: option validation, derived ids, deadlines in memory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from eventkit import ConfigError, Event, InMemoryEventStore, Reactor, ReactorContext, on
from eventkit.reaction import derived_id
from eventkit.reaction.context import CAUSATION, CORRELATION
from eventkit.store.records import RecordedEvent
from eventkit.testing import ReactorScenario


class UrWithdrawn(Event):
    amount: int


class UrAlert(Event):
    amount: int


class UrReviewDue(Event):
    account: str


class UrReviewed(Event):
    account: str


class Large(Reactor):
    name = "large"
    subjects: ClassVar[list[str]] = ["bank.account.*"]

    @on(UrWithdrawn)
    async def withdrawn(self, e: UrWithdrawn, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        if e.amount >= 100:
            await ctx.append(f"bank.alert.{rec.entity_id}", [UrAlert(amount=e.amount)])
            await ctx.schedule(UrReviewDue(account=rec.entity_id), after=timedelta(hours=1))

    @on(UrReviewDue)
    async def due(self, e: UrReviewDue, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.append(f"bank.review.{e.account}", [UrReviewed(account=e.account)])


async def test_outputs_are_stored_once_with_derived_ids_and_headers() -> None:
    store = InMemoryEventStore(stream="bank")
    await store.append("bank.account.a-1", [UrWithdrawn(amount=5), UrWithdrawn(amount=500)])
    test = ReactorScenario(Large(), store)
    assert await test.run() == 2
    await test.redeliver(2)  # as after a crash before the ack
    alerts = await store.read("bank.alert.a-1")
    assert [r.event for r in alerts] == [UrAlert(amount=500)]
    cause = (await store.read("bank.account.a-1"))[1].event_id
    assert alerts[0].event_id == derived_id("large", cause, 0)
    assert alerts[0].headers[CAUSATION] == cause
    assert alerts[0].headers[CORRELATION] == cause
    assert len(test.scheduled) == 1
    assert test.scheduled[0].event == UrReviewDue(account="a-1")
    assert test.scheduled[0].event_id == derived_id("large", cause, 1)
    assert await test.fire_deadlines(now=datetime.now(UTC)) == 0  # not due yet
    assert await test.fire_deadlines() == 1
    reviews = await store.read("bank.review.a-1")
    assert [r.event for r in reviews] == [UrReviewed(account="a-1")]
    assert reviews[0].headers[CORRELATION] == cause  # the chain keeps its first event's id


def bad(**attrs: Any) -> None:
    type("Bad", (Reactor,), {"name": "bad", **attrs})


@pytest.mark.parametrize(
    ("attrs", "match"),
    [
        ({"deliver_policy": "first"}, "deliver_policy must be one of"),
        ({"deliver_policy": "by_start_sequence"}, "start_sequence must be an int >= 1"),
        ({"start_sequence": 3}, "only used with deliver_policy = 'by_start_sequence'"),
        ({"deliver_policy": "by_start_time"}, "exactly one of start_time"),
        (
            {"deliver_policy": "by_start_time", "start_time": datetime(2025, 1, 1)},
            "timezone-aware",
        ),
        (
            {"deliver_policy": "by_start_time", "start_at_time_delta": timedelta(0)},
            "positive timedelta",
        ),
        ({"start_time": datetime.now(UTC)}, "only used with deliver_policy = 'by_start_time'"),
        ({"ack_policy": "some"}, "ack_policy must be one of"),
        ({"ack_wait": 0}, "ack_wait must be a number of seconds >= 0.5"),
        ({"max_ack_pending": 0}, "max_ack_pending must be an int >= 1"),
        ({"max_deliver": True}, "max_deliver must be an int"),
        ({"backoff": 1.0}, "backoff must be a list of seconds"),
        ({"backoff": [1.0, -2]}, "backoff must be a number of seconds >= 0"),
        ({"replay_policy": "fast"}, "replay_policy must be 'instant' or 'original'"),
        ({"ordered": "key"}, "ordered must be 'none' or 'subject'"),
        ({"subjects": "bank.>"}, "subjects must be a list"),
        ({"name": "a.b"}, "reactor name"),
    ],
)
def test_bad_options_are_refused_when_the_class_is_defined(
    attrs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        bad(**attrs)


def test_a_sync_handler_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not async"):

        class Sync(Reactor):
            @on(UrWithdrawn)
            def w(self, e: UrWithdrawn, rec: RecordedEvent[Any], ctx: ReactorContext) -> None: ...


async def test_schedule_needs_one_of_at_or_after() -> None:
    store = InMemoryEventStore(stream="bank")
    await store.append("bank.account.a-1", [UrWithdrawn(amount=5)])
    rec = (await store.read("bank.account.a-1"))[0]
    ctx = ReactorContext("large", rec, store)
    with pytest.raises(ConfigError, match="exactly one of at="):
        await ctx.schedule(UrReviewDue(account="a"))
    with pytest.raises(ConfigError, match="timezone-aware"):
        await ctx.schedule(UrReviewDue(account="a"), at=datetime(2030, 1, 1))
