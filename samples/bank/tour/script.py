"""What the tour does: its people, amounts and transfers, and what one run found."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventkit.gdpr.forget import ForgetReport

APP_TARGET = "samples.bank.app:app"
WRITERS = 12
"""Concurrent writers depositing into one account at the same time."""
DEPOSIT = 25

PEOPLE = [
    # (first name, full name, opening deposit)
    ("mira", "Mira Okafor", 0),
    ("jonas", "Jonas Lindqvist", 500),
    ("priya", "Priya Raman", 200),
]
TRANSFERS = [
    # (from, to, amount)
    ("mira", "jonas", 120),
    ("jonas", "priya", 200),
    ("priya", "mira", 50),
    ("jonas", "mira", 75),
]
FORGET = "priya"


@dataclass
class TourResult:
    """What one run did: its ids, counts, and the checks it made."""

    run_id: str
    customers: dict[str, str] = field(default_factory=dict)
    """first name -> customer id"""
    accounts: dict[str, str] = field(default_factory=dict)
    """first name -> account id"""
    deposits: int = 0
    conflicts: int = 0
    transfers: int = 0
    balances_match: bool = False
    ledger_idempotent: bool | None = None
    """None when the replay was skipped (another process runs the ledger)."""
    forgotten: str = ""
    forget_report: ForgetReport | None = None
    seconds: float = 0.0
