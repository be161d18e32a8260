# SPDX-License-Identifier: Apache-2.0
"""Every command a full server registers (core, stats, dbt, location, dispatcher), called
over real HTTP and over the UNIX socket, alone and all together in one batch: each gives
a result or the JSON-RPC error it should, never an internal error. The table below must
name every command the server lists, so a new command cannot go untested here."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from mgmt_support import call, post

from siprouter.mgmt.errors import ErrorCode
from siprouter.modules.location import Binding
from siprouter.server import Server

# method -> (params, expected): "result", or the error code. ``{nh}`` in a param is the
# dispatcher destination of the test server.
NO_DIALOG = {"id": "no-such-dialog"}
COMMANDS: dict[str, tuple[Any, Any]] = {
    "system.listMethods": ([], "result"),
    "system.methodHelp": (["ul.lookup"], "result"),
    "core.version": ([], "result"),
    "core.uptime": ([], "result"),
    "core.info": ([], "result"),
    "core.reload": ([], "result"),
    "log.set_level": (["info", "siprouter.mgmt.test"], "result"),
    "stats.get": (["all"], "result"),
    "stats.reset": (["tm"], "result"),
    "tm.stats": ([], "result"),
    "dlg.list": ([], "result"),
    "dlg.terminate": (NO_DIALOG, ErrorCode.INVALID_PARAMS),
    "dlg.terminate_dlg": (["no-such-call", "no-tag"], ErrorCode.INVALID_PARAMS),
    "stats.get_statistics": (["core: tm:created rcv_replies"], "result"),
    "stats.reset_statistics": (["core"], "result"),
    # The server runs on SQLite: the db_text commands say they need text:///.
    "dbt.dump": ([], ErrorCode.SERVER_ERROR),
    "dbt.reload": ([], ErrorCode.SERVER_ERROR),
    "ul.dump": ([], "result"),
    "ul.lookup": (["alice@127.0.0.1"], "result"),
    "ul.rm": (["bob@127.0.0.1"], "result"),
    "ul.rm_contact": (["location", "carol@127.0.0.1", "sip:carol@127.0.0.1:5070"], "result"),
    "ds.list": ([], "result"),
    "ds.stats": ([], "result"),
    "ds.reload": ([], "result"),
    "ds.set_state": (["a", 1, "{nh}"], "result"),
    "dispatcher.list": ([], "result"),
    "dispatcher.reload": ([], "result"),
    "dispatcher.set_state": (["i", 1, "{nh}"], "result"),
}


@pytest.fixture
async def server(start_server, tmp_path: Path):
    ds_list = tmp_path / "dispatcher.list"
    ds_list.write_text("1 sip:127.0.0.1:5999\n")
    srv = await start_server(dispatcher__list_file=str(ds_list),
                             dispatcher__ds_ping_interval=0)
    location = srv.modules["location"]
    for user in ("alice", "bob", "carol"):
        await location.put(Binding(f"{user}@127.0.0.1", f"sip:{user}@127.0.0.1:5070",
                                   int(time.time()) + 3600, ruid=location.new_ruid()))
    return srv


def _params(params: Any) -> Any:
    if isinstance(params, list):
        return [p.replace("{nh}", "sip:127.0.0.1:5999") if isinstance(p, str) else p
                for p in params]
    return params


def _check(method: str, answer: dict[str, Any], expected: Any) -> None:
    assert answer.get("jsonrpc") == "2.0", answer
    if expected == "result":
        assert "error" not in answer, (method, answer)
        json.dumps(answer["result"])  # plain JSON all the way down
    else:
        assert answer["error"]["code"] == expected, (method, answer)
        assert "Traceback" not in answer["error"]["message"]


@pytest.mark.parametrize("transport", ["http", "unix"])
async def test_every_command_alone(server: Server, transport: str) -> None:
    target = server.mgmt.url if transport == "http" else server.mgmt.unix_path
    listed = (await call(target, "system.listMethods"))["result"]
    assert set(listed) == set(COMMANDS), (
        "commands without a case here: " + ", ".join(sorted(set(listed) - set(COMMANDS))))
    for method, (params, expected) in COMMANDS.items():
        _check(method, await call(target, method, _params(params)), expected)


@pytest.mark.parametrize("transport", ["http", "unix"])
async def test_every_command_in_one_batch(server: Server, transport: str) -> None:
    target = server.mgmt.url if transport == "http" else server.mgmt.unix_path
    batch = [{"jsonrpc": "2.0", "id": i, "method": m, "params": _params(p)}
             for i, (m, (p, _)) in enumerate(COMMANDS.items())]
    batch.append({"jsonrpc": "2.0", "method": "core.version"})  # a notification: no answer
    batch.append({"jsonrpc": "2.0", "id": "bad", "method": "no.such"})
    status, answers, _ = await post(target, batch)
    assert status == 200
    by_id = {a["id"]: a for a in answers}
    assert len(answers) == len(COMMANDS) + 1
    for i, (method, (_, expected)) in enumerate(COMMANDS.items()):
        _check(method, by_id[i], expected)
    assert by_id["bad"]["error"]["code"] == ErrorCode.METHOD_NOT_FOUND


@pytest.mark.parametrize("transport", ["http", "unix"])
async def test_wrong_parameters_for_every_command(server: Server, transport: str) -> None:
    """Too many positional parameters, and an unknown named one: INVALID_PARAMS for each
    command, with the command named, never an internal error."""
    target = server.mgmt.url if transport == "http" else server.mgmt.unix_path
    for method in COMMANDS:
        out = await call(target, method, [1, 2, 3, 4, 5, 6, 7])
        assert out["error"]["code"] == ErrorCode.INVALID_PARAMS, (method, out)
        out = await call(target, method, {"no_such_parameter": 1})
        assert out["error"]["code"] == ErrorCode.INVALID_PARAMS, (method, out)


async def test_kamailio_forms(server: Server) -> None:
    """What a Kamailio operator types: ``ul.lookup location AOR``, ``ul.rm location AOR``,
    ``stats.get_statistics`` with names without their group, ``dlg.terminate_dlg``."""
    target = server.mgmt.unix_path
    out = (await call(target, "ul.lookup", ["location", "alice@127.0.0.1"]))["result"]
    assert out["aor"] == "alice@127.0.0.1"
    assert [c["contact"] for c in out["contacts"]] == ["sip:alice@127.0.0.1:5070"]
    out = await call(target, "ul.lookup", ["subscriber", "alice@127.0.0.1"])
    assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
    assert "no table 'subscriber'" in out["error"]["message"]
    assert (await call(target, "ul.rm", ["location", "bob@127.0.0.1"]))["result"] == {
        "aor": "bob@127.0.0.1", "removed": 1}
    assert (await call(target, "ul.lookup", ["bob@127.0.0.1"]))["error"]["code"] == -32004
    out = await call(target, "ul.rm_contact", ["location", "alice@127.0.0.1", "sip:x@y"])
    assert out["error"]["code"] == -32004

    stats = (await call(target, "stats.get_statistics", ["rcv_requests tm:"]))["result"]
    assert stats["core:rcv_requests"] == 0 and "tm:created" in stats
    assert not any(k.startswith("usrloc:") for k in stats)
    listed = (await call(target, "stats.get_statistics", [["core:bad_msgs"]]))["result"]
    assert listed == {"core:bad_msgs": 0}
    out = await call(target, "stats.get_statistics", ["no_such_stat"])
    assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
    out = await call(target, "dlg.terminate_dlg", ["call", "ftag", "ttag"])
    assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
