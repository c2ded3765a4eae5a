"""Where eventkit's own Alembic tree is, in a clone, an editable install or an installed wheel.

The tree lives at the repository's top level (``migrations/``: ``env.py``, ``script.py.mako``,
``versions/``). The wheel ships it inside the package as ``eventkit/migrations`` (a build
mapping in ``pyproject.toml``), so site-packages gains no top-level ``migrations``. A clone and
an editable install import ``eventkit`` from the repository, where the tree sits beside the
package. This module is the one place that knows both layouts; it imports nothing of eventkit
but the errors.
"""

from __future__ import annotations

from pathlib import Path

from eventkit.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent

# First the wheel's layout, then the repository's. Each must hold env.py: a folder left over
# (say, __pycache__ after the tree moved) is not a tree.
CANDIDATES: tuple[Path, ...] = (_PACKAGE / "migrations", _PACKAGE.parent / "migrations")


def migrations_folder() -> Path:
    """The folder of eventkit's own Alembic environment (its ``env.py`` and ``versions/``).

    Example::

        ScriptDirectory(str(migrations_folder())).get_current_head()
    """
    for folder in CANDIDATES:
        if (folder / "env.py").is_file() and (folder / "versions").is_dir():
            return folder
    looked = ", ".join(str(c) for c in CANDIDATES)
    raise ConfigError(
        f"eventkit's migrations are missing from this installation (looked in {looked}); "
        "reinstall eventkit (pip install --force-reinstall eventkit)"
    )


def revision_template() -> Path:
    """The ``script.py.mako`` that new revisions are written from (``eventkit db init``)."""
    return migrations_folder() / "script.py.mako"


__all__ = ["CANDIDATES", "migrations_folder", "revision_template"]
