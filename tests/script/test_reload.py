# SPDX-License-Identifier: Apache-2.0
"""Reloading the routing script: on demand (SIGHUP) and when its file changes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import textwrap
from pathlib import Path

import pytest

from siprouter.script.loader import LoadedScript, load_script
from siprouter.script.reload import ScriptReloader


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def version_script(path: Path, version: int) -> Path:
    return write(path, f"VERSION = {version}\ndef request_route(req, ctx):\n    return VERSION\n")


class Applied:
    """The ``apply`` callback: records every script handed over."""

    def __init__(self) -> None:
        self.scripts: list[LoadedScript] = []
        self.event = asyncio.Event()

    def __call__(self, script: LoadedScript) -> None:
        self.scripts.append(script)
        self.event.set()

    @property
    def versions(self) -> list[int]:
        return [s.request_route(None, None) for s in self.scripts]

    async def wait(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()


def test_reload_applies_the_edited_script(tmp_path, caplog):
    path = version_script(tmp_path / "route.py", 1)
    applied = Applied()
    reloader = ScriptReloader(str(path), applied)
    assert reloader.load().request_route(None, None) == 1
    version_script(path, 2)
    with caplog.at_level(logging.INFO, logger="siprouter.script"):
        assert reloader.reload() is True
    assert applied.versions == [2]
    assert reloader.script is applied.scripts[0]
    assert f"script reloaded: {path}" in caplog.messages


def test_broken_edit_keeps_the_old_script_and_logs_the_error(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    version_script(tmp_path / "route.py", 1)
    applied = Applied()
    reloader = ScriptReloader("route.py", applied)
    old = reloader.load()
    write(tmp_path / "route.py", "def request_route(req, ctx)\n    pass\n")
    with caplog.at_level(logging.INFO, logger="siprouter.script"):
        assert reloader.reload() is False
    assert applied.scripts == []
    assert reloader.script is old
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "route.py:1: expected ':'" in errors[0].getMessage()
    # Fixing the file brings the new version in.
    version_script(tmp_path / "route.py", 3)
    assert reloader.reload() is True
    assert applied.versions == [3]


def test_apply_failure_keeps_the_old_script(tmp_path, caplog):
    path = version_script(tmp_path / "route.py", 1)

    def apply(script: LoadedScript) -> None:
        raise RuntimeError("core refused")

    reloader = ScriptReloader(path, apply)
    old = reloader.load()
    with caplog.at_level(logging.ERROR, logger="siprouter.script"):
        assert reloader.reload() is False
    assert reloader.script is old
    assert any("could not be applied" in m for m in caplog.messages)


def test_module_script_reloads_on_demand_but_is_not_watched():
    applied = Applied()
    reloader = ScriptReloader("siprouter.script.default", applied)
    assert reloader.path is None
    assert reloader.changed() is False
    assert reloader.reload() is True
    assert applied.scripts[0].name == "siprouter.script.default"


async def test_module_script_run_returns_at_once():
    reloader = ScriptReloader(None, Applied())
    await asyncio.wait_for(reloader.run(), 1.0)


async def test_watch_off_run_returns_at_once(tmp_path):
    path = version_script(tmp_path / "route.py", 1)
    reloader = ScriptReloader(path, Applied(), watch=False)
    await asyncio.wait_for(reloader.run(), 1.0)


async def test_file_change_is_picked_up_by_polling(tmp_path, caplog):
    path = version_script(tmp_path / "route.py", 1)
    applied = Applied()
    reloader = ScriptReloader(path, applied, interval=0.01)
    reloader.load()
    task = asyncio.ensure_future(reloader.run())
    try:
        await asyncio.sleep(0.05)
        assert applied.scripts == []  # nothing changed: nothing reloaded
        version_script(path, 22)  # different size, so seen even on coarse-mtime filesystems
        await applied.wait()
        assert applied.versions == [22]

        # A broken save is reported once and the running script stays ...
        with caplog.at_level(logging.ERROR, logger="siprouter.script"):
            write(path, "def request_route(req, ctx):\n    return (\n")
            for _ in range(100):
                await asyncio.sleep(0.01)
                if caplog.records:
                    break
            await asyncio.sleep(0.05)  # several more polls: no repeated error
        assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
        assert reloader.script is applied.scripts[-1]
        assert applied.versions == [22]

        # ... until the file is fixed.
        version_script(path, 333)
        await applied.wait()
        assert applied.versions == [22, 333]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_file_replaced_by_rename_is_picked_up(tmp_path):
    # Editors such as vim save by writing a new file and renaming it over the old one.
    path = version_script(tmp_path / "route.py", 1)
    applied = Applied()
    reloader = ScriptReloader(path, applied, interval=0.01)
    reloader.load()
    task = asyncio.ensure_future(reloader.run())
    try:
        new = version_script(tmp_path / "route.py.new", 2)
        os.replace(new, path)
        await applied.wait()
        assert applied.versions == [2]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
async def test_sighup_reloads(tmp_path):
    path = version_script(tmp_path / "route.py", 1)
    applied = Applied()
    reloader = ScriptReloader(path, applied, watch=False)
    reloader.load()
    assert reloader.install_sighup(asyncio.get_running_loop()) is True
    try:
        version_script(path, 2)
        os.kill(os.getpid(), signal.SIGHUP)
        await applied.wait()
        assert applied.versions == [2]
    finally:
        reloader.remove_sighup()


async def test_message_in_flight_finishes_with_the_script_it_started_with(tmp_path):
    # The reloader swaps references only: a route call that is waiting keeps running the
    # old function, with the old module's globals.
    path = write(tmp_path / "route.py", """
        import asyncio
        VERSION = 1
        GATE = asyncio.Event()

        async def request_route(req, ctx):
            await GATE.wait()
            return VERSION
    """)
    current: list[LoadedScript] = [load_script(path)]
    reloader = ScriptReloader(path, lambda s: current.__setitem__(0, s), script=current[0])
    in_flight = asyncio.ensure_future(current[0].request_route(None, None))
    await asyncio.sleep(0)
    old_gate = current[0].module.GATE
    write(path, """
        VERSION = 2
        async def request_route(req, ctx):
            return VERSION
    """)
    assert reloader.reload() is True
    assert await current[0].request_route(None, None) == 2
    old_gate.set()
    assert await asyncio.wait_for(in_flight, 5.0) == 1


async def test_reload_under_the_proxy_core_drops_nothing_in_flight(tmp_path):
    from siprouter.script.testing import Outcome, ScriptTester, make_request, sip_text

    path = write(tmp_path / "route.py", """
        import asyncio
        GATE = asyncio.Event()

        async def request_route(req, ctx):
            await GATE.wait()
            req.reply(486, "Busy Here")
    """)
    tester = ScriptTester(str(path))
    reloader = ScriptReloader(path, tester.set_script, script=tester.script)
    gate = tester.script.module.GATE
    sent = tester.transport.sent

    # A request enters the old script and waits there.
    tester.core.on_message(sip_text(make_request("INVITE", "sip:a@example.com")), tester.source())
    assert sent == []

    write(path, """
        def request_route(req, ctx):
            req.reply(404, "Not Found")
    """)
    assert reloader.reload() is True

    # New requests get the new script at once ...
    tester.core.on_message(sip_text(make_request("INVITE", "sip:b@example.com")), tester.source())
    assert Outcome(list(sent), is_request=True).replied == 404

    # ... and the one in flight finishes in the old one.
    gate.set()
    await asyncio.wait_for(tester.core.drain(), 5.0)
    assert Outcome(sent[1:], is_request=True).replied == 486
