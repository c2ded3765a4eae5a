"""What every CLI command shares: the loaded app, settings, error printing and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from eventkit.errors import ConfigError, EventkitError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from eventkit.app import App
    from eventkit.store.jetstream import JetStreamEventStore

T = TypeVar("T")

PIPE_WIDTH = 10_000
"""The width of output that is not a terminal (a pipe, a CI log, ``kubectl logs``) when
``COLUMNS`` does not say: wide enough that no table is cut or wrapped."""


def _console(*, stderr: bool = False) -> Console:
    """A console at the terminal's width, or unbounded when the output is not a terminal
    (Rich would use 80 columns: ``status | grep halted`` would find ``halt…``)."""
    made = Console(stderr=stderr)
    if made.is_terminal or os.environ.get("COLUMNS"):
        return made
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = _console()
err_console = _console(stderr=True)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_HALTED = 4


@dataclass
class CliState:
    app_target: str | None
    nats_url: str | None
    database_url: str | None

    def settings(self) -> Any:
        from eventkit.config import Settings

        overrides: dict[str, Any] = {}
        if self.nats_url:
            overrides["nats_urls"] = tuple(u.strip() for u in self.nats_url.split(",") if u.strip())
        if self.database_url:
            overrides["database_url"] = self.database_url
        return Settings.from_env(**overrides)

    def app(self) -> Any:
        from eventkit.app import load_app

        target = self.app_target
        if not target:
            raise ConfigError(
                "no app given: pass --app module:attribute (e.g. --app samples.bank.app:app) "
                "or set EVENTKIT_APP"
            )
        # like uvicorn and flask: a module in the current directory is importable
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        return load_app(target)


@contextlib.asynccontextmanager
async def connected(
    st: CliState, the_app: App
) -> AsyncIterator[tuple[JetStreamEventStore, Engine]]:
    """The app's store and the read-model database of the settings, both closed afterwards.

    The database is checked first: a missing SQLite file or missing eventkit tables fail before
    anything is started or written (no embedded server, no development master key). An app with
    reactors only needs no database."""

    settings = st.settings()
    if the_app.projectors:
        engine = readonly_engine(st)
    else:  # reactors only: no SQL is read or written, so none is required
        from eventkit.projection.sql import make_engine

        engine = make_engine(settings.resolved_database_url, create_folder=False)
    try:
        if the_app.projectors:
            require_schema(engine)
        store = await the_app.connect(settings)
        try:
            yield store, engine
        finally:
            await store.close()
    finally:
        engine.dispose()


def readonly_engine(st: CliState) -> Engine:
    """The settings' database, which must exist already (a mistyped SQLite path creates nothing)."""
    from eventkit.projection.sql import make_engine

    return make_engine(st.settings().resolved_database_url, must_exist=True)


def require_schema(engine: Engine) -> None:
    from eventkit.projection.sql import current_revision

    if current_revision(engine) is None:
        raise ConfigError(
            "eventkit's tables are missing in this database; run `eventkit db upgrade` first"
        )


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliState)
    return obj


def readable(table: Table) -> Table:
    """Keep headers whole on a narrow terminal: columns wrap their cells, not their names (the
    last column, usually free text, takes what is left)."""
    for column in table.columns[:-1]:
        header = str(column.header)
        column.min_width = max(column.min_width or 0, max(map(len, header.split()), default=0))
    return table


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def fail_on(error: Exception) -> NoReturn:
    """Print an error a user can act on, with its exit code: 2 for bad input or configuration
    (eventkit's ``ValueError`` errors), 1 for the rest (a store or database that failed)."""
    if isinstance(error, EventkitError):
        fail(str(error), EXIT_USAGE if isinstance(error, ValueError) else EXIT_ERROR)
    if isinstance(error, DBAPIError):
        fail(
            f"the read-model database failed: {error.orig}; check EVENTKIT_DATABASE_URL and that "
            f"the database is up"
        )
    fail(f"{type(error).__name__}: {error}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn eventkit, database and OS errors into a clear message and an exit
    code (see :func:`fail_on`)."""
    try:
        return asyncio.run(coro)
    except (EventkitError, DBAPIError, OSError) as e:
        fail_on(e)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
