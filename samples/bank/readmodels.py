"""The bank's read-model tables (created by the sample's own Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

balances = Table(
    "bank_balances",
    metadata,
    Column("account_id", String(100), primary_key=True),
    Column("customer_id", String(100), nullable=False),
    Column("balance", BigInteger, nullable=False, default=0),
    Column("events", Integer, nullable=False, default=0),
)

ledger = Table(
    "bank_ledger",
    metadata,
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("account_id", String(100), nullable=False, index=True),
    Column("kind", String(20), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("counterparty", String(100), nullable=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

customers = Table(
    "bank_customers",
    metadata,
    Column("customer_id", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(320), nullable=False),
)
