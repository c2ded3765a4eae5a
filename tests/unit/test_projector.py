"""Projector declarations and the runner's pure helpers (no server, no database)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from eventkit import Event, RecordedEvent, on
from eventkit.errors import ConfigError, ProjectionError
from eventkit.projection.projector import Projector
from eventkit.projection.replay import _method
from eventkit.runtime.pulling import consumer_name, parse_reply


class UpOpened(Event):
    owner: str


class UpOther(Event):
    x: int


class Plain(Projector):
    subjects = ["bank.account.>"]

    @on(UpOpened)
    def opened(self, e: UpOpened, rec: RecordedEvent[Any], db: Session) -> None: ...


class Idem(Plain):
    name = "idem"
    idempotent = True


class Rewinds(Plain):
    name = "rewinds"

    def rewind(self, to_sequence: int, db: Session) -> None: ...

    def reset(self, db: Session) -> None: ...


def test_projector_defaults_and_filters() -> None:
    p = Plain()
    assert p.name == "plain" and p.on_error == "halt" and not p.idempotent
    assert p.handles("UpOpened") and not p.handles("UpOther")
    assert p.filters("bank") == ["bank.account.>"]
    assert Idem().filters("bank") == ["bank.account.>"]

    class Everything(Projector):
        pass

    assert Everything().filters("bank") == ["bank.>"]
    assert consumer_name("plain") == "eventkit_plain"


def test_bad_declarations_are_rejected() -> None:
    with pytest.raises(ConfigError, match="letters, digits"):

        class Bad(Projector):
            name = "has space"

    with pytest.raises(ConfigError, match="halt"):

        class BadPolicy(Projector):
            on_error = "ignore"  # type: ignore[assignment]


def test_replay_method_needs_reset_rewind_or_idempotent() -> None:
    with pytest.raises(ProjectionError, match="no reset"):
        _method(Plain(), "start")
    with pytest.raises(ProjectionError, match="not idempotent"):
        _method(Plain(), "sequence")
    assert _method(Idem(), "time") == "idempotent"
    assert _method(Rewinds(), "sequence") == "rewind"
    assert _method(Rewinds(), "start") == "reset"


def test_parse_reply_reads_v1_and_v2_ack_subjects() -> None:
    v1 = "$JS.ACK.bank.eventkit_p.1.42.7.1700000000000000000.3"
    assert parse_reply(v1) == (42, 7, 1700000000000000000, 3)
    v2 = "$JS.ACK.dom.ACCHASH.bank.eventkit_p.1.42.7.1700000000000000000.3.rnd"
    assert parse_reply(v2) == (42, 7, 1700000000000000000, 3)
