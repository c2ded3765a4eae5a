"""Settings read once from ``EVENTKIT_*`` environment variables, with CLI flags on top.

Everything is validated when the settings are built, so a bad value fails at start with the
variable's name and the fix, not minutes later inside a connection attempt::

    settings = Settings.from_env()                      # os.environ
    settings = Settings.from_env(stream="bank")         # a CLI flag wins over EVENTKIT_STREAM
    nc = await nats.connect(**settings.nats_connect_options())

Secrets (password, token, keys, the database URL) never appear in ``repr``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eventkit.config.values import (
    APP_TARGET,
    DEFAULT_HOME,
    ENV_VARS,
    KEY_HINT,
    MASTER_KEY_BYTES,
    MAX_REPLICAS,
    SYNC_ALWAYS,
    check_database_url,
    check_file,
    check_nats_url,
    check_server_key,
    check_server_sync,
    env_name,
    parse_value,
    redact_url,
    shown,
    validate_stream_name,
)
from eventkit.errors import ConfigError, InvalidSubjectError

ErrorCallback = Callable[[Exception], Awaitable[None]]


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
    server_sync: str = SYNC_ALWAYS
    """EVENTKIT_SERVER_SYNC: how often the embedded server fsyncs its store. ``always`` (the
    default) fsyncs before every acknowledgement; an interval such as ``2m`` (nats-server's own
    default) is faster and loses what was acknowledged within it at a power loss."""

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
                values[name] = parse_value(name, raw, where=f"{var}={shown(name, raw)}")
        for name, value in overrides.items():
            if value is None:
                continue
            where = f"{name} (overrides {ENV_VARS[name]})"
            values[name] = (
                parse_value(name, value, where=where) if isinstance(value, str) else value
            )
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
                out[f.name] = redact_url(value)
            elif f.name == "nats_urls":
                out[f.name] = ",".join(value)
            else:
                out[f.name] = str(value)
        return out

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        for url in self.nats_urls:
            check_nats_url(url)
        if self.database_url is not None:
            check_database_url(self.database_url)
        if self.app is not None and not APP_TARGET.match(self.app):
            raise ConfigError(
                f"{env_name('app')}={self.app!r} is not a 'module:attr' target; "
                f"write it like 'samples.bank.app:app'"
            )
        if self.stream is not None:
            try:
                validate_stream_name(self.stream)
            except InvalidSubjectError as e:
                raise ConfigError(f"{env_name('stream')}: {e}") from e
        for name in ("creds_file", "nkey_seed_file", "tls_ca", "tls_cert", "tls_key"):
            check_file(name, getattr(self, name))
        self._check_auth()
        if (self.tls_cert is None) != (self.tls_key is None):
            have, missing = (
                ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            )
            raise ConfigError(
                f"{env_name(have)} is set but {env_name(missing)} is not: a client certificate "
                f"needs both the certificate and its private key; set {env_name(missing)} too"
            )
        self.ssl_context()  # a bad PEM fails now, not at the first connect
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int):
            raise ConfigError(
                f"{env_name('replicas')}={self.replicas!r} is not a whole number; use 1 to "
                f"{MAX_REPLICAS}"
            )
        if not 1 <= self.replicas <= MAX_REPLICAS:
            raise ConfigError(
                f"{env_name('replicas')}={self.replicas} is out of range: JetStream streams have 1 "
                f"to {MAX_REPLICAS} replicas (3 is the usual choice on a cluster)"
            )
        if self.master_key is not None and len(self.master_key) != MASTER_KEY_BYTES:
            raise ConfigError(
                f"{env_name('master_key')} decodes to {len(self.master_key)} bytes, expected "
                f"{MASTER_KEY_BYTES}; {KEY_HINT}"
            )
        if self.server_store_key is not None:
            check_server_key(self.server_store_key)
        check_server_sync(self.server_sync)
        timeout = self.connect_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(
                f"{env_name('connect_timeout')}={timeout!r} must be a positive number of seconds, "
                f"e.g. 5 or 2.5"
            )

    def _check_auth(self) -> None:
        if self.user is not None and self.password is None:
            raise ConfigError(
                f"{env_name('user')} is set but {env_name('password')} is not; set both "
                f"(or use {env_name('token')} or {env_name('creds_file')} instead)"
            )
        if self.password is not None and self.user is None:
            raise ConfigError(
                f"{env_name('password')} is set but {env_name('user')} is not; set both"
            )
        if self.token is not None and self.user is not None:
            raise ConfigError(
                f"{env_name('token')} and {env_name('user')}/{env_name('password')} are both "
                f"set; a connection authenticates one way: unset one of them"
            )
        if self.creds_file is not None and self.nkey_seed_file is not None:
            raise ConfigError(
                f"{env_name('creds_file')} and {env_name('nkey_seed_file')} are both set; a "
                f".creds file already holds the nkey seed: unset {env_name('nkey_seed_file')}"
            )
        keyed = [n for n in ("creds_file", "nkey_seed_file") if getattr(self, n) is not None]
        other = [n for n in ("user", "token") if getattr(self, n) is not None]
        if keyed and other:
            raise ConfigError(
                f"{env_name(keyed[0])} and {env_name(other[0])} are both set; a connection "
                f"authenticates one way: unset one of them"
            )


__all__ = ["DEFAULT_HOME", "ENV_VARS", "ErrorCallback", "Settings"]
