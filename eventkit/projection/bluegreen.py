"""Blue/green rebuilds: raising ``version`` builds the new version beside the live one.

::

    class Balances(RowProjector):
        version = 2          # was 1: the runner builds v2 into bank_balances_v2 (checkpoint
                             # "balances_v2") while v1's workers keep serving bank_balances
    await switch(Balances(), store, engine)   # v2 becomes bank_balances, v1 is retired

A version has its own checkpoint, lease and consumer: its *slot* (``name`` for version 1,
``name_v<N>`` after). ``eventkit_versions`` records which version is live and the registry
(:mod:`eventkit.projection.registry`) every version and the table it writes. Whatever order
workers of several versions start in, the first to record the projector decides the live
version; an older version is refused; a newer one writes a copy of the table (``<table>_v<N>``,
created by eventkit). Every batch of a row projector checks its version's row in the batch
transaction (:func:`fence`), so a version retired by a switch, or dropped, commits nothing.

``switch`` fences the old version at a known checkpoint (its workers stand by), lets the new
version reach it, then renames the copy over the live table, retires the old version and drops
its table; it resumes a switch that was interrupted between its transactions.

A plain ``Projector`` gets its own slot per version too, but eventkit cannot redirect its SQL:
raising its ``version`` is refused; write the read model as a ``RowProjector`` to rebuild it
blue/green, or give the new version new tables under a new name.

The parts: :mod:`eventkit.projection.targets` (which table a version writes, the fence),
:mod:`eventkit.projection.deployment` (recording a version as it starts) and
:mod:`eventkit.projection.switching`; their names are importable from here.
"""

from __future__ import annotations

from eventkit.projection.deployment import Slot, deployed, slots
from eventkit.projection.registry import Retired, retired_message, slot_name
from eventkit.projection.switching import SWITCH_TIMEOUT, switch
from eventkit.projection.targets import (
    FOREVER,
    base_name,
    copy_table,
    fence,
    label,
    live_version,
    quoted,
    versions,
)

__all__ = [
    "FOREVER",
    "SWITCH_TIMEOUT",
    "Retired",
    "Slot",
    "base_name",
    "copy_table",
    "deployed",
    "fence",
    "label",
    "live_version",
    "quoted",
    "retired_message",
    "slot_name",
    "slots",
    "switch",
    "versions",
]
