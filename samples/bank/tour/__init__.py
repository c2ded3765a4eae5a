"""The bank tour: every part of eventkit in one run, on the embedded defaults.

``python -m samples.bank`` (from a checkout, after ``pip install .``) runs, in order: the
migrations; customers (personal data, encrypted per customer) and accounts; concurrent deposits
that collide and retry; transfers, each one atomic append over two accounts; the projectors'
catch-up; the read models; a replay of the ledger from a point in time; and the erasure of a
customer. Every run uses fresh ids, so it can be run again; the projectors carry on from their
checkpoints.

With no ``EVENTKIT_NATS_URL`` it starts (or reuses) the embedded nats-server under
``./.eventkit``. With no ``EVENTKIT_DATABASE_URL`` it uses SQLite in ``./.eventkit/eventkit.db``.
Both can point elsewhere.

Example::

    result = asyncio.run(run_tour(Settings.from_env()))
    assert result.balances_match and result.ledger_idempotent is not False

Rooms: ``script`` (people, amounts, the result), ``narration`` (output helpers), ``writes``,
``projections``, ``erasure``, ``reactions`` (the steps), ``run`` (the order and the command).
"""

from __future__ import annotations

from samples.bank.tour.run import Tour, main, run_tour
from samples.bank.tour.script import TourResult

__all__ = ["Tour", "TourResult", "main", "run_tour"]
