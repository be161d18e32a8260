# SPDX-License-Identifier: Apache-2.0
"""Logging: to stderr, one line per event, in ``text`` or ``json`` format.

Modules get their logger with ``log = get_logger(__name__)`` and log through the standard
``logging`` API. ``setup_logging`` configures the root logger once at start-up (so the
operator's script can use plain ``logging.getLogger(...)`` too).

Structured fields go in ``extra``: ``log.info("socket bound", extra={"socket": "udp:…"})``.
The text format appends them as ``key=value``; the json format adds them as keys.

Cost: the level is set on the loggers, not only on the handler, so a call below the level
returns after ``isEnabledFor`` (cached per logger). Per-message logging belongs at debug
level, and hot paths should still guard with ``if log.isEnabledFor(logging.DEBUG):`` when
building the arguments costs anything.

Every event is one line: newlines inside messages and tracebacks are escaped as ``\\n``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

__all__ = ["get_logger", "setup_logging", "TextFormatter", "JsonFormatter", "LEVELS"]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}


def get_logger(name: str) -> logging.Logger:
    """The logger for a module: ``log = get_logger(__name__)``."""
    return logging.getLogger(name)


def _timestamp(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")
    }


def _one_line(text: str) -> str:
    return (
        text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
        if ("\n" in text or "\r" in text)
        else text
    )


class TextFormatter(logging.Formatter):
    """``2025-01-31T12:00:00.123Z INFO siprouter.transport: message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            _timestamp(record),
            record.levelname,
            f"{record.name}:",
            _one_line(record.getMessage()),
        ]
        for key, value in _extras(record).items():
            text = value if isinstance(value, str) else repr(value)
            if not text or " " in text or '"' in text or "=" in text:
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={_one_line(text)}")
        if record.exc_info:
            parts.append("exc=" + _one_line(self.formatException(record.exc_info)))
        elif record.stack_info:
            parts.append("stack=" + _one_line(record.stack_info))
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, the ``extra``
    fields, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            obj.setdefault(key, value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            obj["stack"] = record.stack_info
        return json.dumps(obj, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):
    """Marks the handler this module installed, so setup_logging can replace it."""


def setup_logging(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send all logging to ``stream`` (default: stderr), one line per event.

    May be called again (e.g. after a reload) and replaces its own handler.

    :param level: one of ``LEVELS`` ("debug", "info", "warning", "error").
    :param fmt: "text" or "json".
    :raises ValueError: for an unknown level or format (the config has already checked them).
    """
    try:
        levelno = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None
    if fmt == "text":
        formatter: logging.Formatter = TextFormatter()
    elif fmt == "json":
        formatter = JsonFormatter()
    else:
        raise ValueError(f"unknown log format {fmt!r}; expected text or json")

    # Fewer attributes to fill in for every record; we never print them.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False

    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    logging.captureWarnings(True)
