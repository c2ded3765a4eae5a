"""How a projection runner stands (its state) and how a run ended (:class:`RunResult`), and
the lease owner id a runner takes by default."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Literal

RunnerState = Literal["starting", "standby", "waiting", "catching-up", "live", "halted", "stopped"]

DEFAULT_LEASE_TTL = 5.0


def default_owner() -> str:
    """A lease owner id unique to this process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a runner ended: its checkpoint, how many events its handlers applied (``processed``),
    how many messages it passed over (eventkit's own, types it does not handle, foreign ones)
    and parked, whether it halted."""

    projector: str
    checkpoint: int
    processed: int
    halted: bool = False
    error: str | None = None
    passed_over: int = 0
    parked: int = 0
    version: int = 1


__all__ = ["DEFAULT_LEASE_TTL", "RunResult", "RunnerState", "default_owner"]
