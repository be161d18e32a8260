# SPDX-License-Identifier: Apache-2.0
"""Statistics and /metrics after real calls (issue 7, "Done when"): SIPp calls through the
stateful proxy with Record-Route, then ``stats.get`` over the UNIX socket and
``GET /metrics`` over HTTP must show exactly N INVITE transactions, N 2xx to INVITE and N
2xx to BYE, with retransmitted INVITEs counted apart; prometheus_client's own parser
reads /metrics; with JSON logging at debug level every per-message line has the Call-ID.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from e2e_support import (
    E2E_SCRIPTS,
    SCENARIOS,
    SIPP,
    SIPP_MISSING,
    SiprouterFactory,
    SiprouterProcess,
    finish_sipp,
    free_port,
    read_sipp_trace,
    run_sipp_scenario,
    start_sipp_scenario,
    stop_process,
)
from prometheus_client.parser import text_string_to_metric_families

from siprouter.mgmt.client import MgmtClient

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)]

HOST = "127.0.0.1"


def _start(siprouter: SiprouterFactory, tmp_path: Path, uas_port: int, *,
           log: str = "warning", fmt: str = "text") -> tuple[SiprouterProcess, int, Path]:
    http_port = free_port(HOST)
    data_dir = tmp_path / "data"
    server = siprouter.start(
        E2E_SCRIPTS / "record_route.py", protos=("udp",), data_dir=data_dir,
        params={"next_hop": f"sip:uas@{HOST}:{uas_port}"}, log_level=log,
        extra_toml=f'[log]\nformat = "{fmt}"\n[mgmt]\nhttp_listen = "{HOST}:{http_port}"\n')
    return server, http_port, data_dir / "siprouter.sock"


def _calls(tmp_path: Path, server: SiprouterProcess, uas_port: int, calls: int,
           caller: str = "uac_call.xml", callee_delay_ms: int = 0) -> None:
    uas = start_sipp_scenario(tmp_path, HOST, uas_port, SCENARIOS / "uas_answer.xml",
                              transport="u1", calls=calls, timeout=30, label="uas",
                              extra=("-d", str(callee_delay_ms)))
    try:
        uac = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / caller,
                                calls=calls, rate=100, transport="u1", timeout=30,
                                label="uac", extra=("-d", "100"))
        uas_result = finish_sipp(uas, tmp_path, "uas", 10.0)
    finally:
        stop_process(uas)
    why = uac.diagnostics() + uas_result.diagnostics() + server.log_tail(40)
    assert uac.returncode == 0 and uac.successful == calls and uac.failed == 0, why


def _metrics(http_port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://{HOST}:{http_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _sample(samples: list, suffix: str = "_total", **labels: str) -> float:
    found = [s.value for s in samples if s.name.endswith(suffix) and s.labels == labels]
    assert len(found) == 1, (labels, samples)
    return found[0]


def test_n_calls_show_n_transactions_and_n_2xx_to_invite_and_bye(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    calls = 40
    uas_port = free_port(HOST)
    server, http_port, sock = _start(siprouter, tmp_path, uas_port)
    _calls(tmp_path, server, uas_port, calls)

    stats = MgmtClient(unix_socket=sock).call("stats.get", ["all"])
    assert stats["tm:created_invite"] == calls
    assert stats["tm:created_bye"] == calls
    assert stats["tm:replied_2xx_invite"] == calls
    assert stats["tm:replied_2xx_bye"] == calls
    assert stats["tm:retransmissions"] == 0
    # INVITE, ACK and BYE from the caller: ACK is end to end, no transaction.
    assert stats["core:rcv_requests_invite"] == calls
    assert stats["core:rcv_requests_ack"] == calls
    assert stats["core:rcv_requests_bye"] == calls

    m = _metrics(http_port)
    assert _sample(m["siprouter_tm_transactions"], method="INVITE") == calls
    assert _sample(m["siprouter_tm_replies"], method="INVITE", **{"class": "2xx"}) == calls
    assert _sample(m["siprouter_tm_replies"], method="BYE", **{"class": "2xx"}) == calls
    assert _sample(m["siprouter_core_rcv_requests"], method="INVITE", transport="udp") == calls
    # The callee's 100/180/200 to the INVITE and 200 to the BYE reached the proxy.
    assert _sample(m["siprouter_core_rcv_replies"], transport="udp", **{"class": "2xx"}) \
        == 2 * calls
    # One latency observation per transaction, per method; buckets cumulative.
    hist = m["siprouter_tm_final_response_seconds"]
    assert _sample(hist, "_count", method="INVITE") == calls
    assert _sample(hist, "_count", method="BYE") == calls
    assert _sample(hist, "_bucket", method="INVITE", le="+Inf") == calls
    invite_buckets = [s.value for s in hist
                      if s.name.endswith("_bucket") and s.labels["method"] == "INVITE"]
    assert invite_buckets == sorted(invite_buckets)
    assert _sample(hist, "_sum", method="INVITE") > 0
    assert server.stop() == 0 and "Traceback" not in server.log_text(), server.log_tail()


def test_retransmitted_invites_are_counted_apart(siprouter: SiprouterFactory,
                                                 tmp_path: Path) -> None:
    """The caller loses every provisional response and retransmits its INVITE while the
    callee waits 0.9 s to answer: one transaction per call, the copies counted as
    retransmissions, exactly as many as the caller sent beyond its first."""
    calls = 5
    uas_port = free_port(HOST)
    server, http_port, sock = _start(siprouter, tmp_path, uas_port)
    _calls(tmp_path, server, uas_port, calls, "uac_invite_retransmitted.xml", 900)

    sent = Counter(e.call_id for e in read_sipp_trace(tmp_path, "uac")
                   if e.direction == "sent" and e.method == "INVITE")
    copies = sum(sent.values()) - calls
    assert copies >= calls, sent  # the test means something only if there were copies
    stats = MgmtClient(unix_socket=sock).call("stats.get", ["tm"])
    assert stats["tm:created_invite"] == calls
    assert stats["tm:replied_2xx_invite"] == calls
    assert stats["tm:retransmissions"] == copies
    m = _metrics(http_port)
    assert _sample(m["siprouter_tm_retransmissions"], method="INVITE") == copies
    assert _sample(m["siprouter_core_rcv_requests"], method="INVITE", transport="udp") \
        == calls + copies


def test_json_debug_log_has_the_call_id_on_every_per_message_line(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    calls = 3
    uas_port = free_port(HOST)
    server, _http_port, _sock = _start(siprouter, tmp_path, uas_port, log="debug", fmt="json")
    _calls(tmp_path, server, uas_port, calls)
    assert server.stop() == 0, server.log_tail()

    call_ids = {e.call_id for e in read_sipp_trace(tmp_path, "uac")}
    per_message = []
    for line in server.log_text().splitlines():
        record = json.loads(line)  # every line is one JSON object
        if record["logger"] in ("siprouter.core", "siprouter.tm") \
                and record["level"] == "debug":
            per_message.append(record)
    assert per_message, server.log_tail()
    for record in per_message:
        assert record.get("call_id") in call_ids, record
    # Each call is followed from its INVITE to the 200 for its BYE.
    for call_id in call_ids:
        msgs = [r["msg"] for r in per_message if r["call_id"] == call_id]
        assert any(m.startswith("received INVITE") for m in msgs), msgs
        assert any(m.startswith("final 200 to BYE") for m in msgs), msgs
