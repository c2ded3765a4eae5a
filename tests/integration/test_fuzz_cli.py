"""Fuzzing sequences, times and subjects into the CLI (the ``eventkit`` console script's
``main()``, run in-process with its argv, environment and output captured).

Whatever the argument: a valid one runs (exit 0), an invalid one gives a clear message and an exit
code != 0, and never a traceback (an exception escaping ``main()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from eventkit.app import App
from eventkit.cli.main import main
from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection.projector import Projector
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]

STREAM = "fuzzcli"
FUZZ = settings(
    derandomize=True,  # the same examples on every run, so CI does not flake
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class FuzzCliNoted(Event):
    event_type = "FuzzCliNoted"
    n: int = 0


class FuzzCliSeen(Projector):
    name = "fuzzcli_seen"
    idempotent = True

    @on(FuzzCliNoted)
    def noted(self, e: FuzzCliNoted, rec: RecordedEvent[Any], db: Session) -> None:
        pass

    def reset(self, db: Session) -> None:
        pass


APP = App(stream=STREAM, projectors=[FuzzCliSeen()])


@dataclass
class Result:
    exit_code: int
    output: str


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = Path(tmp_path_factory.mktemp("fuzz-cli"))
    server = start_server_process(home / "store")

    async def seed() -> None:
        store = await JetStreamEventStore.connect(server.url, stream=STREAM)
        async with store:
            await store.append(f"{STREAM}.thing.t-1", [FuzzCliNoted(n=1), FuzzCliNoted(n=2)])

    database = f"sqlite:///{home / 'rm.db'}"
    try:
        asyncio.run(seed())
        upgrade(make_engine(database))
        yield {
            "EVENTKIT_NATS_URL": server.url,
            "EVENTKIT_APP": f"{__name__}:APP",
            "EVENTKIT_HOME": str(home),
            "EVENTKIT_STREAM": STREAM,
            "EVENTKIT_DATABASE_URL": database,
        }
    finally:
        server.stop()


def invoke(env: dict[str, str], args: list[str]) -> Result:
    """Run ``eventkit <args>`` as the console script does; fail on an escaping exception."""
    out = io.StringIO()
    saved_env, saved_argv = dict(os.environ), sys.argv
    os.environ.update(env)
    sys.argv = ["eventkit", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:
        pytest.fail(f"eventkit {args!r} raised {type(e).__name__}: {e} (a traceback)")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    text = out.getvalue()
    assert "Traceback" not in text
    return Result(code, text)


def expect_clear_failure(env: dict[str, str], args: list[str]) -> None:
    result = invoke(env, args)
    assert result.exit_code != 0, f"eventkit {args!r} accepted bad input: {result.output}"
    assert result.output.strip(), f"eventkit {args!r} failed without saying why"


ints_as_text = st.integers(min_value=-(2**70), max_value=2**70).map(str)
junk = st.one_of(
    ints_as_text,
    st.text(max_size=20),
    st.sampled_from(["", "-1", "1e9", "0x10", "nan", "inf", "2026-13-45", "yesterday", "½"]),
)
subjects = st.one_of(
    st.text(max_size=30),
    st.text(max_size=12).map(lambda t: f"{STREAM}.thing.{t}"),
    st.just(f"{STREAM}.thing.t-1"),
)


def test_events_of_a_known_subject_lists_them(cli_env: dict[str, str]) -> None:
    result = invoke(cli_env, ["events", f"{STREAM}.thing.t-1", "--json"])
    assert result.exit_code == 0, result.output
    assert '"FuzzCliNoted"' in result.output


@FUZZ
@given(after=junk)
def test_events_after_random_text(cli_env: dict[str, str], after: str) -> None:
    result = invoke(cli_env, ["events", f"{STREAM}.thing.t-1", "--after", after, "--json"])
    if result.exit_code != 0:
        assert result.output.strip() and "Traceback" not in result.output
    # text that is no number at all is refused (the CLI framework also takes "0.0" or "1_000")
    try:
        float(after)
    except ValueError:
        assert result.exit_code != 0


@FUZZ
@given(subject=subjects)
def test_events_of_random_subject(cli_env: dict[str, str], subject: str) -> None:
    result = invoke(cli_env, ["events", subject, "--json"])
    if result.exit_code != 0:
        assert result.output.strip()


@FUZZ
@given(port=junk)
def test_server_start_with_random_port(cli_env: dict[str, str], port: str) -> None:
    try:
        value = int(port)
    except ValueError:
        value = -1
    if 1 <= value <= 65535:
        return  # a valid port would really start a server: not what this fuzz is about
    expect_clear_failure(cli_env, ["server", "start", "--port", port])


@FUZZ
@given(when=junk)
def test_replay_from_random_time(cli_env: dict[str, str], when: str) -> None:
    result = invoke(cli_env, ["replay", "fuzzcli_seen", "--from-time", when, "--yes"])
    if result.exit_code != 0:
        assert result.output.strip()


@FUZZ
@given(seq=junk)
def test_replay_from_random_sequence(cli_env: dict[str, str], seq: str) -> None:
    result = invoke(cli_env, ["replay", "fuzzcli_seen", "--from-seq", seq, "--yes"])
    try:
        valid = int(seq) >= 1
    except ValueError:
        valid = False
    if not valid:
        assert result.exit_code != 0 and result.output.strip()
