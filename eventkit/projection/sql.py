"""SQL engines, transactions and the schema upgrade of eventkit's own tables.

::

    engine = make_engine("sqlite:///.eventkit/eventkit.db")
    upgrade(engine)                                  # eventkit's tables (own version table)
    with transaction(engine) as db:                  # one Session, committed on exit
        projector.forget("bank.customer.c-1", db)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from eventkit.bundled import migrations_folder
from eventkit.errors import ConfigError
from eventkit.projection.dialect import SQLITE, dialect_of

VERSION_TABLE = "eventkit_alembic_version"
"""Alembic version table of eventkit's own migrations (never the user's ``alembic_version``)."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
READONLY_OPTION = "eventkit_readonly"


def is_sqlite(engine: Engine) -> bool:
    return dialect_of(engine) is SQLITE


def make_engine(
    url: str, *, must_exist: bool = False, create_folder: bool = True, **options: Any
) -> Engine:
    """An engine for read models and checkpoints.

    SQLite gets WAL, ``synchronous=NORMAL`` (safe against process crashes), a busy timeout and
    ``BEGIN IMMEDIATE`` transactions (writers queue instead of failing on a lock upgrade).
    PostgreSQL: ``postgresql+psycopg://user@host/db`` (``pip install 'eventkit[postgres]'``).

    A SQLite file is created on first use, and its folder too unless ``create_folder=False``
    (then a missing folder is a ``ConfigError``). ``must_exist=True`` refuses a SQLite file that
    does not exist yet (for commands that only read: a mistyped path creates nothing).

    Example::

        engine = make_engine("sqlite:///app.db")
    """
    try:
        parsed = make_url(url)
    except Exception as e:
        raise ConfigError(
            f"{url!r} is not a database URL ({e}); write e.g. sqlite:///path/to/file.db or "
            f"postgresql+psycopg://user:pass@host/db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser()
            folder = path.parent
            if must_exist and not path.is_file():
                raise ConfigError(
                    f"no SQLite database at {path}: check EVENTKIT_DATABASE_URL (or "
                    f"--database-url), or create it with `eventkit db upgrade`"
                )
            if not create_folder and not folder.is_dir():
                raise ConfigError(
                    f"the folder {folder} of the SQLite database {path} does not exist: create "
                    f"it first or fix EVENTKIT_DATABASE_URL (nothing was created)"
                )
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(
                    f"the SQLite database {database} cannot be created in {folder} ({e.strerror}); "
                    f"set EVENTKIT_DATABASE_URL (or EVENTKIT_HOME) to a writable place"
                ) from e
        connect_args = dict(options.pop("connect_args", {}))
        connect_args.setdefault("check_same_thread", False)
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        engine = create_engine(url, connect_args=connect_args, **options)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        # postgres:// (Heroku, libpq, docker images) and a bare postgresql:// mean PostgreSQL on
        # psycopg 3, the driver of the extra (SQLAlchemy alone knows neither the first name nor
        # that driver as the default)
        driver = parsed.drivername.partition("+")[2] or "psycopg"
        parsed = parsed.set(drivername=f"postgresql+{driver}")
        url = parsed.render_as_string(hide_password=False)
        backend = "postgresql"
    if backend != "postgresql":
        raise ConfigError(
            f"{backend}:// databases are not supported: eventkit's read models run on SQLite "
            f"(sqlite:///path/to/file.db) or PostgreSQL (postgresql+psycopg://user:pass@host/db)"
        )
    options.setdefault("pool_pre_ping", True)
    try:
        return create_engine(url, **options)
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"the driver for {parsed.drivername} is not installed ({e.name}); for PostgreSQL "
            f"run: pip install 'eventkit[postgres]'"
        ) from e


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event emits BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    readonly = conn.get_execution_options().get(READONLY_OPTION, False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One SQL transaction as a ``Session``: committed on exit, rolled back on an error.

    Example::

        with transaction(engine) as db:
            db.execute(delete(balances).where(balances.c.subject == subject))
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session


def bound_waits(db: Session, seconds: float) -> None:
    """Bound how long this transaction waits for a lock, and how long its session may sit idle
    inside it, to ``seconds`` (the lease ttl; PostgreSQL, SQLite has its busy timeout). A runner
    frozen inside a transaction (SIGSTOP, a long GC pause) then loses its session about a ttl
    after its last statement, which frees the lease row for a standby (its lease has expired
    by then), and its own commit fails when it wakes (it is fenced)."""
    if not dialect_of(db).bounded_waits:
        return
    ms = max(1, int(seconds * 1000))
    # both in one statement (once per batch); set_config(..., true) is SET LOCAL. The idle
    # bound is the ttl: a batch idle longer than its lease could not have kept it anyway
    db.connection().exec_driver_sql(
        f"SELECT set_config('lock_timeout', '{ms}', true), "
        f"set_config('idle_in_transaction_session_timeout', '{ms}', true)"
    )


def ended_as_idle(error: BaseException) -> bool:
    """Whether PostgreSQL ended the transaction for sitting idle longer than
    ``idle_in_transaction_session_timeout`` (set by :func:`bound_waits`)."""
    return getattr(getattr(error, "orig", None), "sqlstate", None) == "25P03"


def is_outage(error: BaseException) -> bool:
    """Whether a database error is the database being out of reach or busy (worth waiting out:
    connection refused or dropped, a lock not granted in time, SQLite's "database is locked"),
    as opposed to a mistake that waiting cannot fix (a missing table, a bad statement)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if ended_as_idle(error):
        return True  # the server ended an idle transaction (bound_waits): try again
    return isinstance(error, OperationalError | InterfaceError)


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Session]:
    """A transaction for reading only: on SQLite it takes no write lock, so it never waits
    behind a busy runner (WAL readers see the last commit).

    Example::

        with read_transaction(engine) as db:
            cp = get_checkpoint(db, "balances")
    """
    bind = engine.execution_options(**{READONLY_OPTION: True})
    with Session(bind, expire_on_commit=False) as session, session.begin():
        yield session


def migrations_location() -> str:
    """The folder of eventkit's Alembic environment, wherever the package is installed."""
    return str(migrations_folder())


def upgrade(engine: Engine, *, app_migrations: str | None = None, revision: str = "head") -> None:
    """Bring eventkit's tables (then the app's own, if given) up to ``revision``.

    ``app_migrations`` is an Alembic script location such as ``"samples.bank:migrations"``;
    it runs with its own ``env.py`` against the same database URL.

    Example::

        upgrade(make_engine(settings.resolved_database_url), app_migrations=app.migrations)
    """
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", migrations_location())
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    if app_migrations:
        app_cfg = Config()
        app_cfg.set_main_option("script_location", app_migrations)
        url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
        app_cfg.set_main_option("sqlalchemy.url", url)
        with engine.begin() as conn:
            app_cfg.attributes["connection"] = conn
            command.upgrade(app_cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision of eventkit's tables, None before the first upgrade (a read that never
    waits behind a writer: on SQLite a worker frozen inside a batch holds the write lock)."""
    from alembic.runtime.migration import MigrationContext

    with engine.execution_options(**{READONLY_OPTION: True}).connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return ctx.get_current_revision()


__all__ = [
    "VERSION_TABLE",
    "current_revision",
    "is_sqlite",
    "make_engine",
    "migrations_location",
    "read_transaction",
    "transaction",
    "upgrade",
]
