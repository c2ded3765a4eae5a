"""Given / when / then for aggregates: unit tests of the domain, no store needed.

::

    from eventkit.testing import given

    def test_withdraw_more_than_the_balance_is_refused() -> None:
        (given(Account, "a-1", AccountOpened(customer_id="c-1"), MoneyDeposited(amount=10))
            .when(lambda a: a.withdraw(50))
            .raises(InsufficientFunds, match="holds 10"))

    def test_withdraw() -> None:
        (given(Account, "a-1", AccountOpened(customer_id="c-1"), MoneyDeposited(amount=10))
            .when(lambda a: a.withdraw(4))
            .then(MoneyWithdrawn(amount=4))
            .state(balance=6))
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from eventkit.domain.aggregate import Aggregate
from eventkit.domain.events import Event

A = TypeVar("A", bound=Aggregate)

_NOT_RUN = object()


class Scenario(Generic[A]):
    """An aggregate built from past events, a command run on it, and what it recorded."""

    def __init__(self, aggregate: A) -> None:
        self.aggregate = aggregate
        self.recorded: list[Event] = []
        self.error: BaseException | None = None
        self._ran: object = _NOT_RUN

    def when(self, command: Callable[[A], Any]) -> Scenario[A]:
        """Run ``command`` on the aggregate; its new events (or its exception) are kept."""
        before = len(self.aggregate.pending)
        try:
            command(self.aggregate)
        except Exception as e:  # kept for .raises(); .then() re-raises it
            self.error = e
        self.recorded = list(self.aggregate.pending[before:])
        self._ran = True
        return self

    def then(self, *events: Event) -> Scenario[A]:
        """Assert the command recorded exactly ``events``, in order (none: it recorded nothing)."""
        self._check_ran("then")
        if self.error is not None:
            raise AssertionError(
                f"expected {list(events)!r}, but the command raised {self.error!r}"
            ) from self.error
        if self.recorded != list(events):
            raise AssertionError(
                f"recorded events differ:\n  expected {list(events)!r}\n"
                f"  recorded {self.recorded!r}"
            )
        return self

    def raises(self, error: type[BaseException], match: str | None = None) -> Scenario[A]:
        """Assert the command raised ``error`` (its message matching ``match``) and recorded
        nothing."""
        self._check_ran("raises")
        if self.error is None:
            raise AssertionError(
                f"expected {error.__name__}, but the command recorded {self.recorded!r}"
            )
        if not isinstance(self.error, error):
            raise AssertionError(f"expected {error.__name__}, got {self.error!r}") from self.error
        if match is not None and not re.search(match, str(self.error)):
            raise AssertionError(f"{self.error!r} does not match {match!r}") from self.error
        if self.recorded:
            raise AssertionError(f"the command raised but recorded {self.recorded!r}")
        return self

    def state(self, **expected: Any) -> Scenario[A]:
        """Assert attributes of the aggregate after the command, e.g. ``.state(balance=6)``."""
        actual = {name: getattr(self.aggregate, name) for name in expected}
        if actual != expected:
            raise AssertionError(f"state differs:\n  expected {expected!r}\n  actual   {actual!r}")
        return self

    def _check_ran(self, step: str) -> None:
        if self._ran is _NOT_RUN:
            raise AssertionError(f"call .when(command) before .{step}()")


def given(aggregate: type[A], id: str, *history: Event) -> Scenario[A]:
    """An aggregate of class ``aggregate`` with ``history`` applied, as if loaded from the store
    (its version is the number of past events, nothing pending)."""
    agg = aggregate(id)
    for event in history:
        agg.apply(event)
    agg.version = len(history)
    return Scenario(agg)


__all__ = ["Scenario", "given"]
