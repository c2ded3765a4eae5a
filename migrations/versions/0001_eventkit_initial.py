"""eventkit's initial tables: checkpoints, dead letters, leases.

Revision ID: 0001
Revises:
Create Date: 2026-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eventkit_checkpoints",
        sa.Column("projector", sa.String(200), primary_key=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("last_event_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(20), nullable=False, server_default="running"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('running', 'halted')", name="ck_eventkit_checkpoints_state"),
    )
    op.create_table(
        "eventkit_dead_letters",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("projector", sa.String(200), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(1000), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("projector", "sequence", name="uq_eventkit_dead_letters_seq"),
    )
    op.create_index(
        "ix_eventkit_dead_letters_open", "eventkit_dead_letters", ["projector", "resolved_at"]
    )
    op.create_table(
        "eventkit_leases",
        sa.Column("projector", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eventkit_leases")
    op.drop_index("ix_eventkit_dead_letters_open", table_name="eventkit_dead_letters")
    op.drop_table("eventkit_dead_letters")
    op.drop_table("eventkit_checkpoints")
