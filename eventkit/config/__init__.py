"""Settings read once from ``EVENTKIT_*`` environment variables, with CLI flags on top.

::

    settings = Settings.from_env()
"""

from eventkit.config.settings import DEFAULT_HOME, ENV_VARS, Settings

__all__ = ["DEFAULT_HOME", "ENV_VARS", "Settings"]
