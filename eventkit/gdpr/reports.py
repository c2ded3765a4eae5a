"""What a forget reports: what it erased (or would erase), and what eventkit cannot erase itself.

::

    report = await forget_subject(app, store, engine, "bank.customer.c-1")
    report.messages, report.key, report.covered_by, report.cannot_erase
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

CANNOT_ERASE: tuple[str, ...] = (
    "copies in the Raft logs of a replicated stream (R3+), until they compact (minutes)",
    "mirrors and sourced copies of the stream on other streams or servers",
    "backups of the JetStream store and of the SQL database",
    "PostgreSQL dead row versions, until VACUUM",
)
"""What eventkit cannot erase itself; crypto-shredding makes the encrypted part unreadable."""


@dataclass
class ForgetReport:
    """What a forget erased (or, with ``dry_run``, would erase)."""

    stream: str
    subject: str
    subject_hmac: str
    hmac_scheme: str
    dry_run: bool
    messages: int = 0
    snapshots: int = 0
    key: str = "none"
    """``"shredded"``, ``"already shredded"``, ``"none"`` (never had one); dry run: ``"active"``."""
    encrypted: bool = False
    """The subject is a personal-data subject: its events are stored encrypted."""
    projectors: list[str] = field(default_factory=list)
    projectors_without_forget: list[str] = field(default_factory=list)
    dead_letters: int = 0
    deadlines: int = 0
    """Reactor deadlines about the subject erased (pending schedules and fired copies)."""
    notice_sequence: int | None = None
    marker_sequence: int | None = None
    """The stream sequence of the erasure marker left on the subject."""
    already_forgotten: bool = False
    """The subject was forgotten before (its erasure marker was there) and nothing was left."""
    resumed: bool = False
    previously_finished: datetime | None = None
    joined: bool = False
    """Another forget of the subject, run at the same time, finished first and wrote the audit
    entry: this one erased what was left and wrote none (an auditor reads one per erasure)."""

    @property
    def nothing(self) -> bool:
        """Nothing of the subject was found anywhere eventkit looks."""
        return (
            self.messages == 0
            and self.snapshots == 0
            and self.key in ("none", "already shredded")
            and not self.resumed
        )

    @property
    def cannot_erase(self) -> tuple[str, ...]:
        return CANNOT_ERASE

    @property
    def covered_by(self) -> str:
        if self.encrypted or self.key != "none":
            return (
                "crypto-shredding: the subject's data key is erased, so no copy of its "
                "encrypted events or snapshots can be decrypted any more"
            )
        return (
            "nothing: this subject is not stored encrypted (declare personal_data = True on its "
            "aggregate or events to have copies out of reach made unreadable)"
        )


@dataclass
class MessageForgetReport:
    """What ``forget --seq N`` erased, and which read models still hold its effect."""

    stream: str
    sequence: int
    found: bool
    dry_run: bool
    subject: str | None = None
    erased: bool = False
    stale_projectors: list[str] = field(default_factory=list)
    """Projectors that read the subject and whose checkpoint is at or past the message."""


__all__ = ["CANNOT_ERASE", "ForgetReport", "MessageForgetReport"]
