"""Structured logs: one line per state change of a projector or reactor (started, caught up,
standing by, lease taken or lost, parked, halted, stopped), as text or as JSON.

Every such line is a ``logging`` record of logger ``eventkit.projection`` or
``eventkit.reaction`` whose ``eventkit`` attribute holds the facts (``event``, ``kind``,
``worker`` and what the change names: ``sequence``, ``owner``, ``error``...). The text format
prints the message as before; the JSON format prints one object per line::

    {"time": "2025-01-01T12:00:00.000Z", "level": "info", "logger": "eventkit.projection",
     "message": "balances: caught up at 42", "event": "caught_up", "kind": "projector",
     "worker": "balances", "checkpoint": 42}

``eventkit run --log-format json`` sets it up; a library user calls :func:`configure_logging`.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[str, ...] = ("text", "json")

FIELDS = "eventkit"
"""The record attribute holding a state change's facts."""

_HANDLER_MARK = "_eventkit_handler"


def state_change(
    logger: logging.Logger,
    kind: str,
    worker: str,
    event: str,
    message: str,
    *args: Any,
    level: int = logging.INFO,
    **facts: Any,
) -> None:
    """Log one state change of ``worker``: ``message % args``, prefixed by the worker's name,
    with ``event`` and ``facts`` as structured fields."""
    if not logger.isEnabledFor(level):
        return
    fields = {"event": event, "kind": kind, "worker": worker, **facts}
    logger.log(level, "%s: " + message, worker, *args, extra={FIELDS: fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the state
    change's fields, and the exception's text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        out: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out.setdefault(k, v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2025-01-01 12:00:00 WARNING eventkit.projection: balances: ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")


def configure_logging(
    log_format: str = "text", *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send eventkit's log records (logger ``eventkit``) to ``stream`` (default stderr) as
    ``text`` or ``json``; calling it again replaces the handler it set before."""
    from eventkit.errors import ConfigError

    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"unknown log format {log_format!r}; use one of: {', '.join(LOG_FORMATS)}"
        )
    root = logging.getLogger("eventkit")
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


__all__ = [
    "LOG_FORMATS",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "configure_logging",
    "state_change",
]
