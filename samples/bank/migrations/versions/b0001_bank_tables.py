"""The bank's read-model tables.

Revision ID: b0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_balances",
        sa.Column("account_id", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
    )
    op.create_table(
        "bank_ledger",
        sa.Column("sequence", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("counterparty", sa.String(100), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_bank_ledger_account_id", "bank_ledger", ["account_id"])
    op.create_table(
        "bank_customers",
        sa.Column("customer_id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bank_customers")
    op.drop_index("ix_bank_ledger_account_id", "bank_ledger")
    op.drop_table("bank_ledger")
    op.drop_table("bank_balances")
