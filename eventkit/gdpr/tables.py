"""eventkit's own GDPR tables (created by migration ``0002``): forget progress and the audit log.

Neither holds personal data: a subject appears only as an HMAC under a key derived from the
master key (or a salted SHA-256 when no master key is configured).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

forget_requests = Table(
    "eventkit_forget_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("subject_hmac", String(80), nullable=False),
    Column("step", String(32), nullable=False),
    Column("messages_erased", Integer, nullable=False, default=0),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("stream", "subject_hmac", name="uq_eventkit_forget_requests_subject"),
)
"""One row per subject being (or once) forgotten; ``step`` is the last step completed."""

forget_audit = Table(
    "eventkit_forget_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False),
    Column("kind", String(16), nullable=False),  # "subject" | "message"
    Column("subject_hmac", String(80), nullable=False),
    Column("hmac_scheme", String(32), nullable=False),
    Column("sequence", BigInteger, nullable=True),
    Column("messages_erased", Integer, nullable=False),
    Column("snapshots_erased", Integer, nullable=False),
    Column("key_shredded", Boolean, nullable=False),
    Column("projectors", Text, nullable=False),
    Column("projectors_without_forget", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)
"""One row per completed forget: what went, when; never the subject itself."""

__all__ = ["forget_audit", "forget_requests", "metadata"]
