"""The row-model workload on the ``eventsourcing`` library (a peer figure for bench/replay.py).

Only for the benchmark: ``pip install eventsourcing psycopg-pool`` into the venv (not a dev
dependency). The application stores ``n`` events, 20 per account (a creation and 19 deposits),
in its own SQLite file or PostgreSQL schema; a ``Projection`` whose tracking recorder keeps a
balance per account (update the row and record the tracking position, one transaction per
event, as the library's projections do) then replays them all. PostgreSQL runs the library's
``ProjectionRunner`` (a subscription to the application's recorder); its SQLite recorder has no
subscription, so there the same projection is fed by the application's notification log.
"""

from __future__ import annotations

import time
from functools import singledispatchmethod
from typing import Any

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event
    from eventsourcing.persistence import InfrastructureFactory, Tracking
    from eventsourcing.projection import Projection
    from eventsourcing.sqlite import SQLiteTrackingRecorder
    from eventsourcing.utils import Environment
except ImportError:  # the bench prints why the peer row is missing
    MISSING: str | None = "eventsourcing is not installed (pip install eventsourcing psycopg-pool)"
else:
    MISSING = None

PER_ENTITY = 20
SAVE_EVERY = 100
"""Accounts per ``app.save`` while filling."""

if MISSING is None:

    class PeerAccount(Aggregate):
        def __init__(self, name: str) -> None:
            self.name = name
            self.balance = 0

        @event("Deposited")
        def deposit(self, amount: int) -> None:
            self.balance += amount

    class PeerBank(Application[Any]):
        name = "peerbank"

    CREATE_BALANCES = (
        "CREATE TABLE IF NOT EXISTS peer_balances (id TEXT PRIMARY KEY, "
        "balance INTEGER NOT NULL, events INTEGER NOT NULL)"
    )

    class SQLiteBalances(SQLiteTrackingRecorder):
        def construct_create_table_statements(self) -> list[str]:
            return [*super().construct_create_table_statements(), CREATE_BALANCES]

        def opened(self, account: str, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as c:
                c.execute(
                    "INSERT INTO peer_balances VALUES (?, 0, 1) ON CONFLICT DO NOTHING", (account,)
                )
                self._insert_tracking(c, tracking)

        def deposited(self, account: str, amount: int, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as c:
                c.execute(
                    "UPDATE peer_balances SET balance = balance + ?, events = events + 1 "
                    "WHERE id = ?",
                    (amount, account),
                )
                self._insert_tracking(c, tracking)

        def digest(self) -> tuple[int, int]:
            with self.datastore.transaction(commit=False) as c:
                c.execute("SELECT COUNT(*), SUM(events) FROM peer_balances")
                row = c.fetchone()
                return int(row[0]), int(row[1] or 0)

    class PeerBalances(Projection[Any]):
        name = "peerbalances"

        @singledispatchmethod
        def process_event(self, domain_event: Any, tracking: Tracking) -> None:
            self.view.insert_tracking(tracking)

        @process_event.register
        def _opened(self, domain_event: PeerAccount.Created, tracking: Tracking) -> None:
            self.view.opened(str(domain_event.originator_id), tracking)

        @process_event.register
        def _deposited(self, domain_event: PeerAccount.Deposited, tracking: Tracking) -> None:
            self.view.deposited(str(domain_event.originator_id), domain_event.amount, tracking)


def _pg_view_class() -> type:
    from eventsourcing.postgres import PostgresTrackingRecorder
    from psycopg.sql import SQL, Identifier

    class PostgresBalances(PostgresTrackingRecorder):
        def __init__(self, datastore: Any, **kwargs: Any) -> None:
            super().__init__(datastore, **kwargs)
            self.sql_create_statements.append(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {0}.peer_balances (id text PRIMARY KEY, "
                    "balance integer NOT NULL, events integer NOT NULL)"
                ).format(Identifier(self.datastore.schema))
            )
            table = f'"{self.datastore.schema}".peer_balances'
            self.open_sql = f"INSERT INTO {table} VALUES (%s, 0, 1) ON CONFLICT DO NOTHING"
            self.deposit_sql = (
                f"UPDATE {table} SET balance = balance + %s, events = events + 1 WHERE id = %s"
            )
            self.digest_sql = f"SELECT COUNT(*), SUM(events) FROM {table}"

        def opened(self, account: str, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as c:
                c.execute(self.open_sql, (account,))
                self._insert_tracking(c, tracking)

        def deposited(self, account: str, amount: int, tracking: Tracking) -> None:
            with self.datastore.transaction(commit=True) as c:
                c.execute(self.deposit_sql, (amount, account))
                self._insert_tracking(c, tracking)

        def digest(self) -> tuple[int, int]:
            with self.datastore.transaction(commit=False) as c:
                c.execute(self.digest_sql)
                row = c.fetchone()
                return int(row["count"]), int(row["sum"] or 0)

    return PostgresBalances


def fill(env: dict[str, str], n: int) -> int:
    """Store ``n`` events, ``PER_ENTITY`` per account; return the last notification id."""
    app = PeerBank(env)
    batch: list[Any] = []
    for _ in range(n // PER_ENTITY):
        acct = PeerAccount(name="x")
        for i in range(PER_ENTITY - 1):
            acct.deposit(i % 100)
        batch.append(acct)
        if len(batch) == SAVE_EVERY:
            app.save(*batch)
            batch = []
    if batch:
        app.save(*batch)
    last = int(app.recorder.max_notification_id() or 0)
    app.close()
    return last


def replay_sqlite(env: dict[str, str], last: int) -> float:
    """The projection fed from the notification log, 512 notifications per select."""
    app = PeerBank(env)
    factory = InfrastructureFactory.construct(env=Environment(PeerBalances.name, env))
    view = factory.tracking_recorder(SQLiteBalances)
    projection = PeerBalances(view=view)
    start = view.max_tracking_id(app.name)
    t0 = time.perf_counter()
    while True:
        notes = app.recorder.select_notifications(start=start, limit=512, inclusive_of_start=False)
        if not notes:
            break
        for note in notes:
            projection.process_event(app.mapper.to_domain_event(note), Tracking(app.name, note.id))
        start = notes[-1].id
    dt = time.perf_counter() - t0
    assert start == last, (start, last)
    assert view.digest() == (last // PER_ENTITY, last), view.digest()
    app.close()
    return last / dt


def replay_postgres(env: dict[str, str], last: int) -> float:
    """The library's ``ProjectionRunner``, timed until the view has tracked ``last``."""
    from eventsourcing.projection import ProjectionRunner

    view_class = _pg_view_class()
    t0 = time.perf_counter()
    with ProjectionRunner(
        application_class=PeerBank, projection_class=PeerBalances, view_class=view_class, env=env
    ) as runner:
        runner.wait(last, timeout=3600)
        dt = time.perf_counter() - t0
        assert runner.view.digest() == (last // PER_ENTITY, last), runner.view.digest()
    return last / dt


def sqlite_rate(db_dir: str, n: int) -> float:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": f"{db_dir}/peer-events.db",
        "PEERBALANCES_SQLITE_DBNAME": f"{db_dir}/peer-view.db",
    }
    return replay_sqlite(env, fill(env, n))


def postgres_rate(schema: str, n: int) -> float:
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": "test",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "5432",
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "",
        "POSTGRES_SCHEMA": schema,
    }
    return replay_postgres(env, fill(env, n))
