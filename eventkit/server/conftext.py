"""The text of a server's config file, and extra config merged into it.

nats-server reads a second top-level ``jetstream { ... }`` block as a replacement of the first,
not as an addition: extra config that set ``jetstream { max_memory: 1G }`` used to drop
eventkit's ``store_dir`` (the store silently moved to the server's default temporary
directory). So a ``jetstream`` block in the extra config is merged into eventkit's own::

    config_text(port=4222, ..., extra_config="jetstream { max_file_store: 10G }")
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from eventkit.errors import ConfigError
from eventkit.server.layout import KEY_ENV, LOOPBACK

_BLOCK_START = re.compile(r"(?m)^[ \t]*jetstream[ \t]*(?::|=)?[ \t]*\{")
_KEY = re.compile(r"(?m)^[ \t]*([A-Za-z_][\w]*)[ \t]*(?::|=|[ \t])")
_OWNED = {"store_dir", "cipher", "key", "sync_interval"}
"""Keys of the jetstream block that eventkit sets itself (each has its own option)."""


def _quote(value: str | Path) -> str:
    return json.dumps(str(value))


def _block_end(text: str, open_brace: int) -> int:
    """The index of the brace that closes the one at ``open_brace`` (quotes and comments
    skipped)."""
    depth = 0
    i = open_brace
    quote: str | None = None
    while i < len(text):
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" or text.startswith("//", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ConfigError(
        "the extra server config has a 'jetstream {' block without its closing '}'; close it"
    )


def split_jetstream(extra: str) -> tuple[str, str]:
    """``(body of the jetstream blocks, the rest)`` of extra config text.

    A key eventkit sets itself (``store_dir``, ``cipher``, ``key``, ``sync_interval``) is refused
    with the option to use instead, so nothing is set twice."""
    bodies: list[str] = []
    rest = extra
    while True:
        m = _BLOCK_START.search(rest)
        if m is None:
            break
        end = _block_end(rest, m.end() - 1)
        bodies.append(rest[m.end() : end].strip())
        rest = rest[: m.start()] + rest[end + 1 :]
    body = "\n".join(b for b in bodies if b)
    for key in _KEY.findall(body):
        if key in _OWNED:
            option = {
                "store_dir": "the server's home (EVENTKIT_HOME) or store_dir argument",
                "cipher": "EVENTKIT_SERVER_KEY",
                "key": "EVENTKIT_SERVER_KEY",
                "sync_interval": "EVENTKIT_SERVER_SYNC (sync_interval=)",
            }[key]
            raise ConfigError(
                f"the extra server config sets jetstream {key}, which eventkit sets itself; "
                f"use {option} instead"
            )
    return body, rest.strip()


def config_text(
    *,
    port: int,
    http_port: int | None,
    store_dir: Path,
    log_file: Path | None,
    pid_file: Path | None,
    server_name: str | None,
    encrypted: bool,
    cluster: str | None,
    extra_config: str,
    sync_interval: str | None = None,
) -> str:
    """The config file of one server; ``sync_interval`` None leaves the server's default."""
    jetstream_extra, extra_config = split_jetstream(extra_config or "")
    lines = [
        "# Written by eventkit; regenerated at every start.",
        f"listen: {_quote(f'{LOOPBACK}:{port}')}",
    ]
    if http_port is not None:
        lines.append(f"http: {_quote(f'{LOOPBACK}:{http_port}')}")
    if server_name:
        lines.append(f"server_name: {_quote(server_name)}")
    if pid_file is not None:
        lines.append(f"pid_file: {_quote(pid_file)}")
    if log_file is not None:
        lines.append(f"log_file: {_quote(log_file)}")
    lines.append("jetstream {")
    lines.append(f"  store_dir: {_quote(store_dir)}")
    if sync_interval is not None:
        lines.append(f"  sync_interval: {_quote(sync_interval)}")
    if encrypted:
        lines.append("  cipher: chachapoly")
        lines.append(f"  key: ${KEY_ENV}")
    if jetstream_extra:
        lines.extend(f"  {line.strip()}" for line in jetstream_extra.splitlines())
    lines.append("}")
    if cluster:
        lines.append(cluster.strip())
    if extra_config:
        lines.append(extra_config)
    return "\n".join(lines) + "\n"


__all__ = ["config_text", "split_jetstream"]
