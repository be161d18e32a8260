# SPDX-License-Identifier: Apache-2.0
"""The core commands of a real ``Server`` (siprouter/server.py) started in the test's
event loop on 127.0.0.1 port 0, called over real HTTP and the UNIX socket."""

from __future__ import annotations

import logging
import os
import re
from types import SimpleNamespace
from typing import Any

import pytest
from mgmt_support import call, server_config

from siprouter import __version__
from siprouter.config import ConfigError
from siprouter.mgmt.commands import register_server_commands
from siprouter.mgmt.errors import ErrorCode
from siprouter.mgmt.registry import CommandRegistry
from siprouter.modules import rpc
from siprouter.server import Server, serve

CORE_COMMANDS = {"system.listMethods", "system.methodHelp", "core.version", "core.uptime",
                 "core.info", "core.reload", "log.set_level", "tm.stats", "dlg.list",
                 "dlg.terminate", "dlg.terminate_dlg",
                 "stats.get", "stats.reset", "stats.get_statistics", "stats.reset_statistics",
                 "dbt.dump", "dbt.reload"}
SCRIPT_V1 = "async def request_route(req, ctx):\n    req.reply(404, 'Version One')\n"


def _targets(server: Server) -> list[Any]:
    return [server.mgmt.url, server.mgmt.unix_path]


async def test_every_core_command_over_http_and_unix_socket(start_server, tmp_path) -> None:
    server = await start_server()
    assert server.mgmt.unix_path == tmp_path / "data" / "siprouter.sock"
    port = server.transport.sockets[0].port
    for target in _targets(server):
        names = (await call(target, "system.listMethods"))["result"]
        assert CORE_COMMANDS <= set(names) and names == sorted(names)
        helptext = (await call(target, "system.methodHelp", ["log.set_level"]))["result"]
        assert helptext.startswith("log.set_level(level: Literal['debug', 'info', 'warning', "
                                   "'error'], logger: str = '')")
        assert "lowest level" in helptext
        out = await call(target, "system.methodHelp", ["core.nope"])
        assert out["error"]["code"] == ErrorCode.METHOD_NOT_FOUND

        version = (await call(target, "core.version"))["result"]
        assert version["name"] == "siprouter" and version["version"] == __version__

        uptime = (await call(target, "core.uptime"))["result"]
        assert 0 <= uptime["uptime"] < 60
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", uptime["up_since"])

        info = (await call(target, "core.info"))["result"]
        assert info["pid"] == os.getpid()
        assert info["listen"] == [f"udp:127.0.0.1:{port}"]
        assert info["script"] == "siprouter.script.default"
        assert info["data_dir"] == str(tmp_path / "data")
        assert info["mgmt"] == {"http": server.mgmt.url,
                                "unix_socket": str(server.mgmt.unix_path)}

        stats = (await call(target, "tm.stats"))["result"]
        assert {"created", "relayed", "replied_2xx", "timeouts", "active_server",
                "active_client"} <= set(stats)
        assert all(isinstance(v, int) for v in stats.values())

        assert (await call(target, "dlg.list"))["result"] == []


async def test_reload_reports_a_broken_script_and_keeps_the_old_one(start_server,
                                                                    tmp_path) -> None:
    script = tmp_path / "route.py"
    script.write_text(SCRIPT_V1)
    server = await start_server(routing__script=str(script))
    url = server.mgmt.url
    assert (await call(url, "core.reload"))["result"] == {"reloaded": True,
                                                          "script": str(script)}
    old = server.core.script
    script.write_text("async def request_route(req, ctx):\n    return (\n")
    out = await call(url, "core.reload")
    assert out["error"]["code"] == ErrorCode.SERVER_ERROR
    assert out["error"]["message"].startswith("script not reloaded: ")
    assert "route.py" in out["error"]["message"]
    assert "Traceback" not in out["error"]["message"]
    assert server.core.script is old
    script.write_text(SCRIPT_V1.replace("One", "Two"))
    assert (await call(url, "core.reload"))["result"]["reloaded"] is True
    assert server.core.script is not old


async def test_log_set_level(start_server) -> None:
    server = await start_server(mgmt__unix_socket="")
    root, core_log = logging.getLogger(), logging.getLogger("siprouter.core")
    saved = root.level, core_log.level
    try:
        out = await call(server.mgmt.url, "log.set_level", ["debug"])
        assert out["result"]["level"] == "debug" and root.level == logging.DEBUG
        out = await call(server.mgmt.url, "log.set_level", {"level": "error",
                                                            "logger": "siprouter.core"})
        assert out["result"] == {"logger": "siprouter.core", "level": "error",
                                 "previous": "notset"}
        assert core_log.level == logging.ERROR and root.level == logging.DEBUG
        out = await call(server.mgmt.url, "log.set_level", ["loud"])
        assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
        assert "'level' expects one of 'debug', 'info', 'warning', 'error'" in \
            out["error"]["message"]
    finally:
        root.setLevel(saved[0])
        core_log.setLevel(saved[1])


async def test_disabled_management_opens_nothing(start_server, tmp_path) -> None:
    server = await start_server(mgmt__enabled=False)
    assert server.mgmt is None
    assert not (tmp_path / "data" / "siprouter.sock").exists()


async def test_non_loopback_http_without_token_stops_start_before_any_socket(tmp_path) -> None:
    server = Server(server_config(tmp_path, mgmt__http_listen="0.0.0.0:0"))
    with pytest.raises(ConfigError) as exc:
        await server.start()
    assert exc.value.key == "mgmt.token"
    assert "not a loopback address" in str(exc.value)
    assert server.transport is None  # refused before any socket opened
    await server.stop()
    # serve() (what `siprouter run` runs) reports it and exits 2, no traceback.
    assert await serve(server_config(tmp_path, mgmt__http_listen="0.0.0.0:0")) == 2


async def test_a_second_server_on_the_same_data_dir_fails_cleanly(start_server,
                                                                   tmp_path) -> None:
    first = await start_server()
    second = Server(server_config(tmp_path))
    with pytest.raises(OSError, match="another siprouter is running"):
        await second.start()
    await second.stop()
    assert (await call(first.mgmt.unix_path, "core.version"))["result"]["version"]


async def test_module_commands_are_registered() -> None:
    class Counter:
        def __init__(self) -> None:
            self.n = 0

        @rpc("counter.bump")
        def bump(self, by: int = 1) -> int:
            """Add ``by``."""
            self.n += by
            return self.n

    counter = Counter()
    registry = CommandRegistry()
    register_server_commands(registry, SimpleNamespace(modules={"counter": counter}))
    assert CORE_COMMANDS | {"counter.bump"} == set(registry.names())
    assert await registry.call("counter.bump", ["5"]) == 5
    # A server without a ``modules`` attribute has the core commands only.
    registry = CommandRegistry()
    register_server_commands(registry, SimpleNamespace())
    assert set(registry.names()) == CORE_COMMANDS
