"""The bank's projectors: balances, a transaction ledger and a customer directory.

Balances and the directory hold the current state of each entity: row projectors. The ledger
appends one row per money movement (keyed by stream sequence, not by entity): a plain projector.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from eventkit import Projector, RecordedEvent, RowProjector, on
from samples.bank import readmodels
from samples.bank.domain import (
    AccountOpened,
    CustomerEmailChanged,
    CustomerRegistered,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferReceived,
    TransferSent,
)
from samples.bank.readmodels import balances, customers, ledger


class Balances(RowProjector):
    """One row per account with its balance: a row projector (folded in memory per batch).

    Increments are not idempotent, so it replays from the start only (its derived reset empties
    the table); its derived forget deletes the row of a forgotten account.
    """

    name = "balances"
    metadata = readmodels.metadata
    subjects = ["bank.account.>"]
    table = balances

    @on(AccountOpened)
    def opened(self, e: AccountOpened, rec: RecordedEvent[Any], row: dict[str, Any]) -> None:
        row["customer_id"] = e.customer_id
        row["events"] += 1

    @on(MoneyDeposited, TransferReceived)
    def credited(
        self, e: MoneyDeposited | TransferReceived, rec: RecordedEvent[Any], row: dict[str, Any]
    ) -> None:
        row["balance"] += e.amount
        row["events"] += 1

    @on(MoneyWithdrawn, TransferSent)
    def debited(
        self, e: MoneyWithdrawn | TransferSent, rec: RecordedEvent[Any], row: dict[str, Any]
    ) -> None:
        row["balance"] -= e.amount
        row["events"] += 1


class Ledger(Projector):
    """Every money movement, keyed by stream sequence: idempotent, so it replays from any time.
    Partitioned: any number of workers share it (the compose stack runs three), each account's
    events applied in order by one of them."""

    name = "ledger"
    metadata = readmodels.metadata
    subjects = ["bank.account.>"]
    idempotent = True
    partitions = 8

    def _row(
        self, db: Session, rec: RecordedEvent[Any], kind: str, amount: int, other: str | None
    ) -> None:
        db.execute(delete(ledger).where(ledger.c.sequence == rec.sequence))
        db.execute(
            insert(ledger).values(
                sequence=rec.sequence,
                account_id=rec.entity_id,
                kind=kind,
                amount=amount,
                counterparty=other,
                at=rec.time,
            )
        )

    @on(MoneyDeposited)
    def deposited(self, e: MoneyDeposited, rec: RecordedEvent[Any], db: Session) -> None:
        self._row(db, rec, "deposit", e.amount, None)

    @on(MoneyWithdrawn)
    def withdrawn(self, e: MoneyWithdrawn, rec: RecordedEvent[Any], db: Session) -> None:
        self._row(db, rec, "withdrawal", -e.amount, None)

    @on(TransferSent)
    def sent(self, e: TransferSent, rec: RecordedEvent[Any], db: Session) -> None:
        self._row(db, rec, "transfer", -e.amount, e.to_account)

    @on(TransferReceived)
    def received(self, e: TransferReceived, rec: RecordedEvent[Any], db: Session) -> None:
        self._row(db, rec, "transfer", e.amount, e.from_account)

    def forget(self, subject: str, db: Session) -> None:
        db.execute(delete(ledger).where(ledger.c.account_id == subject.rsplit(".", 1)[-1]))

    def reset(self, db: Session) -> None:
        db.execute(delete(ledger))


class CustomerDirectory(RowProjector):
    """Names and emails: personal data. A row projector keyed by customer id; its derived
    forget deletes the customer's row. Handlers only set values, so it is idempotent."""

    name = "customers"
    metadata = readmodels.metadata
    subjects = ["bank.customer.>"]
    table = customers
    idempotent = True

    @on(CustomerRegistered)
    def registered(
        self, e: CustomerRegistered, rec: RecordedEvent[Any], row: dict[str, Any]
    ) -> None:
        row["name"] = e.name
        row["email"] = e.email

    @on(CustomerEmailChanged)
    def email_changed(
        self, e: CustomerEmailChanged, rec: RecordedEvent[Any], row: dict[str, Any]
    ) -> None:
        row["email"] = e.email

    def lookup(self, db: Session, customer_id: str) -> Any:
        return db.execute(select(customers).where(customers.c.customer_id == customer_id)).first()
