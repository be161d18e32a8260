# SPDX-License-Identifier: Apache-2.0
"""``siprouter rpc`` and ``siprouter ul show|rm`` against a running server (a real
``Server`` in the test's event loop, with the real Location module; the command runs in
a worker thread through click's runner) and against none; and once end to end with
``python -m siprouter run`` and ``python -m siprouter rpc`` as subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from siprouter.cli.main import main
from siprouter.cli.rpc import EXIT_FAILED, EXIT_UNAVAILABLE
from siprouter.config import load_config
from siprouter.modules.location import Binding, Location
from siprouter.server import Server

REPO = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token-0123456789"
CONFIG = f"""\
[server]
listen = ["udp:127.0.0.1:0"]
data_dir = "data"
[routing]
reload_on_change = false
[mgmt]
http_listen = "127.0.0.1:0"
token = "{TOKEN}"
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SIPROUTER_CONFIG", raising=False)
    monkeypatch.delenv("SIPROUTER_URL", raising=False)
    monkeypatch.delenv("SIPROUTER_TOKEN", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "siprouter.toml"
    path.write_text(CONFIG)
    return path


async def siprouter(*args: str, env: dict[str, str] | None = None) -> Result:
    """``siprouter ARGS`` in a worker thread (the server runs on this loop meanwhile)."""
    return await asyncio.wait_for(asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=env, catch_exceptions=False), 20)


@pytest.fixture
async def running(config_file: Path):
    """A started Server read from ``config_file``, and its Location (the server's own
    when it registers one, else a memory-only one registered here)."""
    server = Server(load_config(config_file))
    await server.start()
    registry = server.mgmt.registry
    if "ul.dump" in registry:
        location = registry.get("ul.dump").fn.__self__
    else:
        location = Location()
        registry.add_object(location)
    try:
        yield server, location
    finally:
        await server.stop()


async def _register(location: Location, aor: str, contact: str, **kw: Any) -> None:
    await location.put(Binding(aor, contact, int(time.time()) + 3600,
                               ruid=location.new_ruid(), **kw))


async def test_rpc_prints_the_result_as_json(running, config_file: Path) -> None:
    result = await siprouter("rpc", "-c", str(config_file), "core.version")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "siprouter"
    result = await siprouter("rpc", "-c", str(config_file), "system.listMethods")
    assert "ul.dump" in json.loads(result.stdout)


async def test_rpc_positional_named_and_text_results(running, config_file: Path) -> None:
    result = await siprouter("rpc", "-c", str(config_file), "system.methodHelp", "ul.rm")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ul.rm(aor: str, contact: str | None = None)")
    result = await siprouter("rpc", "-c", str(config_file), "--json", "system.methodHelp",
                             "name=ul.rm")
    assert json.loads(result.stdout).startswith("ul.rm(")


async def test_rpc_errors_exit_1_with_the_servers_message(running, config_file: Path) -> None:
    result = await siprouter("rpc", "-c", str(config_file), "ul.dmp")
    assert result.exit_code == EXIT_FAILED
    assert "Method not found: 'ul.dmp' (did you mean 'ul.dump'?) (error -32601)" in \
        result.stderr
    result = await siprouter("rpc", "-c", str(config_file), "ul.rm", "a", "b", "c")
    assert result.exit_code == EXIT_FAILED
    assert "takes at most 2 parameter(s) (aor, contact), got 3 (error -32602)" in result.stderr
    result = await siprouter("rpc", "-c", str(config_file), "ul.rm", "aor=x", "y")
    assert result.exit_code == 2  # click's usage error
    assert "all by position or all as name=value" in result.output


