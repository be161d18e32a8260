# SPDX-License-Identifier: Apache-2.0
"""End to end: the dispatcher in front of SIPp callees on loopback (issue 6, "Done when",
first part), with examples/dispatcher.py as the routing script: round robin spreads the
calls exactly, and when a callee is down every call fails over to another in the
failure handler, none lost. Bounded: few calls, SIPp -timeout, fr_timer 1 s."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from e2e_support import (
    SCENARIOS,
    SIPP,
    SIPP_MISSING,
    SiprouterFactory,
    finish_sipp,
    free_port,
    read_sipp_trace,
    run_sipp_scenario,
    start_sipp_scenario,
    stop_process,
)

pytestmark = pytest.mark.e2e
needs_sipp = pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)

HOST = "127.0.0.1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dispatcher.py"


def _server(siprouter: SiprouterFactory, tmp_path: Path, ports: list[int], alg: int = 4):
    listing = tmp_path / "dispatcher.list"
    listing.write_text("".join(f"1 sip:{HOST}:{p}\n" for p in ports))
    return siprouter.start(EXAMPLE, protos=("udp",),
                           params={"ds_set": "1", "ds_alg": str(alg)},
                           log_level="info",
                           extra_toml=(f'[dispatcher]\nlist_file = "{listing}"\nflags = 2\n'
                                       "ds_ping_interval = 0\n"
                                       "[transaction]\nfr_timer = 1\n"))


def _invites(tmp_path: Path, label: str) -> int:
    return sum(1 for e in read_sipp_trace(tmp_path, label)
               if e.direction == "received" and e.method == "INVITE")


@needs_sipp
def test_round_robin_spreads_calls_exactly(siprouter: SiprouterFactory, tmp_path: Path) -> None:
    per_callee, n = 6, 3
    callees = []
    try:
        for i in range(n):
            port = free_port(HOST)
            callees.append((f"uas{i}", start_sipp_scenario(
                tmp_path, HOST, port, SCENARIOS / "uas_answer.xml", calls=per_callee,
                timeout=30, label=f"uas{i}"), port))
        server = _server(siprouter, tmp_path, [p for _, _, p in callees])
        uac = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "uac_call.xml",
                                calls=per_callee * n, rate=10, timeout=30)
        results = [finish_sipp(proc, tmp_path, label, 10) for label, proc, _ in callees]
    finally:
        for _, proc, _ in callees:
            stop_process(proc)
    why = uac.diagnostics() + "\n" + server.log_tail(40)
    assert uac.returncode == 0 and uac.successful == per_callee * n, why
    for r in results:  # each callee exits by itself after exactly its share
        assert r.returncode == 0 and r.successful == per_callee, r.diagnostics() + why
    assert server.alive()


@needs_sipp
def test_calls_fail_over_from_a_stopped_callee_and_none_is_lost(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    calls = 9
    down = free_port(HOST)  # nothing listens there: its branches time out (fr_timer 1 s)
    up = []
    try:
        for i in range(2):
            port = free_port(HOST)
            up.append((f"up{i}", start_sipp_scenario(
                tmp_path, HOST, port, SCENARIOS / "uas_answer.xml", timeout=40,
                label=f"up{i}"), port))
        server = _server(siprouter, tmp_path, [up[0][2], down, up[1][2]])
        uac = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "uac_call.xml",
                                calls=calls, rate=5, timeout=40,
                                extra=["-recv_timeout", "8000"])
    finally:
        for _, proc, _ in up:
            stop_process(proc)
    why = uac.diagnostics() + "\n" + server.log_tail(60)
    assert uac.returncode == 0 and uac.successful == calls and uac.failed == 0, why
    answered = Counter({label: _invites(tmp_path, label) for label, _, _ in up})
    assert sum(answered.values()) == calls, (answered, why)
    # The stopped callee was tried, failed over from, and then marked: later calls skip it.
    marked = [line for line in server.log_text().splitlines()
              if f"{HOST}:{down}" in line and "-> probing" in line]
    assert len(marked) == 1, why
    assert server.alive()


@needs_sipp
def test_probing_marks_a_dead_destination_and_brings_it_back(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    import time

    port = free_port(HOST)
    listing = tmp_path / "dispatcher.list"
    listing.write_text(f"1 sip:{HOST}:{port}\n")
    server = siprouter.start(EXAMPLE, protos=("udp",), log_level="info", extra_toml=(
        f'[dispatcher]\nlist_file = "{listing}"\nds_ping_interval = 1\nds_probing_mode = 1\n'
        "ds_probing_threshhold = 1\n[transaction]\nfr_timer = 1\n"))

    def wait_for(text: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(f"{HOST}:{port}" in line and text in line
                   for line in server.log_text().splitlines()):
                return True
            time.sleep(0.2)
        return False

    # Nothing answers: the OPTIONS times out (408) and the destination goes to probing.
    assert wait_for("-> probing", 10), server.log_tail(40)
    responder = start_sipp_scenario(tmp_path, HOST, port, SCENARIOS / "uas_options.xml",
                                    timeout=30, label="options")
    try:
        # It answers 200 again: active.
        assert wait_for("-> active", 10), server.log_tail(40)
    finally:
        stop_process(responder)
    assert server.alive()


@needs_sipp
def test_set_state_and_reload_take_effect_on_the_next_calls(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    callees = []
    try:
        for i in range(3):
            port = free_port(HOST)
            callees.append((f"gw{i}", start_sipp_scenario(
                tmp_path, HOST, port, SCENARIOS / "uas_answer.xml", timeout=60,
                label=f"gw{i}"), port))
        ports = [p for _, _, p in callees]
        server = _server(siprouter, tmp_path, ports)
        data_dir = tmp_path / "data-0"
        env = dict(os.environ, PYTHONPATH=str(EXAMPLE.parents[1]))
        env.pop("SIPROUTER_CONFIG", None)

        def ds(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "siprouter", "ds", *args,
                                   "--data-dir", str(data_dir)],
                                  capture_output=True, text=True, timeout=30, env=env)

        def calls(n: int, label: str) -> None:
            uac = run_sipp_scenario(tmp_path, HOST, server.hostport,
                                    SCENARIOS / "uac_call.xml", calls=n, rate=10,
                                    timeout=30, label=label)
            assert uac.returncode == 0 and uac.successful == n and uac.failed == 0, \
                uac.diagnostics() + server.log_tail(40)

        calls(6, "before")                       # round robin: 2 each
        done = ds("set-state", "i", "1", f"sip:{HOST}:{ports[1]}")
        assert done.returncode == 0, done.stdout + done.stderr
        calls(6, "inactive")                     # gw1 skipped: 3 each to gw0 and gw2
        (tmp_path / "dispatcher.list").write_text(f"1 sip:{HOST}:{ports[2]}\n")
        done = ds("reload")
        assert done.returncode == 0, done.stdout + done.stderr
        calls(3, "reloaded")                     # only gw2 is left
    finally:
        for _, proc, _ in callees:
            stop_process(proc)
    got = {label: _invites(tmp_path, label) for label, _, _ in callees}
    assert got == {"gw0": 5, "gw1": 2, "gw2": 8}, got
    assert server.alive()


@needs_sipp
@pytest.mark.parametrize(("alg", "name"), [(0, "call-id hash"), (3, "r-uri hash"),
                                           (6, "random")])
def test_other_algorithms_spread_or_stick(siprouter: SiprouterFactory, tmp_path: Path,
                                          alg: int, name: str) -> None:
    # 24 calls over three callees: Call-ID hash and random reach every callee (the
    # chance that one gets none is about 1e-4); every SIPp call has the same R-URI, so
    # the R-URI hash sends them all to one callee.
    n = 24
    callees = []
    try:
        for i in range(3):
            port = free_port(HOST)
            callees.append((f"c{i}", start_sipp_scenario(
                tmp_path, HOST, port, SCENARIOS / "uas_answer.xml", timeout=40,
                label=f"c{i}"), port))
        server = _server(siprouter, tmp_path, [p for _, _, p in callees], alg=alg)
        uac = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "uac_call.xml",
                                calls=n, rate=20, timeout=30)
    finally:
        for _, proc, _ in callees:
            stop_process(proc)
    assert uac.returncode == 0 and uac.successful == n, uac.diagnostics() + server.log_tail()
    got = sorted(_invites(tmp_path, label) for label, _, _ in callees)
    assert sum(got) == n, got
    if alg == 3:
        assert got == [0, 0, n], f"{name}: {got}"
    else:
        assert got[0] >= 1, f"{name}: {got}"
