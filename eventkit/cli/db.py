"""``eventkit db``: eventkit's own tables and the App's own Alembic tree (its read models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from eventkit.cli.context import console, run, state
from eventkit.cli.main import app
from eventkit.errors import ConfigError
from eventkit.projection.sql import current_revision, make_engine, upgrade

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from eventkit.app import App

db_app = typer.Typer(
    help="The SQL database of checkpoints and read models.\n\nExample: eventkit db upgrade",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


def _say(text: str) -> None:
    console.print(text, highlight=False, markup=False)


@db_app.command("upgrade")
def upgrade_command(ctx: typer.Context) -> None:
    """Create or upgrade eventkit's tables, then the app's own migrations (App.migrations).

    Uses EVENTKIT_DATABASE_URL (default: SQLite in .eventkit/eventkit.db). A SQLite file in a
    folder that does not exist is refused (nothing is created), except the default home.

    Example: eventkit --app samples.bank.app:app db upgrade
    """
    st = state(ctx)

    async def go() -> tuple[str | None, str | None]:
        the_app = st.app() if st.app_target else None
        settings = st.settings()
        engine = make_engine(
            settings.resolved_database_url, create_folder=settings.database_url is None
        )
        try:
            upgrade(engine, app_migrations=the_app.migrations if the_app else None)
            return current_revision(engine), _app_revision(the_app, engine)
        finally:
            engine.dispose()

    revision, app_revision = run(go())
    _say(f"eventkit tables at revision {revision}")
    if app_revision is not None:
        _say(f"app tables at revision {app_revision}")


def _app_revision(the_app: App | None, engine: Engine) -> str | None:
    from eventkit.app_migrations import current_app_revision

    if the_app is None or not the_app.migrations:
        return None
    return current_app_revision(the_app, engine) or "none"


@db_app.command("current")
def current_command(ctx: typer.Context) -> None:
    """Show the revision of eventkit's tables and of the App's tree (none before the first
    upgrade). Creates nothing.

    Example: eventkit --app samples.bank.app:app db current
    """
    st = state(ctx)

    async def go() -> tuple[str | None, str | None]:
        the_app = st.app() if st.app_target else None
        url = st.settings().resolved_database_url
        try:
            engine = make_engine(url, must_exist=True)
        except ConfigError:  # no database yet: nothing is at any revision
            return None, "none" if the_app is not None and the_app.migrations else None
        try:
            return current_revision(engine), _app_revision(the_app, engine)
        finally:
            engine.dispose()

    revision, app_revision = run(go())
    _say(f"eventkit tables at revision {revision or 'none'}")
    if app_revision is not None:
        _say(f"app tables at revision {app_revision}")


@db_app.command("init")
def init_command(ctx: typer.Context) -> None:
    """Create an Alembic tree for the App's read-model tables, with its own version table
    (<stream>_alembic_version), at App.migrations or next to the App's module.

    Example: eventkit --app myservice.app:app db init
    """
    from eventkit.app_migrations import init_tree

    st = state(ctx)

    async def go() -> tuple[Path, str]:
        the_app = st.app()
        assert st.app_target is not None
        return init_tree(the_app, st.app_target)

    folder, location = run(go())
    _say(f"created {folder} (env.py, script.py.mako, versions/)")
    _say(f'set App(..., migrations="{location}") if it is not set yet, then:')
    _say(f'  eventkit --app {st.app_target} db revision -m "first tables" --autogenerate')


def _compared_engine(url: str) -> Engine:
    """The database a new revision is compared with: the settings' one, or an empty in-memory
    SQLite database in place of a SQLite file that does not exist yet (nothing is created)."""
    from sqlalchemy.engine import make_url

    try:
        return make_engine(url, must_exist=True)
    except ConfigError:
        if make_url(url).get_backend_name() != "sqlite":
            raise
        return make_engine("sqlite://")


@db_app.command("revision")
def revision_command(
    ctx: typer.Context,
    message: str = typer.Option(..., "--message", "-m", help="What the revision does."),
    autogenerate: bool = typer.Option(
        False, "--autogenerate", help="Compare the projectors' metadata with the database."
    ),
) -> None:
    """Add a revision to the App's tree (App.migrations); --autogenerate fills it from the
    difference between the projectors' SQLAlchemy metadata and the database. Creates nothing in
    the database (a SQLite file that does not exist yet is compared as an empty database); the
    database must be at the tree's head: run `eventkit db upgrade` first when it is not.

    Example: eventkit --app myservice.app:app db revision -m "accounts table" --autogenerate
    """
    from eventkit.app_migrations import new_revision

    st = state(ctx)

    async def go() -> list[str]:
        the_app = st.app()
        engine = _compared_engine(st.settings().resolved_database_url)
        try:
            return new_revision(the_app, engine, message, autogenerate=autogenerate)
        finally:
            engine.dispose()

    for path in run(go()):
        _say(f"created {path}")
