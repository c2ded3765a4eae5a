"""Testing helpers for eventkit users: a pytest plugin with a real nats-server fixture.

The plugin (``eventkit.testing.plugin``) is registered as a pytest entry point, so installing
eventkit gives every test suite the ``nats_server``, ``nats_url`` and ``stream_name`` fixtures.
"""
