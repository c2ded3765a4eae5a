"""Values JSON or NATS headers cannot carry are refused before anything is sent, with an
EventkitError naming the fix: NaN and infinities, lone surrogates, invalid UTF-8, event ids
with spaces or newlines; and a relative time too far back on the CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from eventkit.cli.main import app as cli
from eventkit.domain.events import Event
from eventkit.errors import ConfigError, EventEncodeError, InvalidSubjectError
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]


class Odd(Event):
    event_type = "BadValuesOdd"
    x: float = 0.0
    extra: dict[str, Any] = {}
    blob: bytes = b""
    text: str = ""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server_process(tmp_path_factory.mktemp("store"))
    try:
        yield srv
    finally:
        srv.stop()


def test_nan_is_refused_when_the_event_is_made() -> None:
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValidationError, match="finite"):
            Odd(x=value)


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (Odd(extra={"rate": float("nan")}), "extra.rate is nan"),
        (Odd(extra={"xs": [1.0, float("inf")]}), "extra.xs[1] is inf"),
        (Odd.model_construct(x=float("-inf")), "x is -inf"),
        (Odd(text="bad \ud800 text"), "surrogate"),
        (Odd(blob=b"\xff\xfe"), "base64"),
    ],
)
async def test_values_json_cannot_carry_store_nothing(
    server: ServerProcess, event: Odd, needle: str
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream="badvalues")
    subject = f"badvalues.odd.{uuid.uuid4().hex}"
    before = await store.last_sequence()
    with pytest.raises(EventEncodeError, match=needle.replace("[", r"\[")):
        await store.append(subject, [Odd(x=1.0), event])  # one good, one bad: nothing stored
    assert await store.last_sequence() == before
    assert await store.read(subject) == []
    await store.close()


@pytest.mark.parametrize("event_id", ["has space", "new\nline", "tab\tid", "", "é", "x" * 257])
async def test_event_ids_headers_cannot_carry_are_refused(
    server: ServerProcess, event_id: str
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream="badvalues")
    before = await store.last_sequence()
    with pytest.raises(ConfigError, match="event id"):
        await store.append("badvalues.odd.ids", [Odd()], event_ids=[event_id])
    assert await store.last_sequence() == before
    await store.close()


async def test_a_retried_append_with_a_punctuated_id_is_found_not_a_conflict(
    server: ServerProcess,
) -> None:
    store = await JetStreamEventStore.connect(server.url, stream="badvalues")
    subject = f"badvalues.odd.{uuid.uuid4().hex}"
    eid = f"cmd:{uuid.uuid4().hex}/1"
    first = await store.append(subject, [Odd()], expected_sequence=0, event_ids=[eid])
    again = await store.append(subject, [Odd()], expected_sequence=0, event_ids=[eid])
    assert again == first and len(await store.read(subject)) == 1
    await store.close()


async def test_a_lone_surrogate_in_a_subject_is_an_invalid_subject(server: ServerProcess) -> None:
    store = await JetStreamEventStore.connect(server.url, stream="badvalues")
    with pytest.raises(InvalidSubjectError, match="surrogate"):
        await store.append("badvalues.odd.\udcff", [Odd()])
    with pytest.raises(InvalidSubjectError, match="surrogate"):
        await store.read("badvalues.odd.\udcff")
    await store.close()


def test_replay_from_a_time_before_year_one_is_a_clear_error(
    server: ServerProcess, tmp_path: Path
) -> None:
    runner = CliRunner()
    db_url = f"sqlite:///{tmp_path / 'read.db'}"
    args = ["--app", "samples.bank.app:app", "--nats-url", server.url, "--database-url", db_url]
    out = runner.invoke(cli, [*args, "replay", "balances", "--from-time", "99999999999d", "--yes"])
    assert out.exit_code == 2, out.output
    assert "before year 1" in out.output and "Traceback" not in out.output