async def test_ul_show_and_rm(running, config_file: Path) -> None:
    _, location = running
    cfg = ["-c", str(config_file)]
    result = await siprouter("ul", "show", *cfg)
    assert (result.exit_code, result.stdout.strip()) == (0, "no registered contacts")

    await _register(location, "alice", "sip:alice@192.0.2.10:5060", q=0.5,
                    received="sip:198.51.100.7:40000;transport=udp", user_agent="Phone 1.0")
    await _register(location, "alice", "sip:alice@192.0.2.11:5060")
    await _register(location, "bob", "sip:bob@192.0.2.20:5062;transport=tcp")
    result = await siprouter("ul", "show", *cfg)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["AOR", "CONTACT", "EXPIRES", "Q", "RECEIVED", "USER-AGENT"]
    row = next(line for line in lines if "192.0.2.10" in line).split()
    assert row[0] == "alice" and row[3] == "0.5"
    assert row[4] == "sip:198.51.100.7:40000;transport=udp" and row[5:] == ["Phone", "1.0"]
    assert 3590 <= int(row[2].rstrip("s")) <= 3600
    assert lines[-1] == "2 AORs, 3 contacts"

    result = await siprouter("ul", "show", *cfg, "bob")
    assert "sip:bob@192.0.2.20:5062;transport=tcp" in result.stdout
    assert "alice" not in result.stdout and result.stdout.splitlines()[-1] == "1 AOR, 1 contact"
    result = await siprouter("ul", "show", *cfg, "--json", "alice")
    data = json.loads(result.stdout)
    assert data["aor"] == "alice" and len(data["contacts"]) == 2
    result = await siprouter("ul", "show", *cfg, "carol")
    assert result.exit_code == EXIT_FAILED and "carol" in result.stderr

    # A contact compared as a URI (RFC 3261 §19.1.4), not as bytes.
    result = await siprouter("ul", "rm", *cfg, "alice", "sip:alice@192.0.2.11")
    assert result.exit_code == EXIT_FAILED  # the port differs: no such contact
    result = await siprouter("ul", "rm", *cfg, "alice", "SIP:alice@192.0.2.11:5060")
    assert (result.exit_code, result.stdout.strip()) == (0, "removed 1 binding of alice")
    assert [b.contact for b in await location.get("alice")] == ["sip:alice@192.0.2.10:5060"]
    result = await siprouter("ul", "rm", *cfg, "bob")
    assert (result.exit_code, result.stdout.strip()) == (0, "removed 1 binding of bob")
    result = await siprouter("ul", "rm", *cfg, "bob")
    assert result.exit_code == EXIT_FAILED and "not found" in result.stderr
    assert await location.aors() == ["alice"]


async def test_http_with_the_token(running, config_file: Path) -> None:
    server, _ = running
    url = server.mgmt.url
    result = await siprouter("rpc", "-c", str(config_file), "--url", url, "core.uptime")
    assert result.exit_code == 0, result.output  # token from the configuration
    result = await siprouter("rpc", "--url", url, "--token", "wrong-token-0123456789",
                             "core.uptime")
    assert result.exit_code == EXIT_FAILED
    assert "Unauthorized" in result.stderr
    result = await siprouter("ul", "show", "--url", url, env={"SIPROUTER_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output


async def test_no_server_running_exits_2_with_a_clear_message(config_file: Path,
                                                              tmp_path: Path) -> None:
    sock = tmp_path / "data" / "siprouter.sock"
    for args in (["rpc", "core.version"], ["ul", "show"], ["ul", "rm", "alice"]):
        result = await siprouter(*args, "-c", str(config_file))
        assert result.exit_code == EXIT_UNAVAILABLE, result.output
        assert f"no siprouter is running: cannot connect to {sock}" in result.stderr
        assert "Traceback" not in result.output
    result = await siprouter("rpc", "--url", "http://127.0.0.1:9/RPC", "core.version")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "no siprouter is running: cannot connect to http://127.0.0.1:9/RPC" in result.stderr


async def test_stopped_server_is_reported(config_file: Path, tmp_path: Path) -> None:
    server = Server(load_config(config_file))
    await server.start()
    try:
        result = await siprouter("rpc", "-c", str(config_file), "core.version")
        assert result.exit_code == 0, result.output
    finally:
        await server.stop()
    result = await siprouter("rpc", "-c", str(config_file), "core.version")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "no siprouter is running" in result.stderr


async def test_management_disabled_or_without_listener(tmp_path: Path, config_file) -> None:
    off = tmp_path / "off.toml"
    off.write_text("[mgmt]\nenabled = false\n")
    result = await siprouter("rpc", "-c", str(off), "core.version")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "management is disabled" in result.stderr
    none = tmp_path / "none.toml"
    none.write_text('[mgmt]\nunix_socket = ""\nhttp_listen = ""\n')
    result = await siprouter("ul", "show", "-c", str(none))
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "no management listener" in result.stderr


def test_siprouter_run_then_rpc_as_processes(tmp_path: Path) -> None:
    """The real commands, with only SIPROUTER_CONFIG and XDG_DATA_HOME to share: the
    socket is found in the default data directory as the server made it."""
    (tmp_path / "s.toml").write_text('[server]\nlisten = ["udp:127.0.0.1:0"]\n'
                                     '[routing]\nreload_on_change = false\n'
                                     '[mgmt]\nhttp_listen = ""\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_DATA_HOME": str(tmp_path / "xdg"),
           "SIPROUTER_CONFIG": str(tmp_path / "s.toml")}
    sock = tmp_path / "xdg" / "siprouter" / "siprouter.sock"

    def rpc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "siprouter", "rpc", *args], env=env,
                              capture_output=True, text=True, timeout=20)

    server = subprocess.Popen([sys.executable, "-m", "siprouter", "run"], env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not sock.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), "the server did not make its socket"
        done = rpc("core.info")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["pid"] == server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, err = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert server.returncode == 0, err
    assert not sock.exists()  # removed at stop
    done = rpc("core.info")
    assert done.returncode == EXIT_UNAVAILABLE
    assert done.stderr.strip() == (f"siprouter: no siprouter is running: cannot connect to "
                                   f"{sock} (No such file or directory)")
