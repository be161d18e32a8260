# SPDX-License-Identifier: Apache-2.0
"""siprouter.log: one line per event, text and json formats, levels set on the loggers."""

from __future__ import annotations

import io
import json
import logging

import pytest

from siprouter.log import get_logger, setup_logging


@pytest.fixture
def stream():
    """Configure logging into a StringIO; restore the root logger afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    buf = io.StringIO()
    yield buf
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    logging.captureWarnings(False)


def test_text_line(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    get_logger("siprouter.test").info(
        "bound %s", "udp:127.0.0.1:5060", extra={"socket": "udp", "n": 2}
    )
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    ts, level, name, *rest = line.split()
    assert ts.endswith("Z") and "T" in ts
    assert (level, name) == ("INFO", "siprouter.test:")
    assert rest == ["bound", "udp:127.0.0.1:5060", "socket=udp", "n=2"]


def test_json_line(stream: io.StringIO) -> None:
    setup_logging("debug", "json", stream)
    get_logger("siprouter.test").debug("hello %d", 5, extra={"peer": "10.0.0.1"})
    obj = json.loads(stream.getvalue())
    assert obj["level"] == "debug"
    assert obj["logger"] == "siprouter.test"
    assert obj["msg"] == "hello 5"
    assert obj["peer"] == "10.0.0.1"
    assert obj["ts"].endswith("Z")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_exception_is_still_one_line(stream: io.StringIO, fmt: str) -> None:
    setup_logging("info", fmt, stream)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        get_logger("siprouter.test").exception("handler failed\nwith newline")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "RuntimeError" in out and "boom" in out


def test_level_is_set_on_loggers_so_checks_are_cheap(stream: io.StringIO) -> None:
    setup_logging("warning", "text", stream)
    log = get_logger("siprouter.hot")
    assert not log.isEnabledFor(logging.INFO)  # the record is never built
    log.info("dropped")
    log.warning("kept")
    assert "dropped" not in stream.getvalue()
    assert "kept" in stream.getvalue()


def test_setup_again_replaces_its_handler(stream: io.StringIO) -> None:
    setup_logging("info", "text", stream)
    setup_logging("info", "json", stream)
    get_logger("siprouter.test").info("once")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["msg"] == "once"


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError):
        setup_logging("loud", "text")
    with pytest.raises(ValueError):
        setup_logging("info", "xml")
