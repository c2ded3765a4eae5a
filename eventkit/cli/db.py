"""``eventkit db``: eventkit's own tables (and the app's read-model migrations)."""

from __future__ import annotations

import typer

from eventkit.cli.context import console, run, state
from eventkit.cli.main import app
from eventkit.projection.sql import current_revision, make_engine, upgrade

db_app = typer.Typer(
    help="The SQL database of checkpoints and read models.\n\nExample: eventkit db upgrade",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Create or upgrade eventkit's tables, then the app's own migrations (App.migrations).

    Uses EVENTKIT_DATABASE_URL (default: SQLite in .eventkit/eventkit.db).

    Example: eventkit --app samples.bank.app:app db upgrade
    """
    st = state(ctx)

    async def go() -> str | None:
        migrations = st.app().migrations if st.app_target else None
        engine = make_engine(st.settings().resolved_database_url)
        try:
            upgrade(engine, app_migrations=migrations)
            return current_revision(engine)
        finally:
            engine.dispose()

    revision = run(go())
    console.print(f"eventkit tables at revision {revision}", highlight=False)


@db_app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Show the revision of eventkit's tables (none before the first upgrade).

    Example: eventkit db current
    """
    st = state(ctx)

    async def go() -> str | None:
        engine = make_engine(st.settings().resolved_database_url)
        try:
            return current_revision(engine)
        finally:
            engine.dispose()

    console.print(f"eventkit tables at revision {run(go()) or 'none'}", highlight=False)
