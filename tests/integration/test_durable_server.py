"""Acknowledged means stored: the embedded server fsyncs before it acknowledges unless the user
opts out with EVENTKIT_SERVER_SYNC, extra config never moves the store, and eventkit reports
what an acknowledged append survives (warning once, naming the fix)."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventkit.config import Settings
from eventkit.errors import ConfigError
from eventkit.server import EmbeddedServer, ensure_running, start_server_process, stop
from eventkit.store import durability as durability_module
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = pytest.mark.nats


def _jetstream_config(http_port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/varz", timeout=2) as r:
        config: dict[str, Any] = json.loads(r.read())["jetstream"]["config"]
    return config


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    stop(path)


def test_the_embedded_server_fsyncs_every_write_by_default(home: Path) -> None:
    info = ensure_running(home)
    config = _jetstream_config(info.http_port)
    assert config["sync_always"] is True
    assert info.sync_interval == "always"
    assert config["store_dir"].startswith(str(home / "jetstream"))


def test_opting_out_sets_the_interval_asked_for(home: Path) -> None:
    info = EmbeddedServer(sync_interval="2m").ensure_running(home)
    config = _jetstream_config(info.http_port)
    assert not config.get("sync_always")
    assert config["sync_interval"] == 120 * 10**9  # quoted in the file: not 2 mega-seconds
    assert info.sync_interval == "2m"


@pytest.mark.parametrize("bad", ["bogus", "0s", "-1s", "2 minutes", "10"])
def test_a_bad_sync_setting_is_refused_naming_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match="EVENTKIT_SERVER_SYNC"):
        Settings.from_env({"EVENTKIT_SERVER_SYNC": bad})
    with pytest.raises(ConfigError, match="EVENTKIT_SERVER_SYNC"):
        EmbeddedServer(sync_interval=bad)


def test_the_sync_setting_reads_always_and_intervals() -> None:
    assert Settings.from_env({}).server_sync == "always"
    assert Settings.from_env({"EVENTKIT_SERVER_SYNC": "Always"}).server_sync == "always"
    assert Settings.from_env({"EVENTKIT_SERVER_SYNC": "500ms"}).server_sync == "500ms"


def test_a_jetstream_block_in_extra_config_is_merged_not_a_replacement(tmp_path: Path) -> None:
    srv = start_server_process(
        tmp_path / "store",
        extra_config="jetstream {\n  max_file_store: 1G  # a limit\n}\nmax_payload: 2MB",
        sync_interval="always",
    )
    try:
        assert srv.http_port is not None
        config = _jetstream_config(srv.http_port)
        assert config["store_dir"].startswith(str(tmp_path / "store"))  # not /tmp/nats/...
        assert config["max_storage"] == 10**9
        assert config["sync_always"] is True
    finally:
        srv.stop()


@pytest.mark.parametrize("key", ["store_dir", "sync_interval", "cipher"])
def test_extra_config_cannot_set_what_eventkit_sets_itself(tmp_path: Path, key: str) -> None:
    with pytest.raises(ConfigError, match=f"jetstream {key}"):
        start_server_process(tmp_path / "s", extra_config=f"jetstream: {{ {key}: x }}")


async def test_a_store_on_the_embedded_server_reports_it_durable(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=home)
    with caplog.at_level(logging.WARNING, logger="eventkit.durability"):
        async with await JetStreamEventStore.connect(stream="durable", settings=settings) as s:
            assert s.durability is not None
            assert s.durability.sync == "always"
            assert s.durability.warning() is None
            assert s.durability.summary() == "sync always, R1, file storage"
    assert not caplog.records


async def test_a_lossy_embedded_server_is_warned_of_once_naming_the_fix(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    durability_module._warned.clear()
    settings = Settings(home=home, server_sync="10s")
    with caplog.at_level(logging.WARNING, logger="eventkit.durability"):
        for _ in range(2):
            async with await JetStreamEventStore.connect(stream="lossy", settings=settings) as s:
                assert s.durability is not None
                assert s.durability.sync == "10s"
                warning = s.durability.warning()
                assert warning is not None and "EVENTKIT_SERVER_SYNC=always" in warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "power loss" in warnings[0].getMessage()


async def test_a_server_eventkit_did_not_start_says_its_sync_is_not_visible(
    nats_url: str, stream_name: str
) -> None:
    async with await JetStreamEventStore.connect(nats_url, stream=stream_name) as s:
        assert s.durability is not None
        assert s.durability.sync is None
        assert "not visible" in s.durability.summary()
        assert s.durability.warning() is None
