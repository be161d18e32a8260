# SPDX-License-Identifier: Apache-2.0
"""``siprouter reload`` and ``siprouter dbt dump|reload`` against a real running Server
(its UNIX socket in the data directory), and against none."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from siprouter.cli.main import main
from siprouter.cli.rpc import EXIT_FAILED, EXIT_UNAVAILABLE
from siprouter.config import load_config
from siprouter.server import Server

SCRIPT = "async def request_route(req, ctx):\n    req.reply(404, 'Version {}')\n"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SIPROUTER_CONFIG", "SIPROUTER_URL", "SIPROUTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "route.py").write_text(SCRIPT.format("One"))
    path = tmp_path / "siprouter.toml"
    path.write_text('[server]\nlisten = ["udp:127.0.0.1:0"]\ndata_dir = "data"\n'
                    f'[routing]\nscript = "{tmp_path / "route.py"}"\n'
                    'reload_on_change = false\n[mgmt]\nhttp_listen = ""\n')
    return path


async def siprouter(*args: str) -> Result:
    return await asyncio.wait_for(asyncio.to_thread(
        CliRunner().invoke, main, list(args), catch_exceptions=False), 20)


async def test_reload_loads_the_script_again_or_says_why_not(config_file: Path,
                                                             tmp_path: Path) -> None:
    script = tmp_path / "route.py"
    server = Server(load_config(config_file))
    await server.start()
    try:
        first = server.core.script
        script.write_text(SCRIPT.format("Two"))
        out = await siprouter("reload", "-c", str(config_file))
        assert out.exit_code == 0, out.output
        assert out.stdout == f"reloaded routing script {script}\n"
        second = server.core.script
        assert second is not first

        script.write_text("async def request_route(req, ctx):\n    return (\n")
        out = await siprouter("reload", "-c", str(config_file))
        assert out.exit_code == EXIT_FAILED, out.output
        assert "script not reloaded: " in out.stderr and "route.py" in out.stderr
        assert "Traceback" not in out.output
        assert server.core.script is second  # the running script stays

        script.write_text(SCRIPT.format("Three"))
        out = await siprouter("reload", "--json", "-c", str(config_file))
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout) == {"reloaded": True, "script": str(script)}
        assert server.core.script is not second

        # The embedded SQLite database: dbt.* refuses, saying why.
        out = await siprouter("dbt", "dump", "-c", str(config_file))
        assert out.exit_code == EXIT_FAILED
        assert "needs a db_text database (text:///DIR); this server uses sqlite" in out.stderr
    finally:
        await server.stop()
    for args in (["reload"], ["dbt", "dump"], ["dbt", "reload", "subscriber"]):
        out = await siprouter(*args, "-c", str(config_file))
        assert out.exit_code == EXIT_UNAVAILABLE, out.output
        sock = tmp_path / "data" / "siprouter.sock"
        assert f"no siprouter is running: cannot connect to {sock}" in out.stderr
        assert "Traceback" not in out.output


async def test_dbt_dump_and_reload(config_file: Path, tmp_path: Path) -> None:
    dbdir = tmp_path / "dbtext"
    url = f"text://{dbdir}?flush_interval=none"
    config_file.write_text(config_file.read_text() + f'[database]\nurl = "{url}"\n')
    server = Server(load_config(config_file))
    await server.start()
    try:
        out = await siprouter("dbt", "dump", "-c", str(config_file))
        assert out.exit_code == 0, out.output
        assert out.stdout == f"{url}: nothing to write\n"

        await server.storage.insert("subscriber", {"username": "gina",
                                                   "domain": "example.com",
                                                   "password": "pw", "ha1": "", "ha1b": ""})
        assert "gina" not in (dbdir / "subscriber").read_text()
        out = await siprouter("dbt", "dump", "-c", str(config_file), "subscriber")
        assert out.exit_code == 0, out.output
        assert out.stdout == f"{url}: wrote subscriber\n"
        assert ":gina:example.com:pw::" in (dbdir / "subscriber").read_text()

        with (dbdir / "subscriber").open("a") as f:
            f.write("9:hal:example.com:pw2::\n")
        out = await siprouter("dbt", "reload", "-c", str(config_file), "subscriber")
        assert out.exit_code == 0, out.output
        assert out.stdout == f"{url}: read subscriber\n"
        rows = await server.storage.select("subscriber", ["username"], {"username": "hal"})
        assert rows == [{"username": "hal"}]

        with (dbdir / "subscriber").open("a") as f:
            f.write("x:ida:example.com:pw3::\n")
        out = await siprouter("dbt", "reload", "-c", str(config_file), "subscriber")
        assert out.exit_code == EXIT_FAILED
        assert f"{dbdir / 'subscriber'}:4: expected column 'id'" in out.stderr

        out = await siprouter("dbt", "reload", "--json", "-c", str(config_file), "version")
        assert json.loads(out.stdout) == {"reloaded": [{"database": url,
                                                        "tables": ["version"]}]}
    finally:
        await server.stop()
