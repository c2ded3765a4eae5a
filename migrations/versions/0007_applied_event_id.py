"""The event id beside each checkpoint: the id of the message applied at its sequence, so a
stream that went back and handed that sequence to another event is noticed.

Revision ID: 0007
Revises: 0006_read_model_copies
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006_read_model_copies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("eventkit_checkpoints", sa.Column("last_event_id", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("eventkit_checkpoints") as batch:
        batch.drop_column("last_event_id")
