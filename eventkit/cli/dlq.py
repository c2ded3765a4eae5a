"""``eventkit dlq list`` and ``dlq retry``: parked events of projectors and reactors, listed in
one model (:class:`eventkit.runtime.deadletters.DeadLetter`: the same fields, ``name`` and
``kind`` included, for both kinds)."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from eventkit.cli.context import (
    EXIT_USAGE,
    connected,
    console,
    fail,
    readable,
    readonly_engine,
    require_schema,
    run,
    state,
)
from eventkit.cli.main import app
from eventkit.errors import ConfigError
from eventkit.projection import letters
from eventkit.projection.deadletters import (
    as_dead_letter,
    list_dead_letters,
    retry_dead_letters,
)
from eventkit.reaction.schedule import request_retry
from eventkit.runtime.parked import ParkedLetters

dlq_app = typer.Typer(
    help=(
        "Parked events of projectors with on_error = 'park' and of reactors (after "
        "max_deliver).\n\nExample: eventkit dlq list"
    ),
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")


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

    async def go() -> tuple[list[letters.DeadLetter], list[Any]]:
        the_app = st.app()
        is_reactor = projector is not None and projector in {r.name for r in the_app.reactors}
        if projector is not None and not is_reactor:
            the_app.select_workers([projector])  # a typo lists projectors and reactors
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
    everything = [as_dead_letter(d) for d in letters] + list(parked)
    if as_json:
        typer.echo(json.dumps([x.as_dict() for x in everything], indent=2))
        return
    table = Table(
        "id", "name", "kind", "sequence", "subject", "type", "attempts", "parked at", "error"
    )
    for x in everything:
        table.add_row(
            x.id,
            x.name,
            x.kind,
            str(x.sequence),
            Text(x.subject),
            Text(x.event_type),
            str(x.attempts),
            x.parked_at.isoformat(timespec="seconds"),
            Text(x.error),
        )
    console.print(readable(table))


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
