"""The bank's events and aggregates."""

from __future__ import annotations

from eventkit import Aggregate, Event, on


class CustomerRegistered(Event):
    name: str
    email: str


class CustomerEmailChanged(Event):
    email: str


class AccountOpened(Event):
    customer_id: str


class MoneyDeposited(Event):
    amount: int


class MoneyWithdrawn(Event):
    amount: int


class TransferSent(Event):
    transfer_id: str
    to_account: str
    amount: int


class TransferReceived(Event):
    transfer_id: str
    from_account: str
    amount: int


class InsufficientFunds(ValueError):
    pass


class Customer(Aggregate):
    """A person. Personal data: every event is encrypted with the customer's own key."""

    personal_data = True

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.name = ""
        self.email = ""

    def register(self, name: str, email: str) -> None:
        if self.version or self.pending:
            raise ValueError(f"customer {self.id} is already registered")
        if "@" not in email:
            raise ValueError(f"not an email address: {email!r}")
        self.record(CustomerRegistered(name=name, email=email))

    def change_email(self, email: str) -> None:
        if "@" not in email:
            raise ValueError(f"not an email address: {email!r}")
        self.record(CustomerEmailChanged(email=email))

    @on(CustomerRegistered)
    def _registered(self, e: CustomerRegistered) -> None:
        self.name, self.email = e.name, e.email

    @on(CustomerEmailChanged)
    def _email_changed(self, e: CustomerEmailChanged) -> None:
        self.email = e.email


class Account(Aggregate):
    """A bank account; a snapshot every 100 events keeps busy accounts fast to load."""

    snapshot_every = 100

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.customer_id = ""
        self.balance = 0

    def open(self, customer_id: str) -> None:
        if self.version or self.pending:
            raise ValueError(f"account {self.id} is already open")
        self.record(AccountOpened(customer_id=customer_id))

    def deposit(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        self.record(MoneyDeposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        if amount <= 0:
            raise ValueError("amount must be positive")
        if amount > self.balance:
            raise InsufficientFunds(f"account {self.id} holds {self.balance}, not {amount}")
        self.record(MoneyWithdrawn(amount=amount))

    def send(self, transfer_id: str, to: Account, amount: int) -> None:
        """Record both sides of a transfer; save the two accounts together with save_all."""
        if amount <= 0:
            raise ValueError("amount must be positive")
        if to.id == self.id:
            raise ValueError("cannot transfer to the same account")
        if amount > self.balance:
            raise InsufficientFunds(f"account {self.id} holds {self.balance}, not {amount}")
        self.record(TransferSent(transfer_id=transfer_id, to_account=to.id, amount=amount))
        to.record(TransferReceived(transfer_id=transfer_id, from_account=self.id, amount=amount))

    @on(AccountOpened)
    def _opened(self, e: AccountOpened) -> None:
        self.customer_id = e.customer_id

    @on(MoneyDeposited, TransferReceived)
    def _credited(self, e: MoneyDeposited | TransferReceived) -> None:
        self.balance += e.amount

    @on(MoneyWithdrawn, TransferSent)
    def _debited(self, e: MoneyWithdrawn | TransferSent) -> None:
        self.balance -= e.amount
