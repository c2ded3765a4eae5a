"""GDPR: forget progress (resumable forgets) and the forget audit log, without personal data.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "eventkit_forget_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("subject_hmac", sa.String(80), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("messages_erased", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("stream", "subject_hmac", name="uq_eventkit_forget_requests_subject"),
    )
    op.create_table(
        "eventkit_forget_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject_hmac", sa.String(80), nullable=False),
        sa.Column("hmac_scheme", sa.String(32), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("messages_erased", sa.Integer(), nullable=False),
        sa.Column("snapshots_erased", sa.Integer(), nullable=False),
        sa.Column("key_shredded", sa.Boolean(), nullable=False),
        sa.Column("projectors", sa.Text(), nullable=False),
        sa.Column("projectors_without_forget", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('subject', 'message')", name="ck_eventkit_forget_audit_kind"),
    )
    op.create_index(
        "ix_eventkit_forget_audit_subject", "eventkit_forget_audit", ["stream", "subject_hmac"]
    )


def downgrade() -> None:
    op.drop_index("ix_eventkit_forget_audit_subject", table_name="eventkit_forget_audit")
    op.drop_table("eventkit_forget_audit")
    op.drop_table("eventkit_forget_requests")
