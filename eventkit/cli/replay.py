"""``eventkit replay``: rebuild a projector from the start, a sequence or a time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from eventkit.cli.context import (
    EXIT_HALTED,
    connected,
    console,
    err_console,
    fail_on,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.errors import ConfigError
from eventkit.projection.bluegreen import deployed
from eventkit.projection.replay import check_replay_args, parse_when, plan_replay, replay
from eventkit.projection.runner import ProjectionRunner, RunResult


@app.command("replay")
def replay_command(
    ctx: typer.Context,
    projector: str = typer.Argument(..., help="The projector to replay."),
    from_start: bool = typer.Option(False, "--from-start", help="Reset it and apply every event."),
    from_seq: int = typer.Option(None, "--from-seq", help="Replay from this stream sequence."),
    from_time: str = typer.Option(
        None, "--from-time", help="ISO 8601 with a zone, or relative: 90s, 15m, 2h, 3d."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Replay a projector, then exit once it has caught up.

    From the start it calls the projector's reset(db); from a sequence or a time it needs the
    projector to be idempotent or to implement rewind(to_sequence, db).

    Examples (balances adds amounts, so it replays only from the start; ledger is idempotent):

      eventkit --app samples.bank.app:app replay balances --from-start --yes

      eventkit --app samples.bank.app:app replay ledger --from-time 2h --yes
    """
    st = state(ctx)
    try:  # checked before connecting: bad input starts nothing and changes nothing
        when = parse_when(from_time) if from_time is not None else None
        check_replay_args(from_start, from_seq, when)
    except ConfigError as e:
        fail_on(e)

    stop = _Stop()

    async def go() -> RunResult | None:
        the_app = st.app()
        pr = the_app.projector(projector)
        async with connected(st, the_app) as (store, engine):
            pr = deployed(pr, engine)  # a blue/green build replays its own version
            plan = await plan_replay(
                pr, store, engine, from_start=from_start, from_sequence=from_seq, from_time=when
            )
            console.print(plan.describe(), highlight=False)
            if not yes and not await asyncio.to_thread(typer.confirm, "Go ahead?"):
                err_console.print("nothing changed")
                return None
            stop.install(asyncio.get_running_loop())
            bar = _Bar(plan.projector, plan.events)
            try:
                result = await replay(
                    plan,
                    pr,
                    store,
                    engine,
                    on_progress=bar.update,
                    runners=stop.runners,
                    system=the_app.system_events(store),  # what `run` reads, notices included
                )
            finally:
                bar.close()
            return result

    result = run(go())
    if result is None:
        raise typer.Exit(1)
    parts = [f"applied {result.processed} events"]
    if result.passed_over:
        parts.append(
            f"passed over {result.passed_over} messages (types it does not handle, eventkit's "
            f"own messages)"
        )
    if result.parked:
        parts.append(f"parked {result.parked} (eventkit dlq list {result.projector})")
    if stop.signal is not None:
        console.print(
            f"replay of {result.projector} stopped by {stop.signal} at sequence "
            f"{result.checkpoint} ({'; '.join(parts)}); the lease is released. The reset or "
            f"rewind is done: carry on from the checkpoint with `eventkit run "
            f"{result.projector} --once` (or start the workers), not with another replay",
            highlight=False,
        )
        raise typer.Exit(130 if stop.signal == "SIGINT" else 143)
    console.print(
        f"replayed {result.projector}: {'; '.join(parts)}; checkpoint "
        f"{result.checkpoint} (the last event on its subjects)"
        + (f", HALTED: {result.error}" if result.halted else ""),
        highlight=False,
    )
    if result.halted:
        raise typer.Exit(EXIT_HALTED)


class _Stop:
    """Ctrl-C or SIGTERM: stop the replay after the batch in flight (its runner releases the
    lease), however many times it is pressed."""

    def __init__(self) -> None:
        self.runners: list[ProjectionRunner] = []
        self.signal: str | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.stop, sig.name)

    def stop(self, name: str) -> None:
        if self.signal is None:
            err_console.print(f"{name}: stopping after the batch in flight")
        self.signal = self.signal or name
        for runner in self.runners:
            runner.stop()
        if not self.runners:  # the reset is still committing: stop as the runner starts
            asyncio.get_running_loop().call_later(0.1, self.stop, name)


class _Bar:
    """The replay's progress bar, drawn from the first batch on (a refused replay draws none)."""

    def __init__(self, name: str, total: int) -> None:
        self.name = name
        self.total = max(total, 1)
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.done = 0

    def _rate(self) -> str:
        return f"{self.done / max(time.monotonic() - self.started, 1e-3):,.0f}"

    def update(self, done: int, _total: int) -> None:
        self.done = done
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} messages/s"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.name, total=self.total, rate="0")
        assert self.task is not None
        self.progress.update(self.task, completed=min(done, self.total), rate=self._rate())

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
