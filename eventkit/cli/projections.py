"""``eventkit run``, ``replay``, ``status`` and ``dlq``: run and inspect the projectors.

A thin shim over :mod:`eventkit.projection`: parse, call the library, print.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import typer
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from eventkit.cli.context import (
    EXIT_HALTED,
    EXIT_USAGE,
    connected,
    console,
    err_console,
    fail,
    fail_on,
    readable,
    readonly_engine,
    require_schema,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.cli.reactors import reacted_json, reacted_table, status_table
from eventkit.errors import ConfigError
from eventkit.projection import checkpoints as cps
from eventkit.projection.bluegreen import deployed
from eventkit.projection.deadletters import list_dead_letters, retry_dead_letters
from eventkit.projection.replay import check_replay_args, parse_when, plan_replay, replay
from eventkit.projection.runner import (
    DEFAULT_LEASE_TTL,
    ProjectionRunner,
    RunResult,
    run_projectors,
)
from eventkit.projection.status import ProjectorStatus, status
from eventkit.reaction.runner import run_reactors
from eventkit.reaction.schedule import request_retry
from eventkit.reaction.status import reactor_status
from eventkit.store.parked import ParkedLetters

dlq_app = typer.Typer(
    help=(
        "Parked events of projectors with on_error = 'park' and of reactors (after "
        "max_deliver).\n\nExample: eventkit dlq list"
    ),
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")


def _runner_table(runners: list[ProjectionRunner], lags: dict[str, int]) -> Table:
    """The live table; ``lags`` holds the counted lag of halted runners (the runner's own
    figure stops at the batch it halted in)."""
    table = Table("projector", "state", "checkpoint", "lag (events)", "processed", "owner")
    for r in runners:
        lag = lags.get(r.name, r.lag) if r.state == "halted" else r.lag
        table.add_row(r.name, r.state, str(r.checkpoint), str(lag), str(r.processed), r.owner)
    return readable(table)


async def _count_halted_lags(
    runners: list[ProjectionRunner], store: Any, lags: dict[str, int]
) -> None:
    from eventkit.store.positions import pending_after

    for r in runners:
        if r.state == "halted" and r.name not in lags:
            lags[r.name] = await pending_after(store, r.filters, r.checkpoint)


@app.command("run")
def run_command(
    ctx: typer.Context,
    projectors: list[str] = typer.Argument(
        None, help="Projector and reactor names (default: all)."
    ),
    once: bool = typer.Option(
        False, "--once", help="Catch up to the stream's end as it is now, then exit."
    ),
    lease_ttl: float = typer.Option(
        DEFAULT_LEASE_TTL, "--lease-ttl", min=0.5, help="Seconds a dead worker blocks a standby."
    ),
    owner: str = typer.Option(None, "--owner", help="Lease owner id (default host:pid:random)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Run projector and reactor workers: catch up, then go on live (Ctrl-C / SIGTERM stops
    cleanly; reactors finish their in-flight handlers first).

    One worker per projector applies at a time; start several for failover. Every worker of a
    reactor shares its consumer (competing consumers). --once returns when the projectors reached
    the stream's end and the reactors have nothing pending or unacknowledged.

    Example: eventkit --app samples.bank.app:app run balances --once
    """
    st = state(ctx)

    async def go() -> list[RunResult]:
        the_app = st.app()
        names = projectors or []
        chosen, reactors = the_app.select_workers(names)  # unknown names fail before connecting
        async with connected(st, the_app) as (store, engine):
            runners: list[ProjectionRunner] = []
            workers: list[Any] = []
            loop = asyncio.get_running_loop()

            def stop_all() -> None:
                for r in [*runners, *workers]:
                    r.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    loop.add_signal_handler(sig, stop_all)

            async def projections() -> list[RunResult]:
                if names and not chosen:
                    return []
                return await run_projectors(
                    the_app,
                    store,
                    engine,
                    [pr.name for pr in chosen] if names else [],
                    once=once,
                    runners=runners,
                    lease_ttl=lease_ttl,
                    owner=owner,
                )

            work = asyncio.ensure_future(
                asyncio.gather(
                    projections(), run_reactors(reactors, store, once=once, runners=workers)
                )
            )
            if not (as_json or not console.is_terminal):
                await asyncio.sleep(0)  # run_projectors fills ``runners`` as it starts
                lags: dict[str, int] = {}
                table = _runner_table(runners, lags)
                with Live(table, console=console, refresh_per_second=2) as live:
                    while not work.done():
                        await asyncio.wait([work], timeout=0.5)
                        await _count_halted_lags(runners, store, lags)
                        live.update(_runner_table(runners, lags))
            done, reacted = await work
            reactor_results.extend(zip(workers, reacted, strict=True))
            return done

    reactor_results: list[tuple[Any, Any]] = []
    results = run(go())
    if as_json:
        typer.echo(
            json.dumps(
                [_res(r) for r in results]
                + [reacted_json(w.name, stats) for w, stats in reactor_results],
                indent=2,
            )
        )
    else:
        table = Table("projector", "checkpoint", "processed", "halted", "error")
        for r in results:
            table.add_row(
                r.projector,
                str(r.checkpoint),
                str(r.processed),
                "yes" if r.halted else "no",
                Text(r.error or ""),
            )
        console.print(readable(table))
        if reactor_results:
            console.print(readable(reacted_table(reactor_results)))
    if any(r.halted for r in results):
        raise typer.Exit(EXIT_HALTED)


