"""The old name of :mod:`eventkit.store.wire_constants` (JetStream header names and server
error codes), kept so imports of it go on working."""

from eventkit.store.wire_constants import *  # noqa: F403
from eventkit.store.wire_constants import __all__ as __all__
