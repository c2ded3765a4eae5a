"""The values of settings: environment variable names, parsing and the checks of each kind.

Each check raises :class:`~eventkit.errors.ConfigError` naming the variable and the fix.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from eventkit.errors import ConfigError, InvalidSubjectError

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
    "server_sync": "EVENTKIT_SERVER_SYNC",
}

DEFAULT_HOME = Path(".eventkit")
MAX_REPLICAS = 5
MASTER_KEY_BYTES = 32
MIN_SERVER_KEY_LENGTH = 16

SYNC_ALWAYS = "always"
"""The embedded server's default: fsync every write before acknowledging it."""
SYNC_INTERVAL = re.compile(r"^(\d+(\.\d+)?)(ms|s|m|h)$")

URL_SCHEMES = ("nats", "tls", "ws", "wss")
APP_TARGET = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
KEY_HINT = "generate one with: openssl rand -base64 32"


STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A stream name: what the server accepts and eventkit's subjects can start with."""


def validate_stream_name(name: str) -> str:
    """A stream name: letters, digits, '-' and '_', at most 64 characters (here, below both the
    settings that name a stream and the store that opens it)."""
    if not isinstance(name, str) or not STREAM_NAME.match(name):
        raise InvalidSubjectError(
            f"stream name {name!r} is invalid: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def env_name(field_name: str) -> str:
    return ENV_VARS[field_name]


# ---------------------------------------------------------------------- parsing helpers


def parse_value(name: str, raw: str, *, where: str) -> Any:
    """Turn one raw string into the field's type; ``where`` names its source in errors."""
    text = raw.strip()
    if name == "nats_urls":
        return split_urls(text)
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
        return decode_master_key(text)
    if name == "server_sync":
        return text.lower()
    if name in ("password", "token", "server_store_key"):
        return raw  # secrets are taken verbatim
    return text


def shown(name: str, raw: str) -> str:
    if name in ("password", "token", "master_key", "server_store_key"):
        return "***"
    if name == "database_url":
        return redact_url(raw)
    return repr(raw)


def split_urls(text: str | Iterable[str]) -> tuple[str, ...]:
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if p.strip())


def decode_master_key(text: str) -> bytes:
    var = env_name("master_key")
    try:
        if "-" in text or "_" in text:
            key = base64.urlsafe_b64decode(text.encode("ascii"))
        else:
            key = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ConfigError(f"{var} is not valid base64; {KEY_HINT}") from None
    return key  # its length is checked with the other settings


def check_nats_url(url: str) -> None:
    var = env_name("nats_urls")
    example = "e.g. nats://127.0.0.1:4222 or tls://nats.example.com:4222"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"{var}: {url!r} is not a valid URL ({e}); {example}") from None
    if parts.scheme not in URL_SCHEMES:
        raise ConfigError(
            f"{var}: {url!r} must start with nats://, tls://, ws:// or wss://; {example}"
        )
    if not parts.hostname:
        raise ConfigError(f"{var}: {url!r} has no host; {example}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{var}: {redact_url(url)!r} carries credentials in the URL; put them in "
            f"EVENTKIT_USER/EVENTKIT_PASSWORD or EVENTKIT_TOKEN so they stay out of logs"
        )
    if port == 0:
        raise ConfigError(f"{var}: {url!r} has port 0; {example}")


def check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(
            f"{env_name('database_url')}={redact_url(url)!r} is not a database URL ({e}); write "
            f"e.g. postgresql+psycopg://user:pass@host/db or sqlite:///path/to/file.db"
        ) from None


def check_file(name: str, path: Path | None) -> None:
    if path is None:
        return
    if not path.exists():
        raise ConfigError(
            f"{env_name(name)}={str(path)!r} does not exist; fix the path or unset it"
        )
    if not path.is_file():
        raise ConfigError(f"{env_name(name)}={str(path)!r} is not a file; point it at the file")
    if not os.access(path, os.R_OK):
        raise ConfigError(
            f"{env_name(name)}={str(path)!r} is not readable by this user; fix its permissions"
        )


def check_server_key(key: str) -> None:
    var = env_name("server_store_key")
    if len(key) < MIN_SERVER_KEY_LENGTH:
        raise ConfigError(
            f"{var} is {len(key)} characters, too short; use at least {MIN_SERVER_KEY_LENGTH}: "
            f"{KEY_HINT}"
        )
    if any(c in key for c in '"\\') or not key.isprintable():
        raise ConfigError(
            f"{var} contains quotes, backslashes or control characters, which the server's "
            f"config cannot hold; {KEY_HINT}"
        )


def check_server_sync(value: str) -> None:
    """``always``, or an interval nats-server understands (``10s``, ``2m``, ``500ms``)."""
    var = env_name("server_sync")
    if value == SYNC_ALWAYS:
        return
    m = SYNC_INTERVAL.match(value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(
            f"{var}={value!r} is neither 'always' nor an interval like '10s' or '2m'; use "
            f"'always' (the default: every acknowledged append is on disk) or, accepting that a "
            f"power loss loses the appends acknowledged within it, an interval such as '2m'"
        )


def redact_url(url: str) -> str:
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


__all__ = [
    "APP_TARGET",
    "DEFAULT_HOME",
    "ENV_VARS",
    "KEY_HINT",
    "MASTER_KEY_BYTES",
    "MAX_REPLICAS",
    "SYNC_ALWAYS",
    "check_database_url",
    "check_file",
    "check_nats_url",
    "check_server_key",
    "check_server_sync",
    "env_name",
    "parse_value",
    "redact_url",
    "shown",
    "split_urls",
]
