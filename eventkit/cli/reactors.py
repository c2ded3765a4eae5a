"""``eventkit reactor reset`` and the reactor parts of ``run``, ``status`` and ``dlq``."""

from __future__ import annotations

import asyncio
from typing import Any

import typer
from rich.table import Table

from eventkit.cli.context import connected, console, err_console, readable, run, state
from eventkit.cli.main import app

reactor_app = typer.Typer(
    help="Reactors' durable consumers.\n\nExample: eventkit reactor reset large-withdrawals",
    no_args_is_help=True,
)
app.add_typer(reactor_app, name="reactor")


def reacted_json(name: str, stats: Any) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "reactor",
        "handled": stats.handled,
        "failed": stats.failed,
        "parked": stats.parked,
        "passed_over": stats.passed_over,
    }


def reacted_table(results: list[tuple[Any, Any]]) -> Table:
    table = Table("reactor", "handled", "failed attempts", "parked", "passed over")
    for w, s in results:
        table.add_row(w.name, str(s.handled), str(s.failed), str(s.parked), str(s.passed_over))
    return table


def status_table(rows: list[Any]) -> Table:
    table = Table("reactor", "state", "pending", "in flight", "redelivered", "parked", "workers")
    for r in rows:
        table.add_row(
            r.name,
            r.state,
            str(r.pending),
            str(r.in_flight),
            str(r.redelivered),
            str(r.parked),
            str(r.workers),
        )
    return readable(table)


def partitions_table(r: Any) -> Table:
    """One partitioned reactor's partitions: owner, pending (not yet read), in flight."""
    table = Table("partition", "owner", "pending", "in flight", title=f"{r.name}: partitions")
    for p in r.partitions:
        table.add_row(
            str(p["partition"]), p["owner"] or "-", str(p["pending"]), str(p["in_flight"])
        )
    return readable(table)


@reactor_app.command("reset")
def reset_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The reactor whose consumer to recreate."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(
        False, "--force", help="Reset even while workers run it (they set the consumer up again)."
    ),
) -> None:
    """Delete a reactor's consumer (a partitioned reactor's: every partition's) so its next
    start creates it from the current options.

    Needed after changing options JetStream cannot change in place (deliver_policy, the start,
    subjects, ack_policy, replay_policy, ordered, partitions). Delivery then starts again by the
    deliver_policy (e.g. 'all' delivers every event again: outputs within the duplicate window
    are not stored twice, side effects happen again). Parked events stay parked.

    Refused while a worker of the reactor heartbeats (stop them first); with --force, running
    workers set the consumer up again from the current options and go on.

    Example: eventkit --app samples.bank.app:app reactor reset large-withdrawals --yes
    """
    from eventkit.errors import ConfigError
    from eventkit.reaction.consumer import reset_consumer
    from eventkit.reaction.reactor import Reactor
    from eventkit.runtime.presence import workers

    st = state(ctx)

    async def go() -> bool | None:
        the_app = st.app()
        reactor: Reactor = the_app.reactor(name)
        if not yes:
            console.print(
                f"reset {name!r}: its next start delivers by deliver_policy = "
                f"{reactor.deliver_policy!r}",
                highlight=False,
            )
            if not await asyncio.to_thread(typer.confirm, "Go ahead?"):
                err_console.print("nothing changed")
                return None
        async with connected(st, the_app) as (store, _engine):
            running = (await workers(store, [name]))[name]
            if running and not force:
                who = ", ".join(f"{w.get('host')}:{w.get('pid')}" for w in running)
                raise ConfigError(
                    f"reactor {name!r} is running ({len(running)} worker(s): {who}); stop them "
                    f"first, or reset with --force (they then set the consumer up again)"
                )
            return await reset_consumer(name, store)

    done = run(go())
    if done is None:
        raise typer.Exit(1)
    console.print(f"reset {name}" if done else f"{name} had no consumer yet", highlight=False)
