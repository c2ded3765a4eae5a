"""The bank's App, as the CLI loads it: ``eventkit --app samples.bank.app:app status``."""

from __future__ import annotations

from eventkit.app import App
from samples.bank.domain import Account, Customer
from samples.bank.projections import Balances, CustomerDirectory, Ledger
from samples.bank.reactors import LargeWithdrawals

app = App(
    stream="bank",
    aggregates=[Account, Customer],
    projectors=[Balances(), Ledger(), CustomerDirectory()],
    reactors=[LargeWithdrawals()],
    migrations="samples.bank:migrations",
)
