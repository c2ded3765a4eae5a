"""``eventkit switch``: make a blue/green build of a projector the live version.

A thin shim over :func:`eventkit.projection.bluegreen.switch`.
"""

from __future__ import annotations

import asyncio

import typer

from eventkit.cli.context import connected, console, err_console, run, state
from eventkit.cli.main import app
from eventkit.projection.bluegreen import switch


@app.command("switch")
def switch_command(
    ctx: typer.Context,
    projector: str = typer.Argument(..., help="The projector whose new version should go live."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Switch readers to the newer version of a projector built beside the live one.

    Raise the projector's `version`, run it (it builds into a copy of its table while the old
    version keeps serving), and once `eventkit status` shows it caught up, switch: the copy takes
    the table's name in one transaction, the old version's workers stop, its table is dropped.

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
            return await switch(pr, store, engine)

    done = run(go())
    if done is None:
        err_console.print("nothing changed")
        raise typer.Exit(1)
    console.print(f"switched {done}", highlight=False)
