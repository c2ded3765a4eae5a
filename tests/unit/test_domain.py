"""Events, the registry, upcasters and aggregates (no I/O)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from eventkit import Aggregate, ConfigError, Event, on
from eventkit.domain.events import EventRegistry, registry
from eventkit.errors import UnknownEventTypeError


class Opened(Event):
    event_type: ClassVar[str] = "tests.domain.Opened"
    owner: str


class Deposited(Event):
    amount: int


class Unhandled(Event):
    event_type: ClassVar[str] = "tests.domain.Unhandled"


class Account(Aggregate):
    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.balance = 0

    def open(self, owner: str) -> None:
        self.record(Opened(owner=owner))

    @on(Opened)
    def _opened(self, e: Opened) -> None:
        self.owner = e.owner

    @on(Deposited)
    def _deposited(self, e: Deposited) -> None:
        self.balance += e.amount


def test_events_are_frozen_and_strict() -> None:
    e = Deposited(amount=1)
    with pytest.raises(ValidationError):
        e.amount = 2  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Deposited(amount=1, extra=2)  # type: ignore[call-arg]


def test_type_names_are_stable_and_registered() -> None:
    assert Deposited.event_type == "Deposited"
    assert Opened.event_type == "tests.domain.Opened"
    assert registry.get("tests.domain.Opened") is Opened
    with pytest.raises(UnknownEventTypeError, match="nope"):
        registry.get("nope")


def test_two_classes_with_one_type_name_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"tests\.domain\.Opened"):

        class Other(Event):
            event_type: ClassVar[str] = "tests.domain.Opened"


def test_a_registry_of_its_own() -> None:
    reg = EventRegistry()
    reg.register(Opened)
    assert "tests.domain.Opened" in reg and "Deposited" not in reg


def test_upcasters_run_in_order_and_are_required() -> None:
    class Price(Event):
        event_type: ClassVar[str] = "tests.domain.Price"
        schema_version: ClassVar[int] = 3
        cents: int
        currency: str

        @staticmethod
        def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
            return {"cents": data["euros"] * 100}

        @staticmethod
        def upcast_v2_v3(data: dict[str, Any]) -> dict[str, Any]:
            return {**data, "currency": "EUR"}

    assert Price.upcast({"euros": 2}, 1) == {"cents": 200, "currency": "EUR"}
    assert Price.upcast({"cents": 5}, 2) == {"cents": 5, "currency": "EUR"}
    with pytest.raises(ConfigError, match="upcast_v1_v2"):

        class Broken(Event):
            event_type: ClassVar[str] = "tests.domain.Broken"
            schema_version: ClassVar[int] = 2


def test_record_applies_and_queues_with_ids() -> None:
    a = Account("a-1")
    a.open("ada")
    a.record(Deposited(amount=5))
    assert (a.owner, a.balance, a.version) == ("ada", 5, 0)
    assert a.pending == [Opened(owner="ada"), Deposited(amount=5)]
    assert len(set(a.pending_ids)) == 2
    a.mark_saved(7)
    assert (a.version, a.pending, a.pending_ids) == (7, [], [])


def test_recording_an_event_without_handler_fails_at_record_time() -> None:
    a = Account("a-1")
    with pytest.raises(ConfigError, match=r"no @on\(Unhandled\) handler"):
        a.record(Unhandled())
    assert a.pending == [] and a.pending_ids == []


def test_aggregate_type_and_snapshot_settings() -> None:
    assert Account.aggregate_type == "account"
    assert Account.snapshot_shape() == ["balance", "owner"]
    with pytest.raises(ConfigError, match="snapshot_every"):

        class Bad(Aggregate):
            snapshot_every = 0


def test_on_needs_event_classes() -> None:
    with pytest.raises(ConfigError):
        on()
    with pytest.raises(ConfigError):
        on(int)  # type: ignore[arg-type]
