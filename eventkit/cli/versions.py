"""``eventkit switch`` and ``eventkit versions``: blue/green builds of row projectors.

Thin shims over :func:`eventkit.projection.bluegreen.switch` and
:mod:`eventkit.projection.copies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import typer
from rich.table import Table

from eventkit.cli.context import connected, console, err_console, readable, run, state
from eventkit.cli.main import app
from eventkit.projection.bluegreen import SWITCH_TIMEOUT, switch
from eventkit.projection.copies import drop_version, versions_of
from eventkit.projection.sql import read_transaction
from eventkit.runtime.pulling import consumer_name

versions_app = typer.Typer(
    help=(
        "Every version of a projector eventkit knows (live, building, retired) and the table "
        "it writes; drop one that is not live.\n\nExample: eventkit versions list"
    ),
    no_args_is_help=True,
)
app.add_typer(versions_app, name="versions")


@app.command("switch")
def switch_command(
    ctx: typer.Context,
    projector: str = typer.Argument(..., help="The projector whose new version should go live."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    timeout: float = typer.Option(
        SWITCH_TIMEOUT,
        "--timeout",
        min=1.0,
        help="Seconds the new version may take to reach the old one's checkpoint.",
    ),
) -> None:
    """Switch readers to the newer version of a projector built beside the live one.

    Raise the projector's `version` and run it (it builds into a copy of its table while the old
    version keeps serving). The switch works under steady writes: it holds the old version at
    its checkpoint (its workers stand by), lets the new one reach that sequence (its workers, or
    a catch-up run here when none runs), then renames the copy over the table in one
    transaction; the old version's workers stop, its table is dropped. Run it again to finish a
    switch that was interrupted.

    Example: eventkit --app samples.bank.app:app switch balances --yes
    """
    st = state(ctx)

    async def go() -> str | None:
        the_app = st.app()
        pr = the_app.projector(projector)
        if not yes and not await asyncio.to_thread(
            typer.confirm, f"Switch {projector!r} to version {pr.version} and drop the old one?"
        ):
            return None
        async with connected(st, the_app) as (store, engine):
            return await switch(
                pr, store, engine, timeout=timeout, system=the_app.system_events(store)
            )

    done = run(go())
    if done is None:
        err_console.print("nothing changed")
        raise typer.Exit(1)
    console.print(f"switched {done}", highlight=False, markup=False)


@versions_app.command("list")
def versions_list(
    ctx: typer.Context,
    projectors: list[str] = typer.Argument(None, help="Projector names (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List every version of the projectors eventkit recorded: role (live, building, retired),
    checkpoint name and the table eventkit writes for it.

    Example: eventkit --app samples.bank.app:app versions list balances
    """
    st = state(ctx)

    async def go() -> list[dict[str, object]]:
        the_app = st.app()
        names = [p.name for p in the_app.select(list(projectors or []))]
        async with connected(st, the_app) as (_store, engine):
            found = versions_of(engine, names)
            from eventkit.projection import checkpoints as cps
            from eventkit.projection import partition_rows as pr

            with read_transaction(engine) as db:  # a partitioned one's: its slowest partition
                at = {
                    c.slot: pr.low_watermark(db, c.slot)
                    or cps.get_checkpoint(db, c.slot).last_sequence
                    for c in found
                }
        return [
            {
                "projector": c.projector,
                "version": c.version,
                "role": c.role,
                "checkpoint_name": c.slot,
                "checkpoint": at[c.slot],
                "table": c.table_name,
            }
            for c in found
        ]

    rows = run(go())
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("projector", "version", "role", "checkpoint", "table")
    for r in rows:
        table.add_row(
            str(r["projector"]),
            str(r["version"]),
            str(r["role"]),
            f"{r['checkpoint']} ({r['checkpoint_name']})",
            str(r["table"] or "(its own SQL)"),
        )
    console.print(readable(table))


@versions_app.command("drop")
def versions_drop(
    ctx: typer.Context,
    projector: str = typer.Argument(..., help="The projector."),
    version: int = typer.Argument(..., min=1, help="The version to drop (not the live one)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Drop a version that is not live: an abandoned build or a retired table left by an
    interrupted switch. Its table, checkpoint, dead letters and consumer go; refused while a
    worker runs it.

    Example: eventkit --app samples.bank.app:app versions drop balances 3 --yes
    """
    st = state(ctx)

    async def go() -> str | None:
        the_app = st.app()
        pr = the_app.projector(projector)
        if not yes and not await asyncio.to_thread(
            typer.confirm, f"Drop version {version} of {projector!r} and its table?"
        ):
            return None
        async with connected(st, the_app) as (store, engine):
            done = await asyncio.to_thread(drop_version, engine, pr.name, version)
            slot = pr.name if version == 1 else f"{pr.name}_v{version}"
            with contextlib.suppress(Exception):  # the consumer is transport; SQL is the truth
                await store.js.delete_consumer(store.stream, consumer_name(slot))
            return done

    done = run(go())
    if done is None:
        err_console.print("nothing changed")
        raise typer.Exit(1)
    console.print(done, highlight=False, markup=False)
