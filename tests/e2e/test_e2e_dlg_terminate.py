# SPDX-License-Identifier: Apache-2.0
"""End to end: ``dlg.terminate`` (issue 7; Kamailio ``dlg.end_dlg``). A SIPp caller calls
a SIPp callee through siprouter (tests/e2e/scripts/record_route.py with ``track_dialog``:
Record-Route and dialog tracking); neither hangs up. Over the management RPC (HTTP for the command, the UNIX
socket for the listing) the call is ended: both SIPp sides receive the proxy's BYE
(RFC 3261 §15.1.1, built per §12.2.1.1) and answer 200, the command reports both 200s,
and ``dlg.list`` no longer shows the call. One call; every wait is bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    E2E_SCRIPTS,
    SCENARIOS,
    SIPP,
    SIPP_MISSING,
    SiprouterFactory,
    finish_sipp,
    free_port,
    header_values,
    read_sipp_trace,
    start_sipp_scenario,
    stop_process,
)

from siprouter.mgmt.client import MgmtCallError, MgmtClient
from siprouter.mgmt.endpoints import SOCKET_NAME

pytestmark = pytest.mark.e2e
needs_sipp = pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)

HOST = "127.0.0.1"
TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]


def _wait_for_confirmed(client: MgmtClient, seconds: float) -> dict[str, Any] | None:
    """The first dialog dlg.list shows as CONFIRMED (state 4), polled for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for d in client.call("dlg.list"):
            if d["state"] == 4:
                return d
        time.sleep(0.1)
    return None


def _bye_received(tmp_path: Path, label: str) -> list[bytes]:
    return [e.data for e in read_sipp_trace(tmp_path, label)
            if e.direction == "received" and e.data.startswith(b"BYE ")]


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_dlg_terminate_sends_bye_to_both_sides_and_ends_the_call(
        siprouter: SiprouterFactory, tmp_path: Path, transport: str) -> None:
    # Over TCP the caller's BYE goes on the connection its INVITE came on (its source),
    # the callee's on the connection the proxy opened to it.
    proto = "tcp" if transport == "t1" else "udp"
    uas_port, http_port = free_port(HOST), free_port(HOST)
    uas = start_sipp_scenario(tmp_path, HOST, uas_port, SCENARIOS / "uas_answer.xml",
                              transport=transport, calls=1, timeout=30, label="callee")
    uac = None
    try:
        server = siprouter.start(
            E2E_SCRIPTS / "record_route.py", protos=(proto,), log_level="info",
            params={"next_hop": f"sip:uas@{HOST}:{uas_port};transport={proto}",
                    "track_dialog": True},
            extra_toml=f'[mgmt]\nhttp_listen = "{HOST}:{http_port}"\n')
        unix = MgmtClient(unix_socket=tmp_path / "data-0" / SOCKET_NAME, timeout=10)
        http = MgmtClient(url=f"http://{HOST}:{http_port}/RPC", timeout=40)
        uac = start_sipp_scenario(
            tmp_path, HOST, free_port(HOST), SCENARIOS / "uac_call_wait_bye.xml",
            transport=transport, calls=1, timeout=30, label="caller",
            extra=["-r", "1", "-rp", "1000", "-recv_timeout", "25000", server.hostport])
        dlg = _wait_for_confirmed(unix, 10)
        assert dlg is not None, server.log_tail(40)

        result = http.call("dlg.terminate", {"id": dlg["id"]})

        assert result["id"] == dlg["id"] and result["state_name"] == "TERMINATED"
        assert result["end_reason"] == "terminated by management"
        byes = {b["side"]: b for b in result["bye"]}
        assert set(byes) == {"callee", "caller"}
        assert byes["callee"]["status"] == 200 and byes["caller"]["status"] == 200, result
        assert byes["callee"]["ruri"] == dlg["callee"]["contact"]
        assert byes["caller"]["ruri"] == dlg["caller"]["contact"]
        assert byes["callee"]["cseq"] == dlg["caller"]["cseq"] + 1
        # The call is gone from the live list.
        assert all(d["id"] != dlg["id"] for d in unix.call("dlg.list"))
        # Ending it again, or an id never seen: a clear error, no BYE.
        for bad in (dlg["id"], "no-such-dialog"):
            with pytest.raises(MgmtCallError) as err:
                http.call("dlg.terminate", {"id": bad})
            assert err.value.code == -32602
            assert f"no dialog {bad}; dlg.list shows the live ones" in err.value.message

        caller = finish_sipp(uac, tmp_path, "caller", 10)
        callee = finish_sipp(uas, tmp_path, "callee", 10)
    finally:
        if uac is not None:
            stop_process(uac)
        stop_process(uas)
    why = caller.diagnostics() + "\n" + callee.diagnostics() + "\n" + server.log_tail(40)
    assert caller.returncode == 0 and caller.successful == 1, why
    assert callee.returncode == 0 and callee.successful == 1, why
    # What crossed the wire: one BYE (and no retransmission needed) on each side, with the
    # dialog's tags in the order each side expects (§12.2.1.1).
    (to_caller,) = _bye_received(tmp_path, "caller")
    (to_callee,) = _bye_received(tmp_path, "callee")
    caller_tag, callee_tag = dlg["caller"]["tag"], dlg["callee"]["tag"]
    assert f"tag={callee_tag}" in header_values(to_caller, "From")[0]
    assert f"tag={caller_tag}" in header_values(to_caller, "To")[0]
    assert f"tag={caller_tag}" in header_values(to_callee, "From")[0]
    assert f"tag={callee_tag}" in header_values(to_callee, "To")[0]
    assert header_values(to_callee, "Call-ID") == [dlg["call_id"]]
    assert header_values(to_caller, "Route") == [] and header_values(to_callee, "Route") == []
    assert server.alive()
