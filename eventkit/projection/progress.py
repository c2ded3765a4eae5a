"""How a projection runner stands (:class:`Progress`: its state, checkpoint and counts, written
by the parts that move them) and how a run ended (:class:`RunResult`), and the lease owner id a
runner takes by default."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

T = TypeVar("T")

log = logging.getLogger("eventkit.projection")

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


@dataclass(slots=True)
class Progress:
    """Where a runner stands. The runner's parts (its batch transaction, its bad-event
    handling) move it as they commit; the runner and whoever watches it read it."""

    checkpoint: int = 0
    processed: int = 0
    passed_over: int = 0
    parked: int = 0
    lag: int = 0
    state: RunnerState = "starting"
    halted_error: str | None = None

    def retire(self, error: BaseException) -> None:
        """This version was retired by a switch (or its copy dropped): stop, saying so."""
        log.error("%s", error)
        self.halted_error = str(error)
        self.state = "stopped"

    def result(self, projector: str, version: int) -> RunResult:
        """How the run ended, as :meth:`ProjectionRunner.run` returns it."""
        return RunResult(
            projector,
            self.checkpoint,
            self.processed,
            halted=self.state == "halted",
            error=self.halted_error,
            passed_over=self.passed_over,
            parked=self.parked,
            version=version,
        )


class Shown(Generic[T]):
    """An attribute of a runner that is its :class:`Progress`'s (``runner.checkpoint`` is
    ``runner.progress.checkpoint``, read and written)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, runner: None, owner: type) -> Shown[T]: ...
    @overload
    def __get__(self, runner: object, owner: type) -> T: ...
    def __get__(self, runner: object | None, owner: type) -> Shown[T] | T:
        if runner is None:
            return self
        value: T = getattr(runner.progress, self.name)  # type: ignore[attr-defined]
        return value

    def __set__(self, runner: Any, value: T) -> None:
        setattr(runner.progress, self.name, value)


__all__ = [
    "DEFAULT_LEASE_TTL",
    "Progress",
    "RunResult",
    "RunnerState",
    "Shown",
    "default_owner",
]
