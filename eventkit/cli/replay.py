"""``eventkit replay``: rebuild a projector from the start, a sequence or a time."""

from __future__ import annotations

import asyncio
import time

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
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
from eventkit.projection.runner import RunResult


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
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} events/s"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            ) as progress:
                task = progress.add_task(plan.projector, total=max(plan.events, 1), rate="0")
                started = time.monotonic()

                def rate(done: int) -> str:
                    return f"{done / max(time.monotonic() - started, 1e-3):,.0f}"

                def on_progress(done: int, total: int) -> None:
                    progress.update(task, completed=done, rate=rate(done))

                result = await replay(
                    plan,
                    pr,
                    store,
                    engine,
                    on_progress=on_progress,
                    system=the_app.system_events(store),  # what `run` reads, notices included
                )
                progress.update(task, completed=max(plan.events, 1), rate=rate(result.processed))
            return result

    result = run(go())
    if result is None:
        raise typer.Exit(1)
    console.print(
        f"replayed {result.projector}: applied {result.processed} events; checkpoint "
        f"{result.checkpoint} (the last event on its subjects)"
        + (f", HALTED: {result.error}" if result.halted else ""),
        highlight=False,
    )
    if result.halted:
        raise typer.Exit(EXIT_HALTED)
