"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked:
the file parses, the NATS service's command line is accepted by the wheel's nats-server, and every
eventkit command in it parses with the CLI."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from eventkit.cli.main import app
from eventkit.server import find_server_binary, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def test_compose_file_has_the_services_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"nats", "postgres", "migrate", "worker"} <= set(services)
    assert "nats-data" in compose["volumes"] and "pg-data" in compose["volumes"]
    assert any(v.endswith(":/data") for v in services["nats"]["volumes"])
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    for name in ("migrate", "worker"):
        env = services[name]["environment"]
        assert env["EVENTKIT_NATS_URL"].startswith("nats://nats:")
        assert env["EVENTKIT_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["EVENTKIT_APP"] == "samples.bank.app:app"


@pytest.mark.nats
def test_nats_service_command_line_is_accepted_by_the_wheel_server(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    args = _command(compose["services"]["nats"])
    assert "--jetstream" in args or "-js" in args
    # same flags, with the container's paths and ports mapped to this machine's loopback
    mapped: list[str] = []
    it = iter(args)
    http_port = free_port()
    for a in it:
        if a in ("--store_dir", "-sd"):
            mapped += [a, str(tmp_path / "data")]
            next(it)
        elif a in ("--config", "-c"):
            mapped += [a, str(ROOT / "deploy" / "nats" / Path(next(it)).name)]
        elif a in ("--http_port", "-m"):
            mapped += [a, str(http_port)]
            next(it)
        else:
            mapped.append(a)
    mapped += ["-a", "127.0.0.1", "-p", str(free_port())]
    env = dict(os.environ)
    for key, value in compose["services"]["nats"]["environment"].items():
        env[key] = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))  # compose's default
    proc = subprocess.Popen(
        [str(find_server_binary()), *mapped],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 10
        healthy = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                url = f"http://127.0.0.1:{http_port}/healthz?js-enabled-only=true"
                with urllib.request.urlopen(url, timeout=1) as r:
                    healthy = r.status == 200
                    break
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        assert healthy, "the server never reported JetStream healthy"
        # the stack's server fsyncs before it acknowledges, with the store where the flag says
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/varz", timeout=2) as r:
            config = json.loads(r.read())["jetstream"]["config"]
        assert config["sync_always"] is True
        assert config["store_dir"].startswith(str(tmp_path / "data"))
    finally:
        proc.terminate()
        proc.wait(10)


def _parse(args: list[str]) -> list[str]:
    """Parse a full eventkit command line without running it; return the command path."""
    cmd: Any = typer.main.get_command(app)
    ctx = cmd.make_context("eventkit", list(args))
    path = ["eventkit"]
    while hasattr(cmd, "resolve_command"):
        rest = list(ctx._protected_args if hasattr(ctx, "_protected_args") else []) + ctx.args
        if not rest:
            break
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return path


def test_every_eventkit_command_in_compose_parses(compose: dict[str, Any]) -> None:
    seen = 0
    for name, service in compose["services"].items():
        if "command" not in service:
            continue
        args = _command(service)
        if args[0] != "eventkit":
            continue
        path = _parse(args[1:])
        assert len(path) > 1, f"{name}: {args} names no eventkit command"
        seen += 1
    assert seen >= 2


def test_parser_rejects_a_command_that_does_not_exist() -> None:
    with pytest.raises(Exception, match="No such command"):
        _parse(["no-such-command"])


@pytest.mark.parametrize(
    ("service", "name", "kind"),
    [("ledger", "ledger", "projector"), ("reactor", "large-withdrawals", "reactor")],
)
def test_a_partitioned_consumer_runs_in_three_workers_sharing_its_partitions(
    compose: dict[str, Any], service: str, name: str, kind: str
) -> None:
    from samples.bank.app import app as bank

    services = compose["services"]
    assert services[service]["deploy"]["replicas"] == 3
    args = _command(services[service])
    assert _parse(args[1:]) == ["eventkit", "run"]
    named = list(itertools.takewhile(lambda a: not a.startswith("-"), args[2:]))
    consumer = bank.projector(name) if kind == "projector" else bank.reactor(name)
    assert named == [name] and consumer.partitions > 1
    if kind == "reactor":  # partitions keep each account's order across the workers
        assert consumer.ordered == "subject"
    # each replica its own worker id (a shared --owner would let two apply one partition)
    assert "--owner" not in args
    # it runs in no other service (a plain runner of it would stand by for ever, or be refused)
    others = [_command(s) for n, s in services.items() if n != service and "command" in s]
    assert not any(name in a for a in others)
