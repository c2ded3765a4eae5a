"""What runs consumers: the consumer port, the supervisor, heartbeats, dead letters.

- :mod:`eventkit.runtime.port`: deliveries that ``ack``, ``nak(delay)``, ``term`` and
  ``in_progress`` themselves, over JetStream (:mod:`eventkit.runtime.pulling`) or an in-memory
  store (:mod:`eventkit.runtime.memory`).
- :mod:`eventkit.runtime.supervisor`: one supervisor for every worker (transient faults,
  capped backoff of :mod:`eventkit.runtime.backoff`, drain on SIGTERM/SIGINT).
- :mod:`eventkit.runtime.presence`: workers' heartbeats.
- :mod:`eventkit.runtime.deadletters`: one dead-letter model; :mod:`eventkit.runtime.parked`
  keeps reactors' letters.
- :mod:`eventkit.runtime.lease`: what a worker that owns a share of the work holds;
  :mod:`eventkit.runtime.partitions`: partitioned workers.

Data flows one way: ``store`` <- ``runtime`` <- ``projection`` / ``reaction``.
"""

from eventkit.runtime.deadletters import DeadLetter, DeadLetterStore
from eventkit.runtime.port import Consumer, Delivery
from eventkit.runtime.supervisor import Outcome, Supervisor

__all__ = ["Consumer", "DeadLetter", "DeadLetterStore", "Delivery", "Outcome", "Supervisor"]
