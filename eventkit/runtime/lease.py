"""What a worker holds to own its share of the work: the seam of leases and partitions.

A worker owns one :class:`Share` at a time: a worker name and, once a worker is split over
processes, one of its ``partitions`` (``None``: the whole). A :class:`Lease` of a share is
taken, kept (renewed in the background), checked where correctness depends on it, and released;
the projection runner's SQL lease (:class:`eventkit.projection.lease.RunnerLease`) is one, fenced
inside every batch transaction. A lease change must also move delivery: the holder that takes a
share over points the share's consumer at its own position, which ends the requests a frozen
earlier holder left outstanding (see ``Puller.start(fresh=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Share:
    """One unit of ownership: worker ``name``, partition ``partition`` of ``partitions``."""

    name: str
    partition: int | None = None
    partitions: int = 1

    @property
    def key(self) -> str:
        """The name the lease and the consumer of this share are known by."""
        return self.name if self.partition is None else f"{self.name}.p{self.partition}"


class Lease(Protocol):
    """A share held by one owner at a time."""

    owner: str
    ttl: float
    lost: bool

    def try_acquire(self) -> Any | None:
        """The start position when taken (free or expired), None while another holds it."""

    def release(self) -> None: ...

    async def keep(self) -> None:
        """Renew every ``ttl / 3`` until cancelled; set :attr:`lost` when another took it."""


__all__ = ["Lease", "Share"]
