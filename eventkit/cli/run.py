"""``eventkit run``: run the projectors and reactors, once to the end or live.

A thin shim over :mod:`eventkit.projection` and :mod:`eventkit.reaction`, every worker under
one :class:`~eventkit.runtime.supervisor.Supervisor`: parse, call, print.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from eventkit.cli.context import (
    EXIT_HALTED,
    connected,
    console,
    err_console,
    fail_on,
    readable,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.cli.reactors import reacted_json, reacted_table
from eventkit.errors import ConfigError
from eventkit.observability.setup import start_observing
from eventkit.projection.runner import DEFAULT_LEASE_TTL, ProjectionRunner, RunResult
from eventkit.reaction.runner import ReactorRunner
from eventkit.runtime.supervisor import Supervisor


def _runner_table(runners: list[ProjectionRunner], lags: dict[str, int]) -> Table:
    """The live table; ``lags`` holds the counted lag of halted runners (the runner's own
    figure stops at the batch it halted in)."""
    table = Table("projector", "state", "checkpoint", "lag (events)", "applied", "owner")
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
        DEFAULT_LEASE_TTL,
        "--lease-ttl",
        min=0.5,
        help="Seconds a dead worker blocks a standby (or keeps its partitions).",
    ),
    owner: str = typer.Option(None, "--owner", help="Lease owner id (default host:pid:random)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    metrics_port: int = typer.Option(
        None, "--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port."
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1",
        "--metrics-host",
        help="Address the metrics endpoint listens on (0.0.0.0: every interface, e.g. in a "
        "container that Prometheus scrapes from outside).",
    ),
    log_format: str = typer.Option(
        "text", "--log-format", help="Log lines (one per state change) as text or json."
    ),
) -> None:
    """Run projector and reactor workers: catch up, then go on live (Ctrl-C / SIGTERM stops
    cleanly; reactors finish their in-flight handlers first).

    One worker per projector applies at a time; start several for failover. Every worker of a
    reactor shares its consumer (competing consumers). --once returns when the projectors reached
    the stream's end and the reactors have nothing pending or unacknowledged.

    --metrics-port serves /metrics in the Prometheus text format (extra 'metrics');
    --log-format json writes one JSON object per log line.

    Example: eventkit --app samples.bank.app:app run balances --once
    """
    st = state(ctx)
    try:  # before connecting: a bad option or a busy port starts nothing
        observing = start_observing(log_format, metrics_port, metrics_host)
    except ConfigError as e:
        fail_on(e)

    async def go() -> list[RunResult]:
        the_app = st.app()
        names = projectors or []
        chosen, reactors = the_app.select_workers(names)  # unknown names fail before connecting
        async with connected(st, the_app) as (store, engine):
            system = the_app.system_events(store) if hasattr(the_app, "system_events") else None
            runners: list[ProjectionRunner] = []
            if not names or chosen:
                for pr in the_app.select([p.name for p in chosen] if names else []):
                    runners.append(
                        ProjectionRunner(
                            pr, store, engine, lease_ttl=lease_ttl, owner=owner, system=system
                        )
                    )
            workers = [ReactorRunner(r, store, lease_ttl=lease_ttl) for r in reactors]
            supervisor = Supervisor([*runners, *workers], once=once)
            supervisor.install_signals()
            work = asyncio.ensure_future(supervisor.run())
            if not (as_json or not console.is_terminal):
                lags: dict[str, int] = {}
                table = _runner_table(runners, lags)
                with Live(table, console=console, refresh_per_second=2) as live:
                    while not work.done():
                        await asyncio.wait([work], timeout=0.5)
                        await _count_halted_lags(runners, store, lags)
                        live.update(_runner_table(runners, lags))
            outcomes = await work
            done: list[RunResult] = []
            for o in outcomes:
                if o.kind == "reactor":
                    reactor_results.append((o.worker, o.result or o.worker.stats))
                    if o.error is not None:
                        stopped.append(f"reactor {o.name}: {o.error}")
                elif o.result is not None:
                    done.append(o.result)
                else:
                    r = o.worker
                    done.append(
                        RunResult(r.name, r.checkpoint, r.processed, halted=True, error=o.error)
                    )
            return done

    reactor_results: list[tuple[Any, Any]] = []
    stopped: list[str] = []
    try:
        results = run(go())
    finally:
        observing.close()
    if as_json:
        typer.echo(
            json.dumps(
                [_res(r) for r in results]
                + [reacted_json(w.name, stats) for w, stats in reactor_results],
                indent=2,
            )
        )
    else:
        table = Table(
            "projector", "checkpoint", "applied", "passed over", "parked", "halted", "error"
        )
        for r in results:
            table.add_row(
                r.projector,
                str(r.checkpoint),
                str(r.processed),
                str(r.passed_over),
                str(r.parked),
                "yes" if r.halted else "no",
                Text(r.error or ""),
            )
        console.print(readable(table))
        if reactor_results:
            console.print(readable(reacted_table(reactor_results)))
    for line in stopped:
        err_console.print(f"[red]stopped[/] {line}", highlight=False)
    if any(r.halted for r in results) or stopped:
        raise typer.Exit(EXIT_HALTED)


def _res(r: RunResult) -> dict[str, Any]:
    return {
        "name": r.projector,
        "kind": "projector",
        "projector": r.projector,
        "checkpoint": r.checkpoint,
        "applied": r.processed,
        "passed_over": r.passed_over,
        "parked": r.parked,
        "halted": r.halted,
        "error": r.error,
    }