def _res(r: RunResult) -> dict[str, Any]:
    return {
        "projector": r.projector,
        "checkpoint": r.checkpoint,
        "processed": r.processed,
        "halted": r.halted,
        "error": r.error,
    }


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

                result = await replay(plan, pr, store, engine, on_progress=on_progress)
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


@app.command("status")
def status_command(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per projector: checkpoint, stream end, lag (events, seconds), state, last error.

    State: running (a runner holds the lease), stopped, halted or new. Exit code 0, or 4 when a
    projector is halted.

    Example: eventkit --app samples.bank.app:app status --json
    """
    st = state(ctx)

    async def go() -> tuple[list[ProjectorStatus], list[Any]]:
        the_app = st.app()
        async with connected(st, the_app) as (store, engine):
            return (
                await status(the_app.projectors, store, engine),
                await reactor_status(the_app.reactors, store),
            )

    rows, reactor_rows = run(go())
    if as_json:
        typer.echo(
            json.dumps([r.as_dict() for r in rows] + [r.as_dict() for r in reactor_rows], indent=2)
        )
        if any(r.state == "halted" for r in rows):
            raise typer.Exit(EXIT_HALTED)
        return
    table = Table(
        "projector",
        "version",
        "checkpoint",
        "stream end",
        "lag",
        "lag (s)",
        "state",
        "parked",
        "passed over",
        "runner",
        "last error",
    )
    for r in rows:
        state_text = f"[red]{r.state}[/]" if r.state == "halted" else r.state
        table.add_row(
            r.name,
            f"v{r.version}" + (" (building)" if r.role == "building" else ""),
            str(r.checkpoint),
            str(r.stream_last_sequence),
            str(r.lag_events),
            f"{r.lag_seconds:.1f}",
            state_text,
            str(r.parked),
            ", ".join(f"{k} {v}" for k, v in sorted(r.passed_over.items())) or "-",
            r.owner or "-",
            Text(r.last_error or ""),
        )
    if rows or not reactor_rows:
        console.print(readable(table))
    if reactor_rows:
        console.print(status_table(reactor_rows))
    if any(r.state == "halted" for r in rows):
        raise typer.Exit(EXIT_HALTED)


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    projector: str = typer.Argument(None, help="Only this projector's parked events."),
    include_resolved: bool = typer.Option(False, "--resolved", help="Include resolved ones."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List parked events (oldest first).

    Example: eventkit --app samples.bank.app:app dlq list balances --json
    """
    st = state(ctx)

    async def go() -> tuple[list[cps.DeadLetter], list[Any]]:
        the_app = st.app()
        is_reactor = projector is not None and projector in {r.name for r in the_app.reactors}
        if projector is not None and not is_reactor:
            the_app.projector(projector)
        parked: list[Any] = []
        if the_app.reactors and (projector is None or is_reactor):
            async with connected(st, the_app) as (store, _engine):
                parked = await ParkedLetters(store).list(projector)
        if is_reactor or (not the_app.projectors and the_app.reactors):
            return [], parked
        engine = readonly_engine(st)
        try:
            require_schema(engine)
            return list_dead_letters(engine, projector, include_resolved=include_resolved), parked
        finally:
            engine.dispose()

    letters, parked = run(go())
    if as_json:
        typer.echo(
            json.dumps([_letter(d) for d in letters] + [x.as_dict() for x in parked], indent=2)
        )
        return
    table = Table(
        "id", "projector", "sequence", "subject", "type", "attempts", "parked at", "error"
    )
    for d in letters:
        table.add_row(
            str(d.id),
            d.projector,
            str(d.sequence),
            Text(d.subject),
            Text(d.event_type),
            str(d.attempts),
            d.parked_at.isoformat(timespec="seconds"),
            Text(d.error),
        )
    for x in parked:
        table.add_row(
            x.id,
            x.name,
            str(x.sequence),
            Text(x.subject),
            Text(x.event_type),
            str(x.attempts),
            x.parked_at.isoformat(timespec="seconds"),
            Text(x.error),
        )
    console.print(readable(table))


def _letter(d: cps.DeadLetter) -> dict[str, Any]:
    return {
        "id": d.id,
        "projector": d.projector,
        "sequence": d.sequence,
        "subject": d.subject,
        "event_type": d.event_type,
        "error": d.error,
        "attempts": d.attempts,
        "parked_at": d.parked_at.isoformat(),
        "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None,
    }


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    letter_id: str = typer.Argument(
        None, help="The dead letter's id (see dlq list): a number, or REACTOR:SEQUENCE."
    ),
    all_open: bool = typer.Option(False, "--all", help="Retry every parked event, in order."),
) -> None:
    """Re-apply parked events; each success is marked resolved.

    A reactor's letter (REACTOR:SEQUENCE) is handed back to the reactor's workers, which run its
    handler on the original event (same derived ids) and remove the letter when it succeeds.

    Example: eventkit --app samples.bank.app:app dlq retry --all
    """
    st = state(ctx)
    if (letter_id is None) == (not all_open):
        fail("give a dead letter ID or --all", EXIT_USAGE)

    projector_letter: int | None = None
    reactor_letter: tuple[str, int] | None = None
    if letter_id is not None:
        name, sep, seq = letter_id.rpartition(":")
        if sep and seq.isdigit() and name:
            reactor_letter = (name, int(seq))
        elif letter_id.isdigit():
            projector_letter = int(letter_id)
        else:
            fail(f"dead letter id {letter_id!r}: give a number or REACTOR:SEQUENCE", EXIT_USAGE)

    handed: list[Any] = []

    async def go() -> list[Any]:
        the_app = st.app()
        if reactor_letter is not None:
            the_app.reactor(reactor_letter[0])
        async with connected(st, the_app) as (store, engine):
            letters = ParkedLetters(store)
            wanted = []
            if reactor_letter is not None:
                found = await letters.get(*reactor_letter)
                if found is None:
                    raise ConfigError(f"no parked event {letter_id} (see: eventkit dlq list)")
                wanted = [found]
            elif all_open and the_app.reactors:
                wanted = await letters.list()
            handed.extend(wanted)
            for x in wanted:
                await request_retry(store, x.name, x.sequence)
                console.print(
                    f"[green]handed back[/] {x.id} to reactor {x.name} (its workers retry it)"
                )
            if reactor_letter is not None or not the_app.projectors:
                return [None]
            return await retry_dead_letters(
                the_app.projectors, store, engine, letter_id=projector_letter, all_open=all_open
            )

    outcomes = [o for o in run(go()) if o is not None]
    if reactor_letter is not None:
        return
    failed = 0
    for o in outcomes:
        if o.ok:
            console.print(
                f"[green]resolved[/] {o.letter.id} ({o.letter.projector} seq {o.letter.sequence})"
            )
        else:
            failed += 1
            console.print(
                f"[red]still parked[/] {o.letter.id} ({o.letter.projector} seq "
                f"{o.letter.sequence}): {o.error}"
            )
    if not outcomes and not handed:
        console.print("no parked events")
    if failed:
        raise typer.Exit(1)
