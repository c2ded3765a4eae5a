"""One trace runs from ``Repository.save`` through the append to the projector that applies it
and to a reactor, and on through the reactor's output to the projector again (real
nats-server, SQLite read model, an in-memory span exporter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from eventkit import (
    Aggregate,
    Event,
    JetStreamEventStore,
    Projector,
    Reactor,
    ReactorContext,
    RecordedEvent,
    Repository,
    on,
)
from eventkit.observability import tracing
from eventkit.projection.runner import ProjectionRunner
from eventkit.reaction import ReactorRunner

pytestmark = pytest.mark.nats


class OtOpened(Event):
    owner: str


class OtAlerted(Event):
    owner: str


class OtAccount(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""

    def open(self, owner: str) -> None:
        self.record(OtOpened(owner=owner))

    @on(OtOpened)
    def _opened(self, e: OtOpened) -> None:
        self.owner = e.owner


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        tracing.set_tracer_provider(None)
        provider.shutdown()


def workers(stream: str) -> tuple[Projector, Reactor]:
    applied: list[str] = []

    class Seen(Projector):
        name = "ot-seen"
        subjects = [f"{stream}.>"]

        @on(OtOpened)
        def opened(self, e: OtOpened, rec: RecordedEvent[Any], db: Session) -> None:
            applied.append(rec.event_id)

        @on(OtAlerted)
        def alerted(self, e: OtAlerted, rec: RecordedEvent[Any], db: Session) -> None:
            applied.append(rec.event_id)

    class Alerter(Reactor):
        name = "ot-alerter"
        subjects = [f"{stream}.otaccount.>"]

        @on(OtOpened)
        async def opened(self, e: OtOpened, rec: RecordedEvent[Any], ctx: ReactorContext) -> None:
            await ctx.append(f"{stream}.alert.{rec.entity_id}", [OtAlerted(owner=e.owner)])

    return Seen(), Alerter()


def by_name(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_one_trace_from_save_through_projector_and_reactor_output(
    store: JetStreamEventStore, engine: Engine, spans: InMemorySpanExporter
) -> None:
    stream = store.stream
    projector, reactor = workers(stream)
    provider = tracing.tracer()
    assert provider is not None
    accounts = Repository(store, OtAccount)
    acct = OtAccount("a-1")
    acct.open("ada")
    with provider.start_as_current_span("open account") as command:
        await accounts.save(acct)
    trace_id = command.get_span_context().trace_id

    stats = await ReactorRunner(reactor, store).catch_up()
    assert stats.handled == 1
    result = await ProjectionRunner(projector, store, engine).catch_up()
    assert result.processed == 2

    finished = list(spans.get_finished_spans())
    assert {s.context.trace_id for s in finished} == {trace_id}, [s.name for s in finished]
    (cmd,) = by_name(finished, "open account")
    sends = by_name(finished, "send ")
    processes = by_name(finished, "process ")
    (save,) = [
        s
        for s in sends
        if s.attributes["messaging.destination.name"].endswith(".a-1")
        and ".otaccount." in s.attributes["messaging.destination.name"]
    ]
    (output,) = [s for s in sends if ".alert." in s.attributes["messaging.destination.name"]]

    # the append is a producer span under the command, per the messaging conventions
    assert save.kind == SpanKind.PRODUCER and parent_of(save) == cmd.context.span_id
    assert save.name == f"send {stream}.otaccount.*"
    stored = await store.read(f"{stream}.otaccount.a-1")
    assert save.attributes["messaging.system"] == "nats"
    assert save.attributes["messaging.destination.name"] == f"{stream}.otaccount.a-1"
    assert save.attributes["messaging.message.id"] == stored[0].event_id
    assert save.attributes["messaging.operation.type"] == "send"
    assert stored[0].headers["traceparent"].split("-")[2] == f"{save.context.span_id:016x}"

    # the reactor's handling is a consumer span under the append; its output under it
    (react,) = [
        s for s in processes if s.attributes["messaging.consumer.group.name"] == "ot-alerter"
    ]
    assert react.kind == SpanKind.CONSUMER and parent_of(react) == save.context.span_id
    assert react.attributes["messaging.message.id"] == stored[0].event_id
    assert react.attributes["messaging.operation.type"] == "process"
    assert parent_of(output) == react.context.span_id

    # the projector applied both events, each under the append that stored it
    applied = [s for s in processes if s.attributes["messaging.consumer.group.name"] == "ot-seen"]
    assert sorted(parent_of(s) or 0 for s in applied) == sorted(
        [save.context.span_id, output.context.span_id]
    )
    assert all(s.kind == SpanKind.CONSUMER for s in applied)


async def test_no_trace_headers_when_tracing_is_off(store: JetStreamEventStore) -> None:
    assert tracing.tracer() is None  # no provider set in this process
    acct = OtAccount("b-1")
    acct.open("bob")
    await Repository(store, OtAccount).save(acct)
    (rec,) = await store.read(f"{store.stream}.otaccount.b-1")
    assert "traceparent" not in rec.headers
