"""Accounts, permissions and every connection option, against real servers configured for them.

- Two accounts (A, B), each with JetStream: a store connected as tenant A cannot read, replay or
  delete tenant B's events, even under the same stream name.
- A user denied publishing to the stream's subjects, or to the JetStream API, gets a
  ``PermissionDeniedError`` at once, not a ``StoreUnavailableError`` after the retry window.
- user/password, token, nkey seed file, creds file (passed through), TLS with a CA and a client
  certificate generated here (``trustme``), through ``Settings`` and ``EVENTKIT_*`` variables.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nkeys
import pytest
import trustme

from eventkit.app import App
from eventkit.config import Settings
from eventkit.domain.events import Event
from eventkit.errors import PermissionDeniedError, StoreUnavailableError
from eventkit.gdpr import forget_subject
from eventkit.projection.sql import make_engine, upgrade
from eventkit.server import ServerProcess, start_server_process
from eventkit.store.jetstream import JetStreamEventStore

pytestmark = [pytest.mark.nats]

STREAM = "tenant"
FAST = 3.0
"""Seconds within which a permission violation must surface (the retry window is 20 s)."""


class AuthNoted(Event):
    event_type = "AuthNoted"
    n: int = 0


async def _connect_or_fail(**kw: Any) -> JetStreamEventStore:
    """Connect, turning a hang into a test failure (bad credentials must fail at once)."""
    t0 = time.monotonic()
    try:
        return await asyncio.wait_for(JetStreamEventStore.connect(**kw), 5)
    except TimeoutError:
        pytest.fail(f"connect with bad credentials hung for {time.monotonic() - t0:.0f}s")


def _server(path: Path, config: str) -> ServerProcess:
    return start_server_process(path, extra_config=config)


# ---------------------------------------------------------------------- accounts


ACCOUNTS = """
accounts {
  A: {
    jetstream: enabled
    users: [
      {user: a, password: pa}
      {user: a_nopub, password: pa, permissions: {publish: {deny: ["tenant.>"]}}}
      {user: a_nojs, password: pa, permissions: {publish: {deny: ["$JS.API.>"]}}}
    ]
  }
  B: {
    jetstream: enabled
    users: [{user: b, password: pb}]
  }
}
"""


@pytest.fixture(scope="module")
def accounts_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = _server(tmp_path_factory.mktemp("accounts"), ACCOUNTS)
    try:
        yield srv
    finally:
        srv.stop()


def _settings(srv: ServerProcess, **kw: object) -> Settings:
    return Settings(nats_urls=(srv.url,), stream=STREAM, **kw)  # type: ignore[arg-type]


async def test_tenant_a_cannot_read_replay_or_delete_tenant_b(
    accounts_server: ServerProcess, tmp_path: Path
) -> None:
    b = await JetStreamEventStore.connect(
        stream=STREAM, settings=_settings(accounts_server, user="b", password="pb")
    )
    a = await JetStreamEventStore.connect(
        stream=STREAM, settings=_settings(accounts_server, user="a", password="pa")
    )
    try:
        subject = f"{STREAM}.order.o-1"
        last_b = await b.append(subject, [AuthNoted(n=i) for i in range(3)])
        assert await b.last_sequence() == last_b

        # A sees its own, empty stream of the same name: nothing of B's
        assert await a.read(subject) == []
        assert [r async for r in a.read_all()] == []
        assert await a.last_sequence() == 0
        assert await a.get(last_b) is None
        # "forget" of B's message from A: nothing of B's to erase (a sequence past the end of
        # A's own stream is simply not there)
        assert await a.delete(last_b) is False
        # and `forget` run as A finds nothing of B's subject
        engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
        upgrade(engine)
        report = await forget_subject(App(stream=STREAM), a, engine, subject)
        engine.dispose()
        assert report.messages == 0 and report.nothing

        # B's stream is untouched
        assert [r.event.n for r in await b.read(subject)] == [0, 1, 2]
        assert await b.last_sequence() == last_b
    finally:
        await a.close()
        await b.close()


async def test_publish_denied_on_stream_subjects_fails_fast(
    accounts_server: ServerProcess,
) -> None:
    owner = await JetStreamEventStore.connect(
        stream=STREAM, settings=_settings(accounts_server, user="a", password="pa")
    )
    await owner.close()
    store = await JetStreamEventStore.connect(
        stream=STREAM,
        settings=_settings(accounts_server, user="a_nopub", password="pa"),
        retry_for=FAST + 1,
    )
    try:
        before = await store.last_sequence()
        t0 = time.monotonic()
        with pytest.raises(PermissionDeniedError) as err:
            await store.append(f"{STREAM}.order.o-2", [AuthNoted()])
        elapsed = time.monotonic() - t0
        assert "tenant.order.o-2" in str(err.value)
        assert elapsed < FAST, f"the permission violation took {elapsed:.1f}s to surface"
        assert await store.last_sequence() == before
    finally:
        await store.close()


async def test_js_api_denied_fails_fast_at_connect(accounts_server: ServerProcess) -> None:
    t0 = time.monotonic()
    with pytest.raises(PermissionDeniedError) as err:
        await asyncio.wait_for(
            JetStreamEventStore.connect(
                stream=STREAM, settings=_settings(accounts_server, user="a_nojs", password="pa")
            ),
            15,
        )
    elapsed = time.monotonic() - t0
    assert "$JS.API" in str(err.value)
    assert elapsed < FAST, f"the permission violation took {elapsed:.1f}s to surface"


async def test_wrong_password_is_a_clear_error(accounts_server: ServerProcess) -> None:
    with pytest.raises((PermissionDeniedError, StoreUnavailableError)) as err:
        await _connect_or_fail(
            stream=STREAM, settings=_settings(accounts_server, user="a", password="wrong")
        )
    assert "authorization" in str(err.value).lower()


# ---------------------------------------------------------------------- token, nkey, creds


async def test_token_auth(tmp_path: Path) -> None:
    srv = _server(tmp_path / "srv", 'authorization { token: "s3cret-token" }')
    try:
        store = await JetStreamEventStore.connect(
            stream=STREAM,
            settings=Settings.from_env(
                {"EVENTKIT_NATS_URL": srv.url, "EVENTKIT_TOKEN": "s3cret-token"}
            ),
        )
        async with store:
            assert await store.append(f"{STREAM}.t.1", [AuthNoted()]) == 1
    finally:
        srv.stop()


async def test_wrong_token_is_a_clear_error(tmp_path: Path) -> None:
    srv = _server(tmp_path / "srv", 'authorization { token: "s3cret-token" }')
    try:
        with pytest.raises((PermissionDeniedError, StoreUnavailableError)):
            await _connect_or_fail(url=srv.url, stream=STREAM, token="wrong")
    finally:
        srv.stop()


def _nkey_user(tmp_path: Path) -> tuple[str, Path]:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    tmp_path.mkdir(parents=True, exist_ok=True)
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed + b"\n")
    seed_file.chmod(0o600)
    return public, seed_file


async def test_nkey_seed_file_auth(tmp_path: Path) -> None:
    public, seed_file = _nkey_user(tmp_path)
    srv = _server(tmp_path / "srv", f'authorization {{ users: [{{ nkey: "{public}" }}] }}')
    try:
        env = {"EVENTKIT_NATS_URL": srv.url, "EVENTKIT_NKEY": str(seed_file)}
        store = await JetStreamEventStore.connect(stream=STREAM, settings=Settings.from_env(env))
        async with store:
            assert await store.append(f"{STREAM}.n.1", [AuthNoted()]) == 1
            assert len(await store.read(f"{STREAM}.n.1")) == 1
    finally:
        srv.stop()


async def test_unknown_nkey_is_a_clear_error(tmp_path: Path) -> None:
    public, _ = _nkey_user(tmp_path)
    _, other_seed = _nkey_user(tmp_path / "other")
    srv = _server(tmp_path / "srv", f'authorization {{ users: [{{ nkey: "{public}" }}] }}')
    try:
        env = {"EVENTKIT_NATS_URL": srv.url, "EVENTKIT_NKEY": str(other_seed)}
        with pytest.raises((PermissionDeniedError, StoreUnavailableError)):
            await _connect_or_fail(stream=STREAM, settings=Settings.from_env(env))
    finally:
        srv.stop()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _keypair(prefix: int) -> tuple[Any, bytes, str]:
    seed = nkeys.encode_seed(os.urandom(32), prefix)
    pair = nkeys.from_seed(bytearray(seed))
    return pair, seed, pair.public_key.decode()


def _jwt(signer: Any, issuer: str, subject: str, name: str, claims: dict[str, Any]) -> str:
    """A NATS JWT (v2) signed with an nkey: what `nsc` makes for operators, accounts, users."""
    body: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer,
        "name": name,
        "sub": subject,
        "nats": {**claims, "version": 2},
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = _b64(json.dumps(body).encode())
    return f"{head}.{payload}.{_b64(signer.sign(f'{head}.{payload}'.encode()))}"


def _operator_setup(tmp_path: Path) -> tuple[str, Path, Path]:
    """Decentralised auth: the server config (operator, memory resolver), good and bad creds."""
    op, _, op_pub = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    acc, _, acc_pub = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    stranger, _, stranger_pub = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)  # not known to the server
    _, _, sys_pub = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    limits = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1}
    limits |= {"wildcards": True, "conn": -1, "leaf": -1}
    js = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    account = _jwt(op, op_pub, acc_pub, "A", {"type": "account", "limits": limits | js})
    system = _jwt(op, op_pub, sys_pub, "SYS", {"type": "account", "limits": limits})
    config = (
        f'operator: "{_jwt(op, op_pub, op_pub, "op", {"type": "operator"})}"\n'
        f"system_account: {sys_pub}\n"
        "resolver: MEMORY\n"
        f'resolver_preload: {{\n  {acc_pub}: "{account}"\n  {sys_pub}: "{system}"\n}}\n'
    )
    files = []
    for signer, issuer in ((acc, acc_pub), (stranger, stranger_pub)):
        _, seed, user_pub = _keypair(nkeys.PREFIX_BYTE_USER)
        claims = {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}
        user = _jwt(signer, issuer, user_pub, "u", claims)
        creds = tmp_path / f"{issuer[:8]}.creds"
        creds.write_text(
            f"-----BEGIN NATS USER JWT-----\n{user}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed.decode()}\n------END USER NKEY SEED------\n"
        )
        files.append(creds)
    return config, files[0], files[1]


async def test_creds_file_auth_with_operator_jwts(tmp_path: Path) -> None:
    config, good, bad = _operator_setup(tmp_path)
    srv = _server(tmp_path / "srv", config)
    try:
        env = {"EVENTKIT_NATS_URL": srv.url, "EVENTKIT_CREDS": str(good)}
        store = await JetStreamEventStore.connect(stream=STREAM, settings=Settings.from_env(env))
        async with store:
            assert await store.append(f"{STREAM}.c.1", [AuthNoted(n=7)]) == 1
            assert [r.event.n for r in await store.read(f"{STREAM}.c.1")] == [7]
        # a user of an account the operator never signed is refused, at once
        env["EVENTKIT_CREDS"] = str(bad)
        t0 = time.monotonic()
        with pytest.raises(PermissionDeniedError) as err:
            await _connect_or_fail(stream=STREAM, settings=Settings.from_env(env))
        assert "EVENTKIT_CREDS" in str(err.value) and time.monotonic() - t0 < FAST
    finally:
        srv.stop()


# ---------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("eventkit-client")
    other_ca = trustme.CA()
    files = {
        "ca": d / "ca.pem",
        "other_ca": d / "other-ca.pem",
        "server_cert": d / "server.pem",
        "server_key": d / "server.key",
        "client_cert": d / "client.pem",
        "client_key": d / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    other_ca.cert_pem.write_to_path(str(files["other_ca"]))
    server_cert.cert_chain_pems[0].write_to_path(str(files["server_cert"]))
    server_cert.private_key_pem.write_to_path(str(files["server_key"]))
    client_cert.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    client_cert.private_key_pem.write_to_path(str(files["client_key"]))
    return files


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]
) -> Iterator[ServerProcess]:
    config = (
        "tls {\n"
        f'  cert_file: "{pki["server_cert"]}"\n'
        f'  key_file: "{pki["server_key"]}"\n'
        f'  ca_file: "{pki["ca"]}"\n'
        "  verify: true\n"
        "  timeout: 2\n"
        "}\n"
    )
    srv = _server(tmp_path_factory.mktemp("tls"), config)
    try:
        yield srv
    finally:
        srv.stop()


def _tls_env(srv: ServerProcess, pki: dict[str, Path], **override: str) -> dict[str, str]:
    env = {
        "EVENTKIT_NATS_URL": f"tls://127.0.0.1:{srv.port}",
        "EVENTKIT_TLS_CA": str(pki["ca"]),
        "EVENTKIT_TLS_CERT": str(pki["client_cert"]),
        "EVENTKIT_TLS_KEY": str(pki["client_key"]),
    }
    env.update(override)
    return {k: v for k, v in env.items() if v}


async def test_tls_with_ca_and_client_certificate(
    tls_server: ServerProcess, pki: dict[str, Path]
) -> None:
    settings = Settings.from_env(_tls_env(tls_server, pki))
    store = await JetStreamEventStore.connect(stream=STREAM, settings=settings)
    async with store:
        seq = await store.append(f"{STREAM}.tls.1", [AuthNoted(n=7)])
        assert [r.event.n for r in await store.read(f"{STREAM}.tls.1")] == [7]
        assert seq == await store.last_sequence()


async def test_tls_with_settings_object(tls_server: ServerProcess, pki: dict[str, Path]) -> None:
    settings = Settings(
        nats_urls=(f"tls://127.0.0.1:{tls_server.port}",),
        tls_ca=pki["ca"],
        tls_cert=pki["client_cert"],
        tls_key=pki["client_key"],
    )
    store = await JetStreamEventStore.connect(stream=STREAM, settings=settings)
    async with store:
        assert await store.last_sequence() >= 0


@pytest.mark.parametrize(
    "override",
    [
        {"EVENTKIT_TLS_CERT": "", "EVENTKIT_TLS_KEY": ""},  # server demands a client certificate
        {"EVENTKIT_TLS_CA": "other_ca"},  # the server's certificate is not trusted
    ],
    ids=["no-client-cert", "untrusted-server"],
)
async def test_tls_failures_are_clear(
    tls_server: ServerProcess, pki: dict[str, Path], override: dict[str, str]
) -> None:
    resolved = {k: (str(pki[v]) if v in pki else v) for k, v in override.items()}
    settings = Settings.from_env(_tls_env(tls_server, pki, **resolved))
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        await _connect_or_fail(stream=STREAM, settings=settings)
    assert "cannot connect" in str(err.value)
    assert time.monotonic() - t0 < 10
