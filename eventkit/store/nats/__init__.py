"""The NATS adapter of the event store, one concept per module.

- ``connection``: the first connect (bounded) and the reconnect/slow-consumer notices
- ``inbox``: one multiplexed inbox for every reply the store waits for, and permission denials
- ``direct``: batched direct gets (``$JS.API.DIRECT.GET``)
- ``reading``: the store's reads (subjects, the whole stream, last sequences), read-your-writes
- ``appending``: single publishes, ADR-50 atomic batches, ambiguous-ack resolution
- ``buckets``: the erasable KV buckets (snapshots, data keys)
- ``errors``, ``wire``, ``backoff``: JetStream errors, time/version formats, retry pacing

``eventkit.store.jetstream.JetStreamEventStore`` puts them together. Transport errors are
translated into eventkit errors here, and only here.
"""
