"""Erased means erased in every table eventkit made for a projector (live, build, retired), each
of them visible in status and dropped by a documented command; a switch is resumable."""

from __future__ import annotations

from typing import Any

import pytest
from _versions import Kit  # type: ignore[import-not-found]
from sqlalchemy import Engine, inspect

from eventkit import App
from eventkit.gdpr.forget import forget_subject
from eventkit.projection.bluegreen import switch
from eventkit.projection.runner import ProjectionRunner
from eventkit.projection.status import status

pytestmark = pytest.mark.nats


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


async def _built(store: Any, engine: Engine) -> Kit:
    """Version 1 live, version 2 built beside it; rows for p1 and p2 in both."""
    kit = Kit(store, engine)
    await kit.pay("p1", 1)
    await kit.pay("p2", 2)
    await ProjectionRunner(kit.V1(), store, engine).catch_up()
    await ProjectionRunner(kit.V2(), store, engine).catch_up()
    assert kit.totals(f"{kit.table.name}_v2") == {"p1": 10, "p2": 20}
    return kit


async def test_a_switch_killed_between_its_transactions_is_finished_and_forgotten(
    store: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventkit.projection import switching

    kit = await _built(store, engine)
    real = switching.finish_retired
    calls: list[str] = []

    def killed_after_the_swap(engine: Engine, name: str) -> list[str]:
        calls.append(name)
        if len(calls) == 2:  # the switch's second transaction: the process dies first
            raise SystemExit("killed")
        return real(engine, name)

    monkeypatch.setattr(switching, "finish_retired", killed_after_the_swap)
    with pytest.raises(SystemExit):
        await switch(kit.V2(), store, engine)
    monkeypatch.undo()
    retired = f"{kit.table.name}_retired_v1"
    assert retired in _tables(engine)
    assert kit.totals() == {"p1": 10, "p2": 20}  # version 2 is live

    # the retired copy is known: status lists it, forget erases the person in it
    rows = await status([kit.V2()], store, engine)
    assert [(r.version, r.role) for r in rows] == [(1, "retired"), (2, "live")]
    app = App(stream=store.stream, projectors=[kit.V2()])
    await forget_subject(app, store, engine, f"{store.stream}.{kit.px}.p1")
    assert kit.totals(retired) == {"p2": 2}
    assert kit.totals() == {"p2": 20}

    # switching again finishes the interrupted switch instead of refusing
    done = await switch(kit.V2(), store, engine)
    assert "finished an interrupted switch" in done
    assert retired not in _tables(engine)
    rows = await status([kit.V2()], store, engine)
    assert [(r.version, r.role) for r in rows] == [(2, "live")]


async def test_a_forget_from_the_old_versions_code_erases_the_build_copy_too(
    store: Any, engine: Engine
) -> None:
    kit = await _built(store, engine)
    app = App(stream=store.stream, projectors=[kit.V1()])  # the old code runs the forget
    await forget_subject(app, store, engine, f"{store.stream}.{kit.px}.p1")
    assert kit.totals() == {"p2": 2}
    assert kit.totals(f"{kit.table.name}_v2") == {"p2": 20}


async def test_an_abandoned_build_is_shown_forgotten_and_dropped(
    store: Any, engine: Engine
) -> None:
    from eventkit.projection.copies import drop_version

    kit = await _built(store, engine)  # then the deploy of version 2 is rolled back
    copy = f"{kit.table.name}_v2"
    rows = await status([kit.V1()], store, engine)
    assert [(r.version, r.role) for r in rows] == [(1, "live"), (2, "building")]
    app = App(stream=store.stream, projectors=[kit.V1()])
    await forget_subject(app, store, engine, f"{store.stream}.{kit.px}.p2")
    assert kit.totals(copy) == {"p1": 10}

    with pytest.raises(Exception, match="is live"):
        drop_version(engine, kit.px, 1)
    assert "dropped version 2" in drop_version(engine, kit.px, 2)
    assert copy not in _tables(engine)
    rows = await status([kit.V1()], store, engine)
    assert [(r.version, r.role) for r in rows] == [(1, "live")]
    assert kit.totals() == {"p1": 1}
