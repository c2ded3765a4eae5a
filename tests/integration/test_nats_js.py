"""A Node service on nats.js (the client under the NestJS JetStream transport) on eventkit's
stream: it decodes every body as JSON, encrypted ones included, tells events, encrypted events
and erasure markers apart by their headers, and publishes an event an eventkit projector gets
typed, deduplicated by its ``Nats-Msg-Id``. The Node side is ``tests/interop/js_service.mjs``."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import test_gdpr_domain as d
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select
from sqlalchemy.orm import Session

from eventkit.domain.events import Event
from eventkit.domain.handlers import on
from eventkit.projection.projector import Projector
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.sql import read_transaction
from eventkit.server import ServerProcess
from eventkit.store.codec import ENVELOPE
from eventkit.store.records import RecordedEvent

pytestmark = [pytest.mark.nats]

INTEROP = Path(__file__).resolve().parents[1] / "interop"


class JsOrderPlaced(Event):
    total: int


@pytest.fixture(scope="session")
def node_service() -> Path:
    """The Node script, with nats.js installed from the lock file (npm ci) on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed for the nats.js interop test"
    if not (INTEROP / "node_modules" / "nats" / "package.json").exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed in {INTEROP}: {done.stderr}"
    return INTEROP / "js_service.mjs"


def run_node(script: Path, url: str, stream: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, str(script), url, stream, f"js_{uuid.uuid4().hex[:6]}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_a_nats_js_service_reads_and_writes_the_stream(
    server: ServerProcess, node_service: Path, engine: Engine
) -> None:
    store = await d.connect(server.url)
    s = d.STREAM
    customer = f"{s}.customer.{uuid.uuid4().hex}"
    gone = f"{s}.customer.{uuid.uuid4().hex}"
    account = f"{s}.account.{uuid.uuid4().hex}"
    await store.append(customer, [d.GdprCustomerRegistered(name="Ada")])
    await store.append(gone, [d.GdprCustomerRegistered(name="Bob")])
    await store.append(account, [d.GdprAccountNoted(note="hello")])
    marker = await store.mark_forgotten(gone)

    out = run_node(node_service, server.url, s)
    seen = {m["seq"]: m for m in out["messages"]}
    assert all(m["json"] for m in out["messages"])  # no "Bad JSON": every body is JSON
    plain = next(m for m in seen.values() if m["subject"] == account)
    assert plain["type"] == "GdprAccountNoted" and plain["body"] == {"note": "hello"}
    assert plain["enc"] is None
    secret = next(m for m in seen.values() if m["subject"] == customer)
    assert secret["type"] == "GdprCustomerRegistered" and secret["body"]["enc"] == ENVELOPE
    assert secret["enc"] == secret["body"]["key"]
    assert b"Ada" not in base64.b64decode(secret["body"]["data"])
    erased = seen[marker]
    assert erased["subject"] == gone and erased["system"] == "erased"
    assert erased["type"] is None and erased["body"] == {}
    assert out["duplicate"] is True  # the same Nats-Msg-Id twice is stored once

    # the order the Node service published reaches an eventkit projector typed
    md = MetaData()
    orders = Table(
        f"js_orders_{uuid.uuid4().hex[:6]}",
        md,
        Column("seq", Integer, primary_key=True),
        Column("event_id", String(200)),
        Column("order_id", String(80)),
        Column("total", Integer),
    )
    md.create_all(engine)

    class Orders(Projector):
        name = f"js_orders_{uuid.uuid4().hex[:6]}"
        subjects = [f"{s}.orders.>"]
        foreign_events = {f"{s}.orders.>": JsOrderPlaced}

        @on(JsOrderPlaced)
        def placed(self, e: JsOrderPlaced, rec: RecordedEvent[Any], db: Session) -> None:
            db.execute(
                orders.insert().values(
                    seq=rec.sequence, event_id=rec.event_id, order_id=rec.entity_id, total=e.total
                )
            )

    result = await ProjectionRunner(Orders(), store, engine).catch_up()
    assert not result.halted
    with read_transaction(engine) as db:
        rows = [tuple(r) for r in db.execute(select(orders))]
    assert rows == [(out["published"], "order-o-1", "o-1", 30)]
    await store.close()
