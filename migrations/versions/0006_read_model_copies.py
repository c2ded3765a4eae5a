"""Every version of a projector and the table it writes, in one registry; the stream of each
checkpoint.

``eventkit_projector_versions`` holds one row per version of a projector that ever ran: its
slot (checkpoint, lease and consumer name), its role (``live``, ``building``, ``retired``) and
the table eventkit writes for it. Switches, builds and drops write it in their transactions and
every batch of a row projector checks it (a fence), so two versions never write one table and
``forget``, ``status`` and ``eventkit versions drop`` see every copy eventkit made.

``eventkit_checkpoints.stream``: the stream a checkpoint counts sequences of, so a runner on
another stream sharing the database is refused instead of starting at a foreign position.

Revision ID: 0006_read_model_copies
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006_read_model_copies"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    registry = op.create_table(
        "eventkit_projector_versions",
        sa.Column("projector", sa.String(200), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("slot", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("table_name", sa.String(300), nullable=True),
        sa.Column("table_schema", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("eventkit_checkpoints") as batch:
        batch.add_column(sa.Column("stream", sa.String(200), nullable=True))
    # the live versions recorded so far (their table is named when their code next runs)
    conn = op.get_bind()
    live = sa.table("eventkit_versions", sa.column("projector"), sa.column("live_version"))
    now = datetime.now(UTC)
    rows = [
        {
            "projector": name,
            "version": int(v),
            "slot": name if int(v) == 1 else f"{name}_v{int(v)}",
            "role": "live",
            "table_name": None,
            "table_schema": None,
            "updated_at": now,
        }
        for name, v in conn.execute(sa.select(live.c.projector, live.c.live_version))
    ]
    if rows:
        op.bulk_insert(registry, rows)


def downgrade() -> None:
    with op.batch_alter_table("eventkit_checkpoints") as batch:
        batch.drop_column("stream")
    op.drop_table("eventkit_projector_versions")
