"""Events and an aggregate shared by the reliability scenarios (names prefixed to stay unique)."""

from __future__ import annotations

from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event
from eventkit.domain.handlers import on


class RelOpened(Event):
    event_type = "RelOpened"
    owner: str


class RelAdded(Event):
    event_type = "RelAdded"
    amount: int
    command: str = ""


class RelCounter(Aggregate):
    """A counter: opened once, then amounts added."""

    aggregate_type = "counter"

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.owner = ""
        self.total = 0
        self.commands: list[str] = []

    def open(self, owner: str) -> None:
        self.record(RelOpened(owner=owner))

    def add(self, amount: int, command: str) -> None:
        self.record(RelAdded(amount=amount, command=command))

    @on(RelOpened)
    def _opened(self, e: RelOpened) -> None:
        self.owner = e.owner

    @on(RelAdded)
    def _added(self, e: RelAdded) -> None:
        self.total += e.amount
        self.commands.append(e.command)
