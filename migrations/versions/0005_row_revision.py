"""A revision on each checkpoint: bumped by every writer of a projector's rows outside its
runner (a retried dead letter, a forget), so a runner that keeps rows in memory between batches
reads them from SQL again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "eventkit_checkpoints",
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("eventkit_checkpoints") as batch:
        batch.drop_column("revision")
