"""Settings read once from ``EVENTKIT_*`` environment variables, with CLI flags on top.

Everything is validated when the settings are built, so a bad value fails at start with the
variable's name and the fix, not minutes later inside a connection attempt::

    settings = Settings.from_env()                      # os.environ
    settings = Settings.from_env(stream="bank")         # a CLI flag wins over EVENTKIT_STREAM
    nc = await nats.connect(**settings.nats_connect_options())

Secrets (password, token, keys, the database URL) never appear in ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eventkit.errors import ConfigError, InvalidSubjectError
from eventkit.store.subjects import validate_stream_name

#: Environment variable of each field.
ENV_VARS: dict[str, str] = {
    "nats_urls": "EVENTKIT_NATS_URL",
    "database_url": "EVENTKIT_DATABASE_URL",
    "home": "EVENTKIT_HOME",
    "app": "EVENTKIT_APP",
    "stream": "EVENTKIT_STREAM",
    "creds_file": "EVENTKIT_CREDS",
    "nkey_seed_file": "EVENTKIT_NKEY",
    "user": "EVENTKIT_USER",
    "password": "EVENTKIT_PASSWORD",
    "token": "EVENTKIT_TOKEN",
    "tls_ca": "EVENTKIT_TLS_CA",
    "tls_cert": "EVENTKIT_TLS_CERT",
    "tls_key": "EVENTKIT_TLS_KEY",
    "replicas": "EVENTKIT_REPLICAS",
    "master_key": "EVENTKIT_MASTER_KEY",
    "server_store_key": "EVENTKIT_SERVER_KEY",
    "connect_timeout": "EVENTKIT_CONNECT_TIMEOUT",
}

DEFAULT_HOME = Path(".eventkit")
MAX_REPLICAS = 5
MASTER_KEY_BYTES = 32
MIN_SERVER_KEY_LENGTH = 16

_URL_SCHEMES = ("nats", "tls", "ws", "wss")
_APP_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_KEY_HINT = "generate one with: openssl rand -base64 32"

ErrorCallback = Callable[[Exception], Awaitable[None]]


def _name(field_name: str) -> str:
    return ENV_VARS[field_name]


@dataclass(frozen=True, slots=True)
class Settings:
    """eventkit's configuration: one frozen object, validated when built.

    Build it with :meth:`from_env`; constructing it directly validates the same way::

        Settings.from_env({"EVENTKIT_NATS_URL": "nats://n1:4222,nats://n2:4222"})
        Settings(nats_urls=("nats://127.0.0.1:4222",), stream="bank")
    """

    nats_urls: tuple[str, ...] = ()
    """EVENTKIT_NATS_URL (comma-separated). Empty: use the embedded nats-server."""
    database_url: str | None = field(default=None, repr=False)
    """EVENTKIT_DATABASE_URL. None: SQLite at ``<home>/eventkit.db``."""
    home: Path = DEFAULT_HOME
    """EVENTKIT_HOME: the embedded server's files and the default SQLite database."""
    app: str | None = None
    """EVENTKIT_APP: the ``module:attr`` of the :class:`App` the CLI loads."""
    stream: str | None = None
    """EVENTKIT_STREAM: the JetStream stream name."""
    creds_file: Path | None = None
    """EVENTKIT_CREDS: a NATS ``.creds`` file (JWT + nkey seed)."""
    nkey_seed_file: Path | None = None
    """EVENTKIT_NKEY: a file holding an nkey seed."""
    user: str | None = None
    """EVENTKIT_USER (needs EVENTKIT_PASSWORD)."""
    password: str | None = field(default=None, repr=False)
    """EVENTKIT_PASSWORD."""
    token: str | None = field(default=None, repr=False)
    """EVENTKIT_TOKEN."""
    tls_ca: Path | None = None
    """EVENTKIT_TLS_CA: CA bundle to verify the server."""
    tls_cert: Path | None = None
    """EVENTKIT_TLS_CERT: client certificate (needs EVENTKIT_TLS_KEY)."""
    tls_key: Path | None = None
    """EVENTKIT_TLS_KEY: client certificate's private key (needs EVENTKIT_TLS_CERT)."""
    replicas: int = 1
    """EVENTKIT_REPLICAS: stream replicas, 1..5."""
    master_key: bytes | None = field(default=None, repr=False)
    """EVENTKIT_MASTER_KEY: base64 of 32 bytes; wraps the per-subject keys (crypto-shredding)."""
    server_store_key: str | None = field(default=None, repr=False)
    """EVENTKIT_SERVER_KEY: encryption-at-rest key of the embedded server's store."""
    connect_timeout: float = 5.0
    """EVENTKIT_CONNECT_TIMEOUT: seconds."""

    def __post_init__(self) -> None:
        # Normalise (frozen: through object.__setattr__), then check every rule.
        set_ = object.__setattr__
        set_(self, "nats_urls", tuple(self.nats_urls))
        set_(self, "home", Path(self.home).expanduser().absolute())
        for name in ("creds_file", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, Path(value).expanduser().absolute())
        self._validate()

    # ------------------------------------------------------------------ building

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``EVENTKIT_*`` variables from ``env`` (default ``os.environ``).

        ``overrides`` are field values from CLI flags; they win over the environment, and
        ``None`` means "flag not given". Strings are parsed like the environment variable.

        Example::

            Settings.from_env({"EVENTKIT_REPLICAS": "3"}, stream="bank").replicas  # 3
        """
        source = os.environ if env is None else env
        unknown = sorted(set(overrides) - set(ENV_VARS))
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)}; valid names: {', '.join(ENV_VARS)}"
            )
        values: dict[str, Any] = {}
        for name, var in ENV_VARS.items():
            raw = source.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = _parse(name, raw, where=f"{var}={_shown(name, raw)}")
        for name, value in overrides.items():
            if value is None:
                continue
            where = f"{name} (overrides {ENV_VARS[name]})"
            values[name] = _parse(name, value, where=where) if isinstance(value, str) else value
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, validated again.

        Example::

            settings.replace(stream="audit")
        """
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ derived values

    @property
    def uses_embedded_server(self) -> bool:
        """True when no EVENTKIT_NATS_URL is set: eventkit runs its own nats-server."""
        return not self.nats_urls

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: EVENTKIT_DATABASE_URL, else ``sqlite:///<home>/eventkit.db``.

        Example::

            Settings(home=Path("/srv/x")).resolved_database_url  # 'sqlite:////srv/x/eventkit.db'
        """
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{self.home / 'eventkit.db'}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context from EVENTKIT_TLS_CA/CERT/KEY, or None when none is set."""
        if self.tls_ca is None and self.tls_cert is None:
            return None
        try:
            ctx = ssl.create_default_context(
                ssl.Purpose.SERVER_AUTH,
                cafile=str(self.tls_ca) if self.tls_ca is not None else None,
            )
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(
                f"EVENTKIT_TLS_CA={self.tls_ca} is not a readable PEM CA bundle ({e}); "
                f"point it at the CA certificate that signed the server's certificate"
            ) from e
        if self.tls_cert is not None and self.tls_key is not None:
            try:
                ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
            except (ssl.SSLError, OSError) as e:
                raise ConfigError(
                    f"EVENTKIT_TLS_CERT={self.tls_cert} / EVENTKIT_TLS_KEY={self.tls_key} cannot "
                    f"be loaded ({e}); give a PEM certificate and its matching unencrypted "
                    f"private key"
                ) from e
        return ctx

    def nats_connect_options(
        self,
        *,
        servers: Sequence[str] | None = None,
        error_cb: ErrorCallback | None = None,
        name: str = "eventkit",
    ) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect(...)``.

        ``servers`` replaces EVENTKIT_NATS_URL (the store passes the embedded server's URL).
        With neither, there is no ``servers`` key: the caller starts the embedded server
        (:func:`eventkit.server.ensure_running`) and adds its URL.
        ``error_cb`` receives asynchronous errors such as permission violations.

        Example::

            nc = await nats.connect(**settings.nats_connect_options(error_cb=on_error))
        """
        urls = list(servers) if servers is not None else list(self.nats_urls)
        options: dict[str, Any] = {
            "name": name,
            "connect_timeout": self.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.25,
        }
        if urls:
            options["servers"] = urls
        if error_cb is not None:
            options["error_cb"] = error_cb
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password
        if self.token is not None:
            options["token"] = self.token
        tls = self.ssl_context()
        if tls is not None:
            options["tls"] = tls
        return options

    def redacted(self) -> dict[str, str | None]:
        """Every setting as text, secrets replaced by ``'***'``: for ``eventkit status``."""
        secret = {"password", "token", "master_key", "server_store_key"}
        out: dict[str, str | None] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                out[f.name] = None
            elif f.name in secret:
                out[f.name] = "***"
            elif f.name == "database_url":
                out[f.name] = _redact_url(value)
            elif f.name == "nats_urls":
                out[f.name] = ",".join(value)
            else:
                out[f.name] = str(value)
        return out

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        for url in self.nats_urls:
            _check_nats_url(url)
        if self.database_url is not None:
            _check_database_url(self.database_url)
        if self.app is not None and not _APP_TARGET.match(self.app):
            raise ConfigError(
                f"{_name('app')}={self.app!r} is not a 'module:attr' target; "
                f"write it like 'samples.bank.app:app'"
            )
        if self.stream is not None:
            try:
                validate_stream_name(self.stream)
            except InvalidSubjectError as e:
                raise ConfigError(f"{_name('stream')}: {e}") from e
        for name in ("creds_file", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key"):
            _check_file(name, getattr(self, name))
        self._check_auth()
        if (self.tls_cert is None) != (self.tls_key is None):
            have, missing = (
                ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            )
            raise ConfigError(
                f"{_name(have)} is set but {_name(missing)} is not: a client certificate needs "
                f"both the certificate and its private key; set {_name(missing)} too"
            )
        self.ssl_context()  # a bad PEM fails now, not at the first connect
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int):
            raise ConfigError(
                f"{_name('replicas')}={self.replicas!r} is not a whole number; use 1 to "
                f"{MAX_REPLICAS}"
            )
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(
                f"{_name('replicas')}={self.replicas} is out of range: JetStream streams have 1 "
                f"to {MAX_REPLICAS} replicas (3 is the usual choice on a cluster)"
            )
        if self.master_key is not None and len(self.master_key) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"{_name('master_key')} decodes to {len(self.master_key)} bytes, expected "
                f"{MASTER_KEY_BYTES}; {_KEY_HINT}"
            )
        if self.server_store_key is not None:
            _check_server_key(self.server_store_key)
        timeout = self.connect_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"{_name('connect_timeout')}={timeout!r} must be a positive number of seconds, "
                f"e.g. 5 or 2.5"
            )

    def _check_auth(self) -> None:
        if self.user is not None and self.password is None:
            raise ConfigError(
                f"{_name('user')} is set but {_name('password')} is not; set both "
                f"(or use {_name('token')} or {_name('creds_file')} instead)"
            )
        if self.password is not None and self.user is None:
            raise ConfigError(f"{_name('password')} is set but {_name('user')} is not; set both")
        if self.token is not None and self.user is not None:
            raise ConfigError(
                f"{_name('token')} and {_name('user')}/{_name('password')} are both set; a "
                f"connection authenticates one way: unset one of them"
            )
        if self.creds_file is not None and self.nkey_seed_file is not None:
            raise ConfigError(
                f"{_name('creds_file')} and {_name('nkey_seed_file')} are both set; a .creds file "
                f"already holds the nkey seed: unset {_name('nkey_seed_file')}"
            )
        keyed = [n for n in ("creds_file", "nkey_seed_file") if getattr(self, n) is not None]
        other = [n for n in ("user", "token") if getattr(self, n) is not None]
        if keyed and other:
            raise ConfigError(
                f"{_name(keyed[0])} and {_name(other[0])} are both set; a connection "
                f"authenticates one way: unset one of them"
            )


# ---------------------------------------------------------------------- parsing helpers


def _parse(name: str, raw: str, *, where: str) -> Any:
    """Turn one raw string into the field's type; ``where`` names its source in errors."""
    text = raw.strip()
    if name == "nats_urls":
        return _split_urls(text)
    if name in ("home", "creds_file", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key"):
        return Path(text)
    if name == "replicas":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{where} is not a whole number; use 1 to {MAX_REPLICAS}") from None
    if name == "connect_timeout":
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{where} is not a number; give seconds, e.g. 5 or 2.5") from None
        return value
    if name == "master_key":
        return _decode_master_key(text)
    if name in ("password", "token", "server_store_key"):
        return raw  # secrets are taken verbatim
    return text


def _shown(name: str, raw: str) -> str:
    if name in ("password", "token", "master_key", "server_store_key"):
        return "***"
    if name == "database_url":
        return _redact_url(raw)
    return repr(raw)


def _split_urls(text: str | Iterable[str]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if p.strip())


def _decode_master_key(text: str) -> bytes:
    var = _name("master_key")
    try:
        if "-" in text or "_" in text:
            key = base64.urlsafe_b64decode(text.encode("ascii"))
        else:
            key = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigError(f"{var} is not valid base64; {_KEY_HINT}") from None
    return key  # its length is checked with the other settings


def _check_nats_url(url: str) -> None:
    var = _name("nats_urls")
    example = "e.g. nats://127.0.0.1:4222 or tls://nats.example.com:4222"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{var}: {url!r} is not a valid URL ({e}); {example}") from None
    if parts.scheme not in _URL_SCHEMES:
        raise ConfigError(
            f"{var}: {url!r} must start with nats://, tls://, ws:// or wss://; {example}"
        )
    if not parts.hostname:
        raise ConfigError(f"{var}: {url!r} has no host; {example}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{var}: {_redact_url(url)!r} carries credentials in the URL; put them in "
            f"EVENTKIT_USER/EVENTKIT_PASSWORD or EVENTKIT_TOKEN so they stay out of logs"
        )
    if port == 0:
        raise ConfigError(f"{var}: {url!r} has port 0; {example}")


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(
            f"{_name('database_url')}={_redact_url(url)!r} is not a database URL ({e}); write "
            f"e.g. postgresql+psycopg://user:pass@host/db or sqlite:///path/to/file.db"
        ) from None


def _check_file(name: str, path: Path | None) -> None:
    if path is None:
        return
    if not path.exists():
        raise ConfigError(f"{_name(name)}={str(path)!r} does not exist; fix the path or unset it")
    if not path.is_file():
        raise ConfigError(f"{_name(name)}={str(path)!r} is not a file; point it at the file")
    if not os.access(path, os.R_OK):
        raise ConfigError(
            f"{_name(name)}={str(path)!r} is not readable by this user; fix its permissions"
        )


def _check_server_key(key: str) -> None:
    var = _name("server_store_key")
    if len(key) < MIN_SERVER_KEY_LENGTH:
        raise ConfigError(
            f"{var} is {len(key)} characters, too short; use at least {MIN_SERVER_KEY_LENGTH}: "
            f"{_KEY_HINT}"
        )
    if any(c in key for c in '"\\') or not key.isprintable():
        raise ConfigError(
            f"{var} contains quotes, backslashes or control characters, which the server's "
            f"config cannot hold; {_KEY_HINT}"
        )


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


__all__ = ["ENV_VARS", "Settings"]
