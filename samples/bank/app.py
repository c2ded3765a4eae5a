"""The bank's App, as the CLI loads it: ``eventkit --app samples.bank.app:app status``."""

from __future__ import annotations

from eventkit.app import App
from samples.bank.domain import Account, Customer
from samples.bank.projections import Balances, CustomerDirectory, Ledger
from samples.bank.reactors import LargeWithdrawals, ReviewEscalated, ReviewOpened

app = App(
    stream="bank",
    aggregates=[Account, Customer],
    projectors=[Balances(), Ledger(), CustomerDirectory()],
    reactors=[LargeWithdrawals()],
    writes=[ReviewOpened, ReviewEscalated],  # the reactor's outputs, for `eventkit schema export`
    migrations="samples.bank:migrations",
)
