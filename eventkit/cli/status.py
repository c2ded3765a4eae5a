"""``eventkit status``: where every projector and reactor is, and whether one halted."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from eventkit.cli.context import (
    EXIT_HALTED,
    connected,
    console,
    readable,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.cli.reactors import partitions_table as reactor_partitions
from eventkit.cli.reactors import status_table
from eventkit.cli.store import durability_line
from eventkit.projection.status import ProjectorStatus, status
from eventkit.reaction.status import reactor_status
from eventkit.store.nats.anchors import load_verification


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

    verified: list[dict[str, Any] | None] = [None]

    async def go() -> tuple[list[ProjectorStatus], list[Any], str]:
        the_app = st.app()
        async with connected(st, the_app) as (store, engine):
            verified[0] = await load_verification(store.js, store.stream)
            return (
                await status(the_app.projectors, store, engine),
                await reactor_status(the_app.reactors, store),
                durability_line(store),
            )

    rows, reactor_rows, durable = run(go())
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
    for r in rows:
        if r.partitions:
            console.print(partitions_table(r))
    if reactor_rows:
        console.print(status_table(reactor_rows))
    for rr in reactor_rows:
        if rr.partitions:
            console.print(reactor_partitions(rr))
    console.print(verification_line(verified[0]), highlight=False, markup=False)
    console.print(f"durability: {durable}", highlight=False, markup=False)
    if any(r.state == "halted" for r in rows):
        raise typer.Exit(EXIT_HALTED)


def partitions_table(r: ProjectorStatus) -> Table:
    """One partitioned projector's partitions: owner, checkpoint, lag."""
    table = Table("partition", "owner", "checkpoint", "lag", title=f"{r.name}: partitions")
    for p in r.partitions:
        table.add_row(
            str(p["partition"]), p["owner"] or "-", str(p["checkpoint"]), str(p["lag_events"])
        )
    return table


def verification_line(last: dict[str, Any] | None) -> str:
    """What ``eventkit verify --all`` found last (it records each run)."""
    if not last:
        return "history: never verified (eventkit verify --all)"
    found = "verified" if last.get("ok") else f"{last.get('problems', '?')} problem(s) found"
    return (
        f"history: {found} at {last.get('time', '?')} ({last.get('messages', '?')} messages, "
        f"up to sequence {last.get('last_sequence', '?')}); eventkit verify --all"
    )
