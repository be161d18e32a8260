# SPDX-License-Identifier: Apache-2.0
"""``siprouter ds list|set-state|reload`` against a running server whose ``[dispatcher]``
reads a list file, and the server's refusal to start with a bad list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from siprouter.cli.main import main
from siprouter.cli.rpc import EXIT_FAILED, EXIT_UNAVAILABLE
from siprouter.config import ConfigError, load_config
from siprouter.server import Server

LIST = """\
# set 1: two gateways, set 2: one
1 sip:10.0.0.1:5060 0 0 weight=50
1 sip:10.0.0.2:5060
2 sip:10.0.0.3:5080
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SIPROUTER_CONFIG", "SIPROUTER_URL", "SIPROUTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "dispatcher.list").write_text(LIST)
    path = tmp_path / "siprouter.toml"
    path.write_text('[server]\nlisten = ["udp:127.0.0.1:0"]\ndata_dir = "data"\n'
                    '[routing]\nreload_on_change = false\n[mgmt]\nhttp_listen = ""\n'
                    '[dispatcher]\nlist_file = "dispatcher.list"\nds_ping_interval = 0\n')
    return path


async def siprouter(*args: str) -> Result:
    return await asyncio.wait_for(asyncio.to_thread(
        CliRunner().invoke, main, list(args), catch_exceptions=False), 20)


async def test_ds_list_set_state_and_reload(config_file: Path, tmp_path: Path) -> None:
    server = Server(load_config(config_file))
    await server.start()
    try:
        assert server.core.context.dispatcher is server.modules["dispatcher"]
        out = await siprouter("ds", "list", "-c", str(config_file))
        assert out.exit_code == 0, out.output
        assert "sip:10.0.0.1:5060" in out.stdout and "sip:10.0.0.3:5080" in out.stdout
        assert "weight=50" in out.stdout

        out = await siprouter("ds", "set-state", "-c", str(config_file), "i", "1",
                              "sip:10.0.0.2:5060")
        assert out.exit_code == 0, out.output
        listed = await siprouter("ds", "list", "--json", "-c", str(config_file))
        assert "inactive" in listed.stdout

        out = await siprouter("ds", "set-state", "-c", str(config_file), "a", "7",
                              "sip:10.0.0.2:5060")
        assert out.exit_code == EXIT_FAILED

        # A bad list is refused and the sets in use stay.
        (tmp_path / "dispatcher.list").write_text(LIST + "x not-a-uri\n")
        out = await siprouter("ds", "reload", "-c", str(config_file))
        assert out.exit_code == EXIT_FAILED
        assert "dispatcher.list:5: expected an integer set id" in out.stderr
        (tmp_path / "dispatcher.list").write_text("3 sip:10.0.0.9:5060\n")
        out = await siprouter("ds", "reload", "-c", str(config_file))
        assert out.exit_code == 0, out.output
        listed = json.loads((await siprouter("ds", "list", "--json", "-c",
                                             str(config_file))).stdout)
        assert "10.0.0.9" in json.dumps(listed) and "10.0.0.1" not in json.dumps(listed)
    finally:
        await server.stop()
    out = await siprouter("ds", "list", "-c", str(config_file))
    assert out.exit_code == EXIT_UNAVAILABLE
    assert "no siprouter is running" in out.stderr


async def test_a_bad_list_file_stops_the_server_at_start(config_file: Path,
                                                         tmp_path: Path) -> None:
    (tmp_path / "dispatcher.list").write_text("1 sip:10.0.0.1\none two\n")
    server = Server(load_config(config_file))
    try:
        with pytest.raises(ConfigError) as info:
            await server.start()
        assert info.value.key == "dispatcher.list_file"
        assert "dispatcher.list:2" in str(info.value)
    finally:
        await server.stop()
