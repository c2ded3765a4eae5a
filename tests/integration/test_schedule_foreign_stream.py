"""Deadlines on a stream another service made (a NestJS service's, say): eventkit never turns
on ``allow_msg_schedules`` there (it would allow rollup headers too, for good); it refuses with
the setting and the fix, and schedules once that service's config has it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import pytest
from nats.js.api import StorageType, StreamConfig

from eventkit import Event, JetStreamEventStore, RecordedEvent, on
from eventkit.errors import ConfigError
from eventkit.reaction import Reactor, ReactorContext, ReactorRunner
from eventkit.reaction.schedule import JetStreamScheduler, schedule_subject

pytestmark = pytest.mark.nats


class FsPing(Event):
    n: int


class FsDue(Event):
    n: int


class Reminder(Reactor):
    name = "reminder"
    max_deliver = 1
    scheduled: ClassVar[list[int]] = []

    @on(FsPing)
    async def ping(self, e: FsPing, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
        await ctx.schedule(FsDue(n=e.n), after=timedelta(hours=1))
        Reminder.scheduled.append(e.n)


async def foreign_stream(nats_url: str, name: str) -> JetStreamEventStore:
    """The stream as another service creates it (no eventkit metadata), then eventkit on it."""
    store = await JetStreamEventStore.connect(nats_url, stream="fs_setup")
    await store.js.delete_stream("fs_setup")
    await store.js.add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{name}.>"],
            storage=StorageType.FILE,
            allow_direct=True,
            allow_atomic=True,
        )
    )
    await store.close()
    return await JetStreamEventStore.connect(nats_url, stream=name)


async def test_a_deadline_on_another_services_stream_is_refused_and_changes_nothing(
    nats_url: str, stream_name: str
) -> None:
    store = await foreign_stream(nats_url, stream_name)
    try:
        await store.append(f"{stream_name}.ping.a", [FsPing(n=1)])
        (record,) = await store.read(f"{stream_name}.ping.a")
        ctx = ReactorContext("reminder", record, store, JetStreamScheduler(store))
        with pytest.raises(ConfigError) as caught:
            await ctx.schedule(FsDue(n=1), after=timedelta(hours=1))
        message = str(caught.value)
        assert "allow_msg_schedules" in message and "another service" in message
        assert "streamConfig" in message and "--metadata eventkit=1" in message
        # through a worker too: the event is not handled, the stream is left as it was
        Reminder.scheduled.clear()
        await ReactorRunner(Reminder(), store).catch_up()
        assert Reminder.scheduled == []
        cfg = (await store.js.stream_info(stream_name)).config
        assert not cfg.allow_msg_schedules and not cfg.allow_rollup_hdrs
        assert not (cfg.metadata or {}).get("eventkit")

        # that service turns schedules on itself: deadlines are stored from then on
        cfg.allow_msg_schedules = True
        await store.js.update_stream(cfg)
        ctx = ReactorContext("reminder", record, store, JetStreamScheduler(store))
        await ctx.schedule(FsDue(n=1), after=timedelta(hours=1))
        stored = [m async for m in store.read_raw(f"{stream_name}._eventkit.schedule.reminder.>")]
        assert len(stored) == 1
        assert stored[0].subject.startswith(schedule_subject(stream_name, "reminder", ""))
    finally:
        await store.js.delete_stream(stream_name)
        await store.close()


async def test_a_stream_eventkit_made_gets_schedules_turned_on(store: JetStreamEventStore) -> None:
    await store.append(f"{store.stream}.ping.a", [FsPing(n=1)])
    (record,) = await store.read(f"{store.stream}.ping.a")
    ctx = ReactorContext("reminder", record, store, JetStreamScheduler(store))
    await ctx.schedule(FsDue(n=1), after=timedelta(hours=1))
    cfg = (await store.js.stream_info(store.stream)).config
    assert cfg.allow_msg_schedules
