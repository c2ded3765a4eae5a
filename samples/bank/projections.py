"""The bank's projectors: balances, a transaction ledger and a customer directory."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from eventkit import Projector, RecordedEvent, on
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


class Balances(Projector):
    """One row per account with its balance. Increments are not idempotent: replay from start."""

    name = "balances"
    metadata = readmodels.metadata
    subjects = ["bank.account.>"]

    @on(AccountOpened)
    def opened(self, e: AccountOpened, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(
            insert(balances).values(
                account_id=rec.entity_id, customer_id=e.customer_id, balance=0, events=1
            )
        )

    @on(MoneyDeposited, TransferReceived)
    def credited(
        self, e: MoneyDeposited | TransferReceived, rec: RecordedEvent[Any], db: Session
    ) -> None:
        self._add(db, rec.entity_id, e.amount)

    @on(MoneyWithdrawn, TransferSent)
    def debited(
        self, e: MoneyWithdrawn | TransferSent, rec: RecordedEvent[Any], db: Session
    ) -> None:
        self._add(db, rec.entity_id, -e.amount)

    def _add(self, db: Session, account_id: str, amount: int) -> None:
        db.execute(
            update(balances)
            .where(balances.c.account_id == account_id)
            .values(balance=balances.c.balance + amount, events=balances.c.events + 1)
        )

    def forget(self, subject: str, db: Session) -> None:
        # balances hold no personal data; a forgotten account's row goes with it
        db.execute(delete(balances).where(balances.c.account_id == subject.rsplit(".", 1)[-1]))

    def reset(self, db: Session) -> None:
        db.execute(delete(balances))


class Ledger(Projector):
    """Every money movement, keyed by stream sequence: idempotent, so it replays from any time."""

    name = "ledger"
    metadata = readmodels.metadata
    subjects = ["bank.account.>"]
    idempotent = True

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


class CustomerDirectory(Projector):
    """Names and emails: personal data, erased by forget."""

    name = "customers"
    metadata = readmodels.metadata
    subjects = ["bank.customer.>"]
    idempotent = True

    @on(CustomerRegistered)
    def registered(self, e: CustomerRegistered, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(delete(customers).where(customers.c.customer_id == rec.entity_id))
        db.execute(insert(customers).values(customer_id=rec.entity_id, name=e.name, email=e.email))

    @on(CustomerEmailChanged)
    def email_changed(self, e: CustomerEmailChanged, rec: RecordedEvent[Any], db: Session) -> None:
        db.execute(
            update(customers).where(customers.c.customer_id == rec.entity_id).values(email=e.email)
        )

    def forget(self, subject: str, db: Session) -> None:
        db.execute(delete(customers).where(customers.c.customer_id == subject.rsplit(".", 1)[-1]))

    def reset(self, db: Session) -> None:
        db.execute(delete(customers))

    def lookup(self, db: Session, customer_id: str) -> Any:
        return db.execute(select(customers).where(customers.c.customer_id == customer_id)).first()
