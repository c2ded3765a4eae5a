"""The bank's projectors on a real nats-server, into SQLite and PostgreSQL.

The module runs its own nats-server: the bank app's stream is always named ``bank``, so it must
not share the session server with other tests. Each test uses fresh entity ids and a fresh
database, so a catch-up also passes over earlier tests' events, as a real deployment would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from eventkit import ForgottenError, Repository
from eventkit.config import Settings
from eventkit.errors import ProjectionError
from eventkit.gdpr.forget import forget_subject
from eventkit.projection.replay import plan_replay, replay
from eventkit.projection.runner import run_projectors
from eventkit.projection.sql import make_engine, transaction, upgrade
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore
from samples.bank.app import app as bank_app
from samples.bank.domain import Account, Customer
from samples.bank.readmodels import balances, customers, ledger

pytestmark = pytest.mark.nats

MASTER_KEY = os.urandom(32)  # one per module: the key bucket checks it at every connect


@pytest.fixture(scope="module")
def bank_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server_process(tmp_path_factory.mktemp("bank-nats") / "store")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    upgrade(engine, app_migrations=bank_app.migrations)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
async def store(bank_server: ServerProcess, tmp_path: Path) -> AsyncIterator[JetStreamEventStore]:
    settings = Settings(nats_urls=(bank_server.url,), master_key=MASTER_KEY, home=tmp_path)
    store = await bank_app.connect(settings)
    try:
        yield store
    finally:
        await store.close()


async def scenario(store: JetStreamEventStore) -> dict[str, str]:
    """Customers, accounts, deposits, a withdrawal and transfers; returns name -> account id."""
    run = uuid.uuid4().hex[:6]
    people, accounts = Repository(store, Customer), Repository(store, Account)
    ids: dict[str, str] = {}
    for name, opening in (("ada", 100), ("bob", 40), ("cy", 0)):
        c = Customer(f"c-{run}-{name}")
        c.register(name.title(), f"{name}@example.com")
        await people.save(c)
        a = Account(f"a-{run}-{name}")
        a.open(c.id)
        if opening:
            a.deposit(opening)
        await accounts.save(a)
        ids[name] = a.id
    for _ in range(3):
        await accounts.update(ids["ada"], lambda a: a.deposit(10))
    await accounts.update(ids["bob"], lambda a: a.withdraw(15))
    for src, dst, amount in (("ada", "bob", 30), ("bob", "cy", 20), ("ada", "cy", 5)):
        s, d = await accounts.load(ids[src]), await accounts.load(ids[dst])
        s.send(f"t-{run}-{src}-{dst}", d, amount)
        await accounts.save_all([s, d])
    return ids


def rows(engine: Engine, table: Any, *where: Any) -> list[tuple[Any, ...]]:
    with transaction(engine) as db:
        query = select(table).where(*where)
        return [tuple(r) for r in db.execute(query.order_by(*table.primary_key.columns)).all()]


async def test_balances_equal_the_aggregates_balances(
    store: JetStreamEventStore, engine: Engine
) -> None:
    ids = await scenario(store)
    results = await run_projectors(bank_app, store, engine, once=True)
    assert all(not r.halted for r in results)
    accounts = Repository(store, Account)
    expected = {i: (await accounts.load(i)).balance for i in ids.values()}
    with transaction(engine) as db:
        got = dict(
            db.execute(
                select(balances.c.account_id, balances.c.balance).where(
                    balances.c.account_id.in_(ids.values())
                )
            ).all()
        )
    assert got == expected
    assert expected == {ids["ada"]: 95, ids["bob"]: 35, ids["cy"]: 25}
    # the directory has the three customers, decrypted
    names = rows(
        engine, customers, customers.c.customer_id.in_([f"c{i[1:]}" for i in ids.values()])
    )
    assert sorted(r[1] for r in names) == ["Ada", "Bob", "Cy"]


async def test_projectors_continue_from_their_checkpoints(
    store: JetStreamEventStore, engine: Engine
) -> None:
    await scenario(store)
    first = {r.projector: r for r in await run_projectors(bank_app, store, engine, once=True)}
    ids = await scenario(store)
    second = {r.projector: r for r in await run_projectors(bank_app, store, engine, once=True)}
    # the second catch-up only sees the second scenario: 3 customers, 15 account events
    assert second["customers"].processed == 3
    assert second["balances"].processed == 15
    # the ledger has no row for an opening: it applies the 12 others and passes the 3 over
    assert (second["ledger"].processed, second["ledger"].passed_over) == (12, 3)
    assert second["balances"].checkpoint > first["balances"].checkpoint
    assert len(rows(engine, balances, balances.c.account_id.in_(ids.values()))) == 3


async def test_the_ledger_is_idempotent_under_replay(
    store: JetStreamEventStore, engine: Engine
) -> None:
    ids = await scenario(store)
    await run_projectors(bank_app, store, engine, once=True)
    before = rows(engine, ledger)
    mine = rows(engine, ledger, ledger.c.account_id.in_(ids.values()))
    assert len(mine) == 2 + 3 + 1 + 6  # opening deposits, deposits, withdrawal, 3 transfers x 2
    assert sum(r[3] for r in mine) == 100 + 40 + 30 - 15
    projector = bank_app.projector("ledger")
    # from a time: the first transfer's server timestamp
    first_transfer = min(r[0] for r in mine if r[2] == "transfer")
    at = next(r[5] for r in mine if r[0] == first_transfer)
    at = _aware(at)
    # the recorded time is the server's, truncated to microseconds: replaying from it starts at
    # that very event
    plan = await plan_replay(projector, store, engine, from_time=at)
    assert plan.method == "idempotent" and plan.start_sequence <= first_transfer
    earlier = [r[0] for r in mine if _aware(r[5]) < at]
    assert not earlier or plan.start_sequence > max(earlier)
    result = await replay(plan, projector, store, engine)
    assert result.processed >= 6
    assert rows(engine, ledger) == before
    # from a sequence, and from the start (reset)
    options: list[dict[str, Any]] = [{"from_sequence": 1}, {"from_start": True}]
    for kwargs in options:
        plan = await plan_replay(projector, store, engine, **kwargs)
        await replay(plan, projector, store, engine)
        assert rows(engine, ledger) == before


async def test_balances_refuse_a_replay_from_a_point_and_rebuild_from_the_start(
    store: JetStreamEventStore, engine: Engine
) -> None:
    ids = await scenario(store)
    await run_projectors(bank_app, store, engine, once=True)
    before = rows(engine, balances)
    projector = bank_app.projector("balances")
    with pytest.raises(ProjectionError, match="not idempotent"):
        await plan_replay(projector, store, engine, from_sequence=1)
    plan = await plan_replay(projector, store, engine, from_start=True)
    assert plan.method == "reset"
    await replay(plan, projector, store, engine)
    assert rows(engine, balances) == before
    assert len(rows(engine, balances, balances.c.account_id.in_(ids.values()))) == 3


async def test_forget_removes_the_customer_row_and_messages(
    store: JetStreamEventStore, engine: Engine
) -> None:
    ids = await scenario(store)
    await run_projectors(bank_app, store, engine, once=True)
    customer_id = "c" + ids["bob"][1:]
    other_id = "c" + ids["ada"][1:]
    subject = f"bank.customer.{customer_id}"
    assert rows(engine, customers, customers.c.customer_id == customer_id)
    raw = [m async for m in store.read_raw(subject)]
    assert len(raw) == 1 and b"Bob" not in raw[0].data  # stored encrypted

    report = await forget_subject(bank_app, store, engine, subject)

    assert report.messages == 1 and report.key == "shredded"
    assert report.projectors == ["customers"] and report.projectors_without_forget == []
    assert rows(engine, customers, customers.c.customer_id == customer_id) == []
    assert rows(engine, customers, customers.c.customer_id == other_id)  # the others stay
    assert [m.data async for m in store.read_raw(subject)] == [b"{}"]  # the erasure marker
    try:
        left = await store.read(subject)
    except ForgottenError:
        left = []
    assert left == []
    again = Customer(customer_id)
    again.register("Bob", "bob@example.com")
    with pytest.raises(ForgottenError):
        await Repository(store, Customer).save(again)
    # a later catch-up does not bring it back, and the account keeps its balance
    await run_projectors(bank_app, store, engine, once=True)
    assert rows(engine, customers, customers.c.customer_id == customer_id) == []
    assert rows(engine, balances, balances.c.account_id == ids["bob"])[0][2] == 35


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)  # SQLite drops the zone
