"""One supervisor for every worker of a process: projectors and reactors alike.

::

    supervisor = Supervisor([projection_runner, reactor_runner], once=False)
    supervisor.install_signals()              # SIGTERM / SIGINT: every worker drains and stops
    outcomes = await supervisor.run()

Each worker runs in its own task. When a worker fails:

- a transient fault (NATS or the database does not answer, an R3 consumer's leader changed,
  its consumer was deleted under it, an election at start-up: :func:`is_transient`) sets that
  worker up again after a wait of :func:`eventkit.runtime.backoff.delay` (0.25 s doubling to
  5 s; a run that lasted :data:`SETTLED` seconds starts the count again). Live, it is tried
  for ever; with ``once`` for :data:`ONCE_PATIENCE` seconds of waits;
- any other error stops that worker alone, with the error logged and in its :class:`Outcome`.

A fault of one worker never ends the process or its siblings. While a worker is supervised
(running, or waiting out a fault) its heartbeat is written (``presence``), so operators see it
and ``eventkit reactor reset`` refuses to pull a consumer from under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import nats.errors

from eventkit.errors import EventkitError, StoreUnavailableError
from eventkit.runtime.backoff import Pacing

log = logging.getLogger("eventkit.runtime")

SETTLED = 30.0
"""Seconds a worker must have run for its next fault to wait the shortest delay again."""
ONCE_PATIENCE = 60.0
"""With ``once``: seconds of waits on transient faults before a worker gives up."""


class Worker(Protocol):
    """What the supervisor runs: a projection runner, a reactor runner."""

    name: str
    kind: str

    async def run(self) -> Any: ...

    async def catch_up(self) -> Any: ...

    def stop(self) -> None: ...

    @property
    def stopping(self) -> bool: ...


class Heartbeat(Protocol):
    async def keep(self, figures: Callable[[], dict[str, int]]) -> None: ...

    async def leave(self) -> None: ...


@dataclass
class Outcome:
    """How one worker ended: its runner's result, or the error that stopped it."""

    worker: Any
    result: Any = None
    error: str | None = None
    restarts: int = 0

    @property
    def name(self) -> str:
        return str(self.worker.name)

    @property
    def kind(self) -> str:
        return str(self.worker.kind)


def is_transient(error: BaseException) -> bool:
    """Whether waiting and setting the worker up again can cure ``error``: the store or the
    database unreachable (a worker may say more with a ``transient(error)`` method)."""
    return isinstance(
        error, StoreUnavailableError | nats.errors.Error | ConnectionError | TimeoutError
    )


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


class Supervisor:
    """Runs ``workers`` side by side; see the module docstring."""

    def __init__(
        self,
        workers: list[Any],
        *,
        once: bool = False,
        presence: Callable[[Any], Heartbeat | None] | None = None,
    ) -> None:
        self.workers = list(workers)
        self.once = once
        self.presence = presence
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Every worker finishes what it holds and stops (safe from a signal handler)."""
        self._stopping.set()
        for w in self.workers:
            w.stop()

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop)

    async def run(self) -> list[Outcome]:
        return list(await asyncio.gather(*[self._keep(w) for w in self.workers]))

    def _transient(self, worker: Any, error: BaseException) -> bool:
        own = getattr(worker, "transient", None)
        if own is not None and own(error):
            return True
        return is_transient(error)

    async def _keep(self, worker: Any) -> Outcome:
        outcome = Outcome(worker)
        beat = self.presence(worker) if self.presence is not None else None
        figures = getattr(worker, "figures", None) or dict
        keeper = asyncio.ensure_future(beat.keep(figures)) if beat is not None else None
        pacing = Pacing()
        waited = 0.0
        try:
            while True:
                started = time.monotonic()
                try:
                    outcome.result = await (worker.catch_up() if self.once else worker.run())
                    return outcome
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    if not self._transient(worker, e):
                        outcome.error = _describe(e)
                        log.error(
                            "%s %s stopped: %s",
                            worker.kind,
                            worker.name,
                            outcome.error,
                            exc_info=not isinstance(e, EventkitError),
                        )
                        return outcome
                    if time.monotonic() - started >= SETTLED:
                        pacing.reset()
                    wait = pacing.next()
                    waited += wait
                    if (
                        worker.stopping
                        or self._stopping.is_set()
                        or (self.once and waited > ONCE_PATIENCE)
                    ):
                        outcome.error = _describe(e)
                        return outcome
                    outcome.restarts += 1
                    log.warning(
                        "%s %s: %s; setting it up again in %.2fs",
                        worker.kind,
                        worker.name,
                        _describe(e),
                        wait,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), wait)
                    if self._stopping.is_set():
                        return outcome
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(BaseException):
                    await keeper
            if beat is not None:
                await beat.leave()


__all__ = [
    "ONCE_PATIENCE",
    "SETTLED",
    "Heartbeat",
    "Outcome",
    "Supervisor",
    "Worker",
    "is_transient",
]
