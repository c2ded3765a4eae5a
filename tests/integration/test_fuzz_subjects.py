"""Fuzzing subjects and tokens into the store API against a real server.

Whatever the subject: ``append`` stores the event (and it reads back) or raises
``InvalidSubjectError`` with the stream's message count unchanged; ``read`` returns a list or raises
``InvalidSubjectError``; ``entity_subject`` returns a subject the store accepts, or raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventkit.domain.events import Event
from eventkit.errors import EventkitError, InvalidSubjectError
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.base import Write
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.subjects import entity_subject

pytestmark = [pytest.mark.nats]

T = TypeVar("T")
STREAM = "fuzzsubj"
FUZZ = settings(
    derandomize=True,  # the same examples on every run, so CI does not flake
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class FuzzNoted(Event):
    event_type = "FuzzNoted"
    n: int = 0


@dataclass
class Env:
    loop: asyncio.AbstractEventLoop
    store: JetStreamEventStore
    server: ServerProcess

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def count(self) -> int:
        async def go() -> int:
            info = await self.store.js.stream_info(STREAM)
            return int(info.state.messages)

        return self.run(go())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    server = start_server_process(Path(tmp_path_factory.mktemp("fuzz-subjects")))
    loop = asyncio.new_event_loop()
    try:
        store = loop.run_until_complete(JetStreamEventStore.connect(server.url, stream=STREAM))
        e = Env(loop, store, server)
        yield e
        loop.run_until_complete(store.close())
    finally:
        loop.close()
        server.stop()


# tokens: mostly printable, with every character class the rules care about
token_chars = st.one_of(
    st.characters(codec="utf-8", exclude_categories=["Cs"]),
    st.sampled_from([".", "*", ">", " ", "\t", "\n", "\r", "\x00", "\x7f", "-", "_", "$", "é"]),
)
tokens = st.text(token_chars, min_size=0, max_size=12)
subjects = st.one_of(
    st.text(token_chars, max_size=40),
    st.lists(tokens, min_size=1, max_size=5).map(lambda ts: ".".join([STREAM, *ts])),
)


def _check_append(env: Env, subject: Any) -> None:
    before = env.count()
    try:
        seq = env.run(env.store.append(subject, [FuzzNoted(n=1)]))
    except InvalidSubjectError as e:
        assert str(e)
        assert env.count() == before, f"a rejected append of {subject!r} still stored something"
        return
    assert env.count() == before + 1
    records = env.run(env.store.read(subject))
    assert records[-1].sequence == seq and records[-1].subject == subject


@FUZZ
@given(subject=subjects)
def test_append_random_subject_stores_or_rejects_cleanly(env: Env, subject: str) -> None:
    _check_append(env, subject)


@FUZZ
@given(subject=subjects, after=st.integers(min_value=0, max_value=2**40))
def test_read_random_subject_returns_or_rejects(env: Env, subject: str, after: int) -> None:
    try:
        out = env.run(env.store.read(subject, after=after))
    except InvalidSubjectError:
        return
    assert isinstance(out, list)


@FUZZ
@given(agg_type=tokens, entity_id=tokens)
def test_entity_subject_of_random_tokens_is_valid_or_rejected(
    env: Env, agg_type: str, entity_id: str
) -> None:
    try:
        subject = entity_subject(STREAM, agg_type, entity_id)
    except InvalidSubjectError:
        return
    _check_append(env, subject)


@FUZZ
@given(good=st.lists(tokens, min_size=1, max_size=3), bad=subjects)
def test_atomic_append_with_one_bad_subject_stores_nothing(
    env: Env, good: list[str], bad: str
) -> None:
    ok_subject = f"{STREAM}.fuzz.ok"
    before = env.count()
    try:
        writes = [Write(ok_subject, [FuzzNoted(n=len(good))]), Write(bad, [FuzzNoted(n=2)])]
        env.run(env.store.append_many(writes))
    except InvalidSubjectError:
        assert env.count() == before
        return
    assert env.count() == before + 2


@pytest.mark.parametrize("length", [255, 4096, 70_000])
def test_very_long_subject_is_rejected_or_stored_and_connection_survives(
    env: Env, length: int
) -> None:
    subject = f"{STREAM}.long." + "x" * length
    try:
        _check_append(env, subject)
    except EventkitError as e:  # a clear eventkit error is acceptable; a dead connection is not
        assert not isinstance(e, InvalidSubjectError)
        pytest.fail(f"long subject gave {type(e).__name__}: {e}")
    finally:
        # the store must still work afterwards
        seq = env.run(env.store.append(f"{STREAM}.after.long", [FuzzNoted()]))
        assert seq > 0
