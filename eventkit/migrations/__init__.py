"""eventkit's own Alembic environment (checkpoints, dead letters, leases), shipped in the wheel.

Run it with ``eventkit db upgrade`` or :func:`eventkit.projection.sql.upgrade`; its version table
is ``eventkit_alembic_version``, so it never collides with an application's Alembic tree.
"""
