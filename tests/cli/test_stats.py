# SPDX-License-Identifier: Apache-2.0
"""``stats.get`` / ``stats.reset`` and ``siprouter stats`` against a running server that
has received real SIP messages over UDP."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from siprouter.cli.main import main
from siprouter.cli.rpc import EXIT_FAILED, EXIT_UNAVAILABLE
from siprouter.config import load_config
from siprouter.script.testing import make_request, sip_text
from siprouter.server import Server


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SIPROUTER_CONFIG", "SIPROUTER_URL", "SIPROUTER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "siprouter.toml"
    path.write_text('[server]\nlisten = ["udp:127.0.0.1:0"]\ndata_dir = "data"\n'
                    '[routing]\nreload_on_change = false\n[mgmt]\nhttp_listen = ""\n')
    return path


async def siprouter(*args: str) -> Result:
    return await asyncio.wait_for(asyncio.to_thread(
        CliRunner().invoke, main, list(args), catch_exceptions=False), 20)


async def _options_pings(server: Server, n: int) -> None:
    """``n`` OPTIONS to the server itself (answered 200 by the default script)."""
    port = server.transport.sockets[0].port
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        here = sock.getsockname()[1]
        for _ in range(n):
            msg = sip_text(make_request("OPTIONS", f"sip:127.0.0.1:{port}",
                                        via_host=f"127.0.0.1:{here}"))
            await loop.sock_sendto(sock, msg, ("127.0.0.1", port))
            answer = await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)
            assert answer.startswith(b"SIP/2.0 200")


async def test_stats_count_real_requests_and_reset(config_file: Path) -> None:
    server = Server(load_config(config_file))
    await server.start()
    try:
        await _options_pings(server, 3)
        out = await siprouter("stats", "-c", str(config_file), "core:rcv_requests")
        assert out.exit_code == 0, out.output
        assert out.stdout.split() == ["core:rcv_requests", "=", "3"]
        out = await siprouter("stats", "--json", "-c", str(config_file), "core")
        core = json.loads(out.stdout)
        assert core["core:rcv_requests"] == 3 and core["core:sent_replies"] == 3
        everything = json.loads((await siprouter("stats", "--json", "-c",
                                                 str(config_file))).stdout)
        assert {"tm:created", "dialog:active", "usrloc:registered_contacts"} <= set(everything)

        out = await siprouter("stats", "--reset", "-c", str(config_file), "core")
        assert out.exit_code == 0 and "counters reset" in out.stdout, out.output
        out = await siprouter("stats", "--json", "-c", str(config_file), "core:rcv_requests")
        assert json.loads(out.stdout) == {"core:rcv_requests": 0}

        out = await siprouter("stats", "-c", str(config_file), "nosuch")
        assert out.exit_code == EXIT_FAILED and "unknown statistics group" in out.stderr
        out = await siprouter("stats", "-c", str(config_file), "core:nosuch")
        assert out.exit_code == EXIT_FAILED and "no statistic" in out.stderr
    finally:
        await server.stop()
    out = await siprouter("stats", "-c", str(config_file))
    assert out.exit_code == EXIT_UNAVAILABLE


async def test_metrics_endpoint_is_prometheus_text(config_file: Path, tmp_path: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    token = "metrics-test-token-0123456789"
    config_file.write_text(config_file.read_text().replace(
        'http_listen = ""', f'http_listen = "127.0.0.1:0"\ntoken = "{token}"'))
    server = Server(load_config(config_file))
    await server.start()
    try:
        await _options_pings(server, 2)
        host, port = server.mgmt.http_address[:2]
        url = f"http://{host}:{port}/metrics"

        def get(auth: str | None) -> tuple[int, str, str]:
            req = urllib.request.Request(url)
            if auth:
                req.add_header("Authorization", auth)
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return resp.status, resp.headers["Content-Type"], resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, "", ""

        status, ctype, text = await asyncio.to_thread(get, f"Bearer {token}")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        rcv = families["siprouter_core_rcv_requests"]
        assert rcv.type == "counter"
        assert [(s.labels, s.value) for s in rcv.samples if s.name.endswith("_total")] == [
            ({"method": "OPTIONS", "transport": "udp"}, 2)]
        assert families["siprouter_usrloc_registered_contacts"].type == "gauge"
        assert families["siprouter_tm_replies"].type == "counter"
        assert families["siprouter_tm_final_response_seconds"].type == "histogram"
        assert (await asyncio.to_thread(get, None))[0] == 401
        assert (await asyncio.to_thread(get, "Bearer wrong-token-0123456789"))[0] == 401
    finally:
        await server.stop()
