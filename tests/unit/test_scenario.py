"""The given / when / then helpers, on the bank sample's Account."""

from __future__ import annotations

import pytest

from eventkit.testing import given
from samples.bank.domain import (
    Account,
    AccountOpened,
    InsufficientFunds,
    MoneyDeposited,
    MoneyWithdrawn,
)

HISTORY = (AccountOpened(customer_id="c-1"), MoneyDeposited(amount=10))


def test_given_applies_history_as_if_loaded() -> None:
    scenario = given(Account, "a-1", *HISTORY)
    assert scenario.aggregate.balance == 10
    assert scenario.aggregate.version == 2 and scenario.aggregate.pending == []


def test_then_passes_on_the_recorded_events_and_state() -> None:
    given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(4)).then(
        MoneyWithdrawn(amount=4)
    ).state(balance=6)


def test_then_fails_on_other_events() -> None:
    with pytest.raises(AssertionError, match="recorded events differ"):
        given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(4)).then(MoneyWithdrawn(amount=5))


def test_then_fails_when_the_command_raised() -> None:
    with pytest.raises(AssertionError, match="raised"):
        given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(50)).then(
            MoneyWithdrawn(amount=50)
        )


def test_raises_checks_type_and_message() -> None:
    given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(50)).raises(
        InsufficientFunds, match="holds 10"
    )
    with pytest.raises(AssertionError, match="expected ValueError"):
        given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(4)).raises(ValueError)
    with pytest.raises(AssertionError, match="does not match"):
        given(Account, "a-1", *HISTORY).when(lambda a: a.withdraw(50)).raises(
            InsufficientFunds, match="overdrawn"
        )


def test_state_fails_on_a_different_value() -> None:
    with pytest.raises(AssertionError, match="state differs"):
        given(Account, "a-1", *HISTORY).when(lambda a: a.deposit(1)).state(balance=10)


def test_then_before_when_is_a_usage_error() -> None:
    with pytest.raises(AssertionError, match=r"call \.when"):
        given(Account, "a-1", *HISTORY).then()
