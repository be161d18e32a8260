# SPDX-License-Identifier: Apache-2.0
"""MgmtServer over real HTTP (127.0.0.1) and a real UNIX socket: who may call (token,
loopback, Host, Content-Type), bad input per transport, the socket file's life."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from pathlib import Path

import pytest
from mgmt_support import call, post

from siprouter.mgmt.errors import ErrorCode, MgmtConfigError
from siprouter.mgmt.registry import CommandRegistry
from siprouter.mgmt.server import MAX_BODY, MgmtServer

TOKEN = "0123456789abcdef-secret"


def _registry() -> CommandRegistry:
    reg = CommandRegistry()
    reg.add("demo.echo", lambda text: text)
    return reg


async def test_http_and_unix_socket_answer(mgmt_factory, tmp_path: Path) -> None:
    srv = await mgmt_factory(_registry())
    assert srv.url is not None and srv.url.startswith("http://127.0.0.1:")
    assert srv.http_address is not None and srv.http_address[1] > 0
    for target in (srv.url, tmp_path / "m.sock"):
        out = await call(target, "demo.echo", ["hi"])
        assert out == {"jsonrpc": "2.0", "result": "hi", "id": 1}


async def test_unix_socket_is_private_and_removed_at_stop(mgmt_factory, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "m.sock"
    srv = await mgmt_factory(_registry(), unix_socket=path, http_listen="")
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert srv.url is None
    await srv.stop()
    assert not path.exists()
    await srv.stop()  # twice is harmless


async def test_a_stale_socket_file_is_replaced(mgmt_factory, tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a server that died: the file stays, nobody listens
    dead.close()
    srv = await mgmt_factory(_registry(), http_listen="")
    assert srv.unix_path == path
    assert (await call(path, "demo.echo", ["ok"]))["result"] == "ok"


async def test_a_live_socket_is_not_taken_over(mgmt_factory, tmp_path: Path) -> None:
    first = await mgmt_factory(_registry(), http_listen="")
    second = MgmtServer(_registry(), http_listen="", unix_socket=tmp_path / "m.sock")
    with pytest.raises(OSError, match="another siprouter is running") as exc:
        await second.start()
    assert exc.value.errno == errno.EADDRINUSE
    assert (await call(first.unix_path, "demo.echo", ["still"]))["result"] == "still"


async def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "m.sock"
    path.write_text("precious")
    srv = MgmtServer(_registry(), http_listen="", unix_socket=path)
    with pytest.raises(OSError, match="exists and is not a socket"):
        await srv.start()
    assert path.read_text() == "precious"


async def test_token_missing_wrong_right(mgmt_factory, tmp_path: Path) -> None:
    srv = await mgmt_factory(_registry(), token=TOKEN)
    req = {"jsonrpc": "2.0", "method": "demo.echo", "params": ["x"], "id": 7}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN}x"}):
        status, out, resp_headers = await post(srv.url, req, headers=headers)
        assert status == 401, headers
        assert out["error"]["code"] == ErrorCode.UNAUTHORIZED
        assert "Bearer" in resp_headers["WWW-Authenticate"]
    status, out, _ = await post(srv.url, req, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (status, out["result"]) == (200, "x")
    # The UNIX socket needs no token: its file mode is the check.
    assert (await call(tmp_path / "m.sock", "demo.echo", ["y"]))["result"] == "y"


def test_non_loopback_http_needs_a_token() -> None:
    with pytest.raises(MgmtConfigError) as exc:
        MgmtServer(_registry(), http_listen="0.0.0.0:5080")
    assert exc.value.key == "mgmt.token"
    assert "0.0.0.0:5080" in str(exc.value) and "not a loopback address" in str(exc.value)
    with pytest.raises(MgmtConfigError, match="mgmt.token"):
        MgmtServer(_registry(), http_listen="sip.example.com:5080")
    # With a token it is accepted (not started here: tests bind loopback only).
    MgmtServer(_registry(), http_listen="0.0.0.0:5080", token=TOKEN)
    for loopback in ("127.0.0.1:0", "[::1]:0", "localhost:0", "127.1.2.3:0"):
        MgmtServer(_registry(), http_listen=loopback)


@pytest.mark.parametrize("listen", ["5080", "127.0.0.1", "::1:5080", "[nope]:80",
                                    "127.0.0.1:65536", "127.0.0.1:x"])
def test_bad_http_listen(listen: str) -> None:
    with pytest.raises(MgmtConfigError) as exc:
        MgmtServer(_registry(), http_listen=listen)
    assert exc.value.key == "mgmt.http_listen"


async def test_http_needs_json_content_type(mgmt_factory) -> None:
    srv = await mgmt_factory(_registry())
    req = {"jsonrpc": "2.0", "method": "demo.echo", "params": ["x"], "id": 1}
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded"):
        status, out, _ = await post(srv.url, req, content_type=ctype)
        assert status == 415
        assert "application/json" in out["error"]["message"]
    status, out, _ = await post(srv.url, req, content_type="application/json; charset=utf-8")
    assert (status, out["result"]) == (200, "x")


async def test_without_token_the_host_must_be_loopback(mgmt_factory) -> None:
    srv = await mgmt_factory(_registry())
    req = {"jsonrpc": "2.0", "method": "demo.echo", "params": ["x"], "id": 1}
    status, out, _ = await post(srv.url, req, headers={"Host": "evil.example.com"})
    assert status == 403 and out["error"]["code"] == ErrorCode.UNAUTHORIZED
    port = srv.http_address[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        status, out, _ = await post(srv.url, req, headers={"Host": host})
        assert (status, out["result"]) == (200, "x"), host


@pytest.mark.parametrize("unix", [False, True])
async def test_bad_input_on_each_transport(mgmt_factory, tmp_path: Path, unix: bool) -> None:
    srv = await mgmt_factory(_registry())
    target = tmp_path / "m.sock" if unix else srv.url
    status, out, _ = await post(target, b"{not json")
    assert status == 200 and out["error"]["code"] == ErrorCode.PARSE_ERROR
    status, out, _ = await post(target, {"jsonrpc": "2.0", "method": "demo.ech", "id": 2})
    assert out["error"]["code"] == ErrorCode.METHOD_NOT_FOUND
    assert "did you mean 'demo.echo'" in out["error"]["message"]
    status, out, _ = await post(target, {"jsonrpc": "2.0", "method": "demo.echo",
                                         "params": {"txt": 1}, "id": 3})
    assert out["error"]["code"] == ErrorCode.INVALID_PARAMS
    status, out, _ = await post(target, [{"jsonrpc": "2.0", "method": "demo.echo",
                                          "params": ["a"], "id": 1},
                                         {"jsonrpc": "2.0", "method": "demo.echo",
                                          "params": ["b"]},
                                         {"jsonrpc": "2.0", "method": "demo.echo",
                                          "params": ["c"], "id": 3}])
    assert [r["result"] for r in out] == ["a", "c"]
    status, out, _ = await post(target, {"jsonrpc": "2.0", "method": "demo.echo",
                                         "params": ["n"]})
    assert (status, out) == (204, None)  # a notification: nothing to answer
    status, out, _ = await post(target, b"x" * (MAX_BODY + 1))
    assert status == 413
    assert "Traceback" not in str(out)


async def test_only_post_rpc_is_served(mgmt_factory) -> None:
    import aiohttp

    srv = await mgmt_factory(_registry())
    base = srv.url.removesuffix("/RPC")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(srv.url) as resp:
            assert resp.status == 405
        async with session.post(base + "/other", json={}) as resp:
            assert resp.status == 404


async def test_busy_default_http_port_is_skipped_with_a_warning(
        mgmt_factory, tmp_path: Path, caplog) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(OSError, match=r"management HTTP 127\.0\.0\.1:\d+ "
                                          r"\(mgmt.http_listen\)"):
            await mgmt_factory(_registry(), http_listen=listen)
        assert not (tmp_path / "m.sock").exists()  # the failed start cleaned up
        with caplog.at_level(logging.WARNING, logger="siprouter.mgmt"):
            srv = await mgmt_factory(_registry(), http_listen=listen, http_optional=True)
        assert srv.url is None
        assert any("management over HTTP is off" in r.getMessage() for r in caplog.records)
        assert (await call(tmp_path / "m.sock", "demo.echo", ["u"]))["result"] == "u"
    finally:
        busy.close()


async def test_socket_path_too_long(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "m.sock"
    srv = MgmtServer(_registry(), http_listen="", unix_socket=path)
    with pytest.raises(OSError, match=r"mgmt.unix_socket.*too long"):
        await srv.start()


async def test_prepare_runs_before_listening(mgmt_factory, tmp_path: Path) -> None:
    reg = CommandRegistry()
    srv = await mgmt_factory(reg, prepare=lambda: reg.add("late.cmd", lambda: 42))
    assert (await call(srv.url, "late.cmd"))["result"] == 42
