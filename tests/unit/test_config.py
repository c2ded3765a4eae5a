"""Settings: parsing EVENTKIT_* variables, validation with the fix, connect options, no secrets."""

from __future__ import annotations

import base64
import dataclasses
import ssl
from pathlib import Path

import pytest
import trustme

from eventkit.config import ENV_VARS, Settings
from eventkit.errors import ConfigError

KEY32 = base64.b64encode(bytes(range(32))).decode()
SERVER_KEY = "s3cret-server-key-0123456789"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A CA, a client certificate and key (real PEMs), a creds file and an nkey seed file."""
    ca = trustme.CA()
    cert = ca.issue_cert("client.example")
    paths = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
        "creds": tmp_path / "user.creds",
        "nkey": tmp_path / "user.nk",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    paths["creds"].write_text("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n")
    paths["nkey"].write_text("SUAEXAMPLESEED\n")
    return paths


def error_of(env: dict[str, str], **overrides: object) -> str:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, **overrides)
    return str(info.value)


# ------------------------------------------------------------------ defaults and parsing


def test_defaults_use_the_embedded_server_and_sqlite_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.nats_urls == ()
    assert s.uses_embedded_server
    assert s.home == tmp_path / ".eventkit"
    assert s.database_url is None
    assert s.resolved_database_url == f"sqlite:///{tmp_path}/.eventkit/eventkit.db"
    assert s.replicas == 1
    assert s.connect_timeout == 5.0
    assert s.app is None and s.stream is None and s.master_key is None


def test_reads_every_variable(files: dict[str, Path], tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "EVENTKIT_NATS_URL": " nats://n1:4222, tls://n2:4222 ,,ws://n3:8080,wss://n4",
            "EVENTKIT_DATABASE_URL": "postgresql+psycopg://u:pw@db/app",
            "EVENTKIT_HOME": str(tmp_path / "home"),
            "EVENTKIT_APP": "samples.bank.app:app",
            "EVENTKIT_STREAM": "bank",
            "EVENTKIT_CREDS": str(files["creds"]),
            "EVENTKIT_TLS_CA": str(files["ca"]),
            "EVENTKIT_TLS_CERT": str(files["cert"]),
            "EVENTKIT_TLS_KEY": str(files["key"]),
            "EVENTKIT_REPLICAS": "3",
            "EVENTKIT_MASTER_KEY": KEY32,
            "EVENTKIT_SERVER_KEY": SERVER_KEY,
            "EVENTKIT_CONNECT_TIMEOUT": "2.5",
            "UNRELATED": "ignored",
        }
    )
    assert s.nats_urls == ("nats://n1:4222", "tls://n2:4222", "ws://n3:8080", "wss://n4")
    assert s.resolved_database_url == "postgresql+psycopg://u:pw@db/app"
    assert s.home == tmp_path / "home"
    assert s.app == "samples.bank.app:app"
    assert s.stream == "bank"
    assert s.creds_file == files["creds"]
    assert s.replicas == 3
    assert s.master_key == bytes(range(32))
    assert s.server_store_key == SERVER_KEY
    assert s.connect_timeout == 2.5


def test_empty_variables_count_as_unset() -> None:
    s = Settings.from_env({"EVENTKIT_NATS_URL": "", "EVENTKIT_STREAM": "  "})
    assert s.nats_urls == () and s.stream is None


def test_master_key_accepts_urlsafe_base64() -> None:
    key = bytes([251] * 32)
    s = Settings.from_env({"EVENTKIT_MASTER_KEY": base64.urlsafe_b64encode(key).decode()})
    assert s.master_key == key


def test_user_and_password_nkey_and_token_alone_are_valid(files: dict[str, Path]) -> None:
    Settings.from_env({"EVENTKIT_USER": "ada", "EVENTKIT_PASSWORD": "pw"})
    Settings.from_env({"EVENTKIT_TOKEN": "tok"})
    Settings.from_env({"EVENTKIT_NKEY": str(files["nkey"])})


# ------------------------------------------------------------------ overrides


def test_overrides_win_over_the_environment() -> None:
    s = Settings.from_env({"EVENTKIT_STREAM": "bank", "EVENTKIT_REPLICAS": "1"}, stream="audit")
    assert s.stream == "audit" and s.replicas == 1


def test_none_override_means_flag_not_given() -> None:
    assert Settings.from_env({"EVENTKIT_STREAM": "bank"}, stream=None).stream == "bank"


def test_string_overrides_are_parsed_like_the_variable() -> None:
    s = Settings.from_env({}, replicas="3", nats_urls="nats://a:1,nats://b:2", home="x")
    assert s.replicas == 3
    assert s.nats_urls == ("nats://a:1", "nats://b:2")
    assert s.home == Path("x").absolute()


def test_overrides_are_validated() -> None:
    assert "EVENTKIT_REPLICAS" in error_of({}, replicas=9)
    assert "EVENTKIT_REPLICAS" in error_of({}, replicas="many")


def test_unknown_override_is_rejected_with_the_valid_names() -> None:
    message = error_of({}, strem="bank")
    assert "strem" in message and "stream" in message


def test_direct_construction_and_replace_are_validated() -> None:
    with pytest.raises(ConfigError, match="EVENTKIT_REPLICAS"):
        Settings(replicas=0)
    s = Settings(stream="bank")
    assert s.replace(stream="audit").stream == "audit"
    with pytest.raises(ConfigError, match="EVENTKIT_STREAM"):
        s.replace(stream="has space")


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.stream = "x"  # type: ignore[misc]


# ------------------------------------------------------------------ validation errors


@pytest.mark.parametrize(
    "url",
    ["http://n1:4222", "n1:4222", "localhost", "nats://", "nats://n1:99999", "nats://n1:0"],
)
def test_bad_nats_url_names_the_variable_and_the_schemes(url: str) -> None:
    message = error_of({"EVENTKIT_NATS_URL": f"nats://ok:4222,{url}"})
    assert "EVENTKIT_NATS_URL" in message
    assert "nats://" in message  # the example shows the fix


def test_bad_scheme_lists_the_accepted_ones() -> None:
    message = error_of({"EVENTKIT_NATS_URL": "http://n1:4222"})
    assert "tls://" in message and "ws://" in message and "wss://" in message


def test_credentials_inside_a_nats_url_are_refused_without_echoing_them() -> None:
    message = error_of({"EVENTKIT_NATS_URL": "nats://ada:hunter2@n1:4222"})
    assert "EVENTKIT_USER" in message
    assert "hunter2" not in message


def test_bad_database_url() -> None:
    message = error_of({"EVENTKIT_DATABASE_URL": "not a url"})
    assert "EVENTKIT_DATABASE_URL" in message and "postgresql+psycopg://" in message


@pytest.mark.parametrize("target", ["samples.bank.app", "samples/bank:app", ":app", "m:"])
def test_bad_app_target(target: str) -> None:
    message = error_of({"EVENTKIT_APP": target})
    assert "EVENTKIT_APP" in message and "module:attr" in message


def test_bad_stream_name() -> None:
    message = error_of({"EVENTKIT_STREAM": "bank.events"})
    assert "EVENTKIT_STREAM" in message and "letters, digits" in message


@pytest.mark.parametrize(
    "var", ["EVENTKIT_CREDS", "EVENTKIT_NKEY", "EVENTKIT_TLS_CA", "EVENTKIT_TLS_CERT"]
)
def test_missing_file_names_the_variable_and_the_path(
    var: str, tmp_path: Path, files: dict[str, Path]
) -> None:
    missing = tmp_path / "nope.pem"
    env = {var: str(missing)}
    if var == "EVENTKIT_TLS_CERT":
        env["EVENTKIT_TLS_KEY"] = str(files["key"])
    message = error_of(env)
    assert var in message and str(missing) in message and "does not exist" in message


def test_missing_tls_key_file(tmp_path: Path, files: dict[str, Path]) -> None:
    message = error_of(
        {"EVENTKIT_TLS_CERT": str(files["cert"]), "EVENTKIT_TLS_KEY": str(tmp_path / "no.key")}
    )
    assert "EVENTKIT_TLS_KEY" in message and "does not exist" in message


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    assert "is not a file" in error_of({"EVENTKIT_CREDS": str(tmp_path)})


def test_tls_cert_without_key(files: dict[str, Path]) -> None:
    message = error_of({"EVENTKIT_TLS_CERT": str(files["cert"])})
    assert "EVENTKIT_TLS_CERT is set but EVENTKIT_TLS_KEY is not" in message


def test_tls_key_without_cert(files: dict[str, Path]) -> None:
    message = error_of({"EVENTKIT_TLS_KEY": str(files["key"])})
    assert "EVENTKIT_TLS_KEY is set but EVENTKIT_TLS_CERT is not" in message


def test_unreadable_pem_fails_at_settings_time(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    assert "EVENTKIT_TLS_CA" in error_of({"EVENTKIT_TLS_CA": str(bad)})


def test_mismatched_cert_and_key(files: dict[str, Path], tmp_path: Path) -> None:
    other = trustme.CA().issue_cert("other.example")
    other_key = tmp_path / "other.key"
    other.private_key_pem.write_to_path(str(other_key))
    message = error_of(
        {"EVENTKIT_TLS_CERT": str(files["cert"]), "EVENTKIT_TLS_KEY": str(other_key)}
    )
    assert "EVENTKIT_TLS_CERT" in message and "matching" in message


def test_user_without_password() -> None:
    message = error_of({"EVENTKIT_USER": "ada"})
    assert "EVENTKIT_USER is set but EVENTKIT_PASSWORD is not" in message


def test_password_without_user() -> None:
    message = error_of({"EVENTKIT_PASSWORD": "hunter2-password"})
    assert "EVENTKIT_PASSWORD is set but EVENTKIT_USER is not" in message
    assert "hunter2" not in message


def test_token_with_user_and_password() -> None:
    message = error_of({"EVENTKIT_TOKEN": "tok", "EVENTKIT_USER": "ada", "EVENTKIT_PASSWORD": "pw"})
    assert "EVENTKIT_TOKEN" in message and "EVENTKIT_USER" in message and "unset one" in message


def test_creds_with_nkey(files: dict[str, Path]) -> None:
    message = error_of({"EVENTKIT_CREDS": str(files["creds"]), "EVENTKIT_NKEY": str(files["nkey"])})
    assert "EVENTKIT_CREDS and EVENTKIT_NKEY" in message and "unset EVENTKIT_NKEY" in message


def test_creds_with_token(files: dict[str, Path]) -> None:
    message = error_of({"EVENTKIT_CREDS": str(files["creds"]), "EVENTKIT_TOKEN": "tok"})
    assert "EVENTKIT_CREDS and EVENTKIT_TOKEN" in message


@pytest.mark.parametrize("value", ["0", "6", "-1", "99"])
def test_replicas_out_of_range(value: str) -> None:
    message = error_of({"EVENTKIT_REPLICAS": value})
    assert "EVENTKIT_REPLICAS" in message and "1 to 5" in message


@pytest.mark.parametrize("value", ["three", "1.5", "2x"])
def test_replicas_not_a_number(value: str) -> None:
    message = error_of({"EVENTKIT_REPLICAS": value})
    assert "EVENTKIT_REPLICAS" in message and "whole number" in message


def test_master_key_bad_base64_does_not_echo_the_value() -> None:
    message = error_of({"EVENTKIT_MASTER_KEY": "%%%not-base64%%%"})
    assert "EVENTKIT_MASTER_KEY" in message and "base64" in message
    assert "not-base64" not in message
    assert "openssl rand -base64 32" in message


@pytest.mark.parametrize("size", [16, 31, 33, 64])
def test_master_key_wrong_length(size: int) -> None:
    message = error_of({"EVENTKIT_MASTER_KEY": base64.b64encode(b"k" * size).decode()})
    assert f"decodes to {size} bytes, expected 32" in message


def test_master_key_wrong_length_when_constructed_directly() -> None:
    with pytest.raises(ConfigError, match="EVENTKIT_MASTER_KEY"):
        Settings(master_key=b"short")


def test_server_key_too_short() -> None:
    message = error_of({"EVENTKIT_SERVER_KEY": "short"})
    assert "EVENTKIT_SERVER_KEY" in message and "at least 16" in message
    assert "short" not in message.replace("too short", "")


def test_server_key_with_a_quote() -> None:
    message = error_of({"EVENTKIT_SERVER_KEY": 'abcdefgh"ijklmnopq'})
    assert "EVENTKIT_SERVER_KEY" in message and "quotes" in message


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_bad_connect_timeout(value: str) -> None:
    message = error_of({"EVENTKIT_CONNECT_TIMEOUT": value})
    assert "EVENTKIT_CONNECT_TIMEOUT" in message and "seconds" in message


# ------------------------------------------------------------------ connect options


def test_connect_options_defaults() -> None:
    s = Settings.from_env({"EVENTKIT_NATS_URL": "nats://n1:4222,nats://n2:4222"})
    opts = s.nats_connect_options()
    assert opts == {
        "servers": ["nats://n1:4222", "nats://n2:4222"],
        "name": "eventkit",
        "connect_timeout": 5.0,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
    }


def test_connect_options_without_url_leave_servers_to_the_embedded_server() -> None:
    opts = Settings.from_env({}).nats_connect_options()
    assert "servers" not in opts
    opts = Settings.from_env({}).nats_connect_options(servers=["nats://127.0.0.1:5555"])
    assert opts["servers"] == ["nats://127.0.0.1:5555"]


def test_connect_options_user_password_and_error_cb() -> None:
    async def on_error(e: Exception) -> None:
        pass

    s = Settings.from_env(
        {"EVENTKIT_NATS_URL": "nats://n1", "EVENTKIT_USER": "ada", "EVENTKIT_PASSWORD": "pw"}
    )
    opts = s.nats_connect_options(error_cb=on_error, name="worker")
    assert opts["user"] == "ada" and opts["password"] == "pw"
    assert opts["error_cb"] is on_error
    assert opts["name"] == "worker"
    assert "token" not in opts and "tls" not in opts


def test_connect_options_token() -> None:
    opts = Settings.from_env({"EVENTKIT_TOKEN": "tok"}).nats_connect_options()
    assert opts["token"] == "tok" and "user" not in opts


def test_connect_options_creds_and_nkey(files: dict[str, Path]) -> None:
    opts = Settings.from_env({"EVENTKIT_CREDS": str(files["creds"])}).nats_connect_options()
    assert opts["user_credentials"] == str(files["creds"])
    opts = Settings.from_env({"EVENTKIT_NKEY": str(files["nkey"])}).nats_connect_options()
    assert opts["nkeys_seed"] == str(files["nkey"])


def test_connect_options_tls_context(files: dict[str, Path]) -> None:
    s = Settings.from_env(
        {
            "EVENTKIT_NATS_URL": "tls://n1:4222",
            "EVENTKIT_TLS_CA": str(files["ca"]),
            "EVENTKIT_TLS_CERT": str(files["cert"]),
            "EVENTKIT_TLS_KEY": str(files["key"]),
            "EVENTKIT_CONNECT_TIMEOUT": "1.5",
        }
    )
    opts = s.nats_connect_options()
    ctx = opts["tls"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == 1
    assert opts["connect_timeout"] == 1.5


def test_connect_options_ca_only(files: dict[str, Path]) -> None:
    opts = Settings.from_env({"EVENTKIT_TLS_CA": str(files["ca"])}).nats_connect_options()
    assert isinstance(opts["tls"], ssl.SSLContext)


# ------------------------------------------------------------------ secrets


def test_secrets_never_appear_in_repr(files: dict[str, Path]) -> None:
    master = bytes([7] * 32)
    s = Settings.from_env(
        {
            "EVENTKIT_DATABASE_URL": "postgresql+psycopg://app:dbpass-123@db/app",
            "EVENTKIT_USER": "ada",
            "EVENTKIT_PASSWORD": "hunter2-password",
            "EVENTKIT_MASTER_KEY": base64.b64encode(master).decode(),
            "EVENTKIT_SERVER_KEY": SERVER_KEY,
        }
    )
    t = Settings.from_env({"EVENTKIT_TOKEN": "tok-secret-987"})
    text = repr(s) + str(s) + repr(t)
    for secret in ("dbpass-123", "hunter2-password", SERVER_KEY, "tok-secret-987"):
        assert secret not in text
    assert repr(master) not in text and base64.b64encode(master).decode() not in text
    assert "ada" in repr(s)  # non-secrets are still shown


def test_redacted_masks_secrets_but_shows_the_rest() -> None:
    s = Settings.from_env(
        {
            "EVENTKIT_DATABASE_URL": "postgresql+psycopg://app:dbpass-123@db/app",
            "EVENTKIT_TOKEN": "tok-secret-987",
            "EVENTKIT_STREAM": "bank",
        }
    )
    shown = s.redacted()
    assert shown["token"] == "***"
    assert shown["stream"] == "bank"
    assert shown["database_url"] == "postgresql+psycopg://app:***@db/app"
    assert "dbpass-123" not in str(shown) and "tok-secret-987" not in str(shown)


def test_every_field_has_an_environment_variable() -> None:
    assert {f.name for f in dataclasses.fields(Settings)} == set(ENV_VARS)
