"""Projections: SQL read models fed by durable consumers, checkpointed in the same transaction."""
