"""``eventkit skip``: move a halted projector past its poison event (a dead letter records it)."""

from __future__ import annotations

import typer

from eventkit.cli.context import connected, console, run, state
from eventkit.cli.main import app
from eventkit.projection.skip import SkipResult, skip


@app.command("skip")
def skip_command(
    ctx: typer.Context,
    projector: str = typer.Argument(..., help="The halted projector."),
    seq: int = typer.Option(..., "--seq", min=1, help="The sequence it halted at (see status)."),
) -> None:
    """Move a halted projector past the event it halted at: the event is recorded as a dead
    letter (naming the skip and the error; dlq retry can apply it later) and the projector's
    next run goes on after it. It acts on the version of the projector this code runs (the
    live one after a blue/green switch).

    Example: eventkit --app samples.bank.app:app skip balances --seq 42
    """
    st = state(ctx)

    async def go() -> SkipResult:
        the_app = st.app()
        pr = the_app.projector(projector)
        async with connected(st, the_app) as (store, engine):
            return await skip(pr, store, engine, seq)

    r = run(go())
    who = r.projector if r.version == 1 else f"{r.projector} (version {r.version})"
    console.print(
        f"skipped sequence {r.sequence} ({r.event_type} on {r.subject}) for {who}: "
        f"recorded as a dead letter (eventkit dlq list {r.projector}); the next "
        f"`eventkit run` goes on after it",
        highlight=False,
        markup=False,
    )
