"""Event stores: JetStream (production) and in-memory (users' unit tests), one interface."""
