"""The App's own Alembic tree (its read-model tables): create it, add revisions, run it.

::

    eventkit --app myservice.app:app db init                   # writes myservice/migrations/
    eventkit --app myservice.app:app db revision -m "accounts" --autogenerate
    eventkit --app myservice.app:app db upgrade                # eventkit's tables, then the App's

The tree keeps its own version table, ``<stream>_alembic_version``, so it never meets eventkit's
(``eventkit_alembic_version``) or another Alembic tree in the same database.
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData

from eventkit.bundled import revision_template
from eventkit.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config

    from eventkit.app import App

__all__ = [
    "app_metadata",
    "current_app_revision",
    "init_tree",
    "new_revision",
    "run_environment",
    "version_table",
]


def version_table(app: App) -> str:
    return f"{app.stream}_alembic_version"


def app_metadata(app: App) -> list[MetaData]:
    """The distinct ``MetaData`` of the App's projectors (``Projector.metadata``)."""
    found: list[MetaData] = []
    for p in app.projectors:
        md = type(p).metadata
        if md is not None and all(md is not m for m in found):
            found.append(md)
    return found


def run_environment(target: str) -> None:
    """The body of an ``env.py`` written by ``eventkit db init``: run the tree of the App
    ``target`` (``module:attribute``) against the connection the caller passes, or the URL."""
    from alembic import context
    from sqlalchemy import create_engine

    from eventkit.app import load_app

    app = load_app(target)
    config = context.config
    options: dict[str, Any] = {
        "target_metadata": app_metadata(app) or None,
        "version_table": version_table(app),
        "include_object": _own_tables_only,
    }
    connection = config.attributes.get("connection")
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    if connection is not None:
        _online(connection, options)
        return
    engine = create_engine(str(url))
    try:
        with engine.begin() as conn:
            _online(conn, options)
    finally:
        engine.dispose()


def _own_tables_only(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate looks at the App's tables only: a table in the database that the metadata
    does not name (eventkit's, another tree's) is never dropped."""
    return not (type_ == "table" and reflected and compare_to is None)


def _online(connection: Any, options: dict[str, Any]) -> None:
    from alembic import context

    from eventkit.projection.dialect import dialect_of

    render_as_batch = dialect_of(connection).alters_by_copy
    context.configure(connection=connection, render_as_batch=render_as_batch, **options)
    with context.begin_transaction():
        context.run_migrations()


def _resolve(location: str) -> Path:
    """The folder of an Alembic script location (``package:folder`` or a path)."""
    if ":" in location and not os.path.isabs(location):
        package, _, folder = location.partition(":")
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"App migrations {location!r}: {package!r} is not an importable package"
            )
        return Path(next(iter(spec.submodule_search_locations))) / folder
    return Path(location)


def _default_location(target: str) -> str:
    module = target.partition(":")[0]
    if "." in module:
        return f"{module.rpartition('.')[0]}:migrations"
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:  # the App lives in a package
        return f"{module}:migrations"
    return "migrations"


_ENV = '''"""Alembic environment of the App {target}'s read-model tables (written by `eventkit db
init`; its version table is {table})."""

from eventkit.app_migrations import run_environment

run_environment({target!r})
'''


def init_tree(app: App, target: str) -> tuple[Path, str]:
    """Write an Alembic tree for the App (``env.py``, ``script.py.mako``, ``versions/``) at
    ``App.migrations`` or, when that is unset, next to the App's module. Returns the folder and
    the script location to pass as ``App(migrations=...)``. Refuses a folder that exists."""
    location = app.migrations or _default_location(target)
    folder = _resolve(location)
    if folder.exists():
        raise ConfigError(
            f"{folder} exists already; `eventkit db revision -m ...` adds a revision to it"
        )
    if not folder.parent.is_dir():
        raise ConfigError(f"the folder {folder.parent} does not exist (nothing was created)")
    template = revision_template()
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(_ENV.format(target=target, table=version_table(app)))
    (folder / "script.py.mako").write_text(template.read_text())
    return folder, location


def _config(app: App, engine: Engine, stdout: io.StringIO | None = None) -> Config:
    from alembic.config import Config

    if not app.migrations:
        raise ConfigError(
            "the App has no migrations=: run `eventkit db init`, then set "
            "App(migrations=...) to the location it prints"
        )
    cfg = Config(stdout=stdout) if stdout is not None else Config()
    cfg.set_main_option("script_location", app.migrations)
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def new_revision(app: App, engine: Engine, message: str, *, autogenerate: bool) -> list[str]:
    """Add a revision to the App's tree (``autogenerate``: the difference between the
    projectors' metadata and the database, which must be at head). Returns the new file(s)."""
    from alembic import command
    from alembic.util.exc import CommandError

    if autogenerate and not app_metadata(app):
        raise ConfigError(
            "--autogenerate needs the read-model tables: set `metadata = <your MetaData>` on "
            "the App's projectors"
        )
    cfg = _config(app, engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        try:
            made = command.revision(cfg, message=message, autogenerate=autogenerate)
        except CommandError as e:
            raise ConfigError(f"alembic: {e} (run `eventkit db upgrade` first)") from e
    scripts = made if isinstance(made, list) else [made]
    return [str(s.path) for s in scripts if s is not None]


def current_app_revision(app: App, engine: Engine) -> str | None:
    """The revision of the App's tree in the database (None before its first upgrade)."""
    from alembic import command

    out = io.StringIO()
    cfg = _config(app, engine, stdout=out)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.current(cfg)
    words = out.getvalue().split()
    return words[0] if words else None
