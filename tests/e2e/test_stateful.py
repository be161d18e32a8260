# SPDX-License-Identifier: Apache-2.0
"""End to end through the stateful proxy (issue 3, "Done when"): SIPp callers and callees
on loopback, siprouter in between running a routing script from tests/e2e/scripts/, the
SIPp scenarios in tests/e2e/scenarios/.

Each test checks two things: SIPp's verdict (every call of the scenario succeeded, on
both sides) and what crossed the wire (SIPp's message traces): Record-Route and Route,
whose Via an in-dialog request carries, where CANCELs went, how long a timeout took, how
many INVITE branches reached a callee. Calls are few and bounded by SIPp's -timeout.
"""

from __future__ import annotations

import socket
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import (
    E2E_SCRIPTS,
    SCENARIOS,
    SIPP,
    SIPP_MISSING,
    SippResult,
    SippTraceEntry,
    SiprouterFactory,
    SiprouterProcess,
    UdpPeer,
    call_id_of,
    finish_sipp,
    free_port,
    header_values,
    invite_request,
    read_sipp_trace,
    run_sipp_scenario,
    start_sipp_scenario,
    status_of,
    stop_process,
)

pytestmark = pytest.mark.e2e
needs_sipp = pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)

HOST = "127.0.0.1"
TRANSPORTS = [pytest.param("u1", id="udp"), pytest.param("t1", id="tcp")]

# SIPp's -timeout for a caller run (an error when reached) and for a callee (it exits by
# itself after its -m calls, long before that when all goes well).
UAC_TIMEOUT = 20
UAS_TIMEOUT = 30
# A callee's wait for the next message of its scenario (CANCEL, ACK, BYE) before the call
# fails: longer than any timer of these tests.
UAS_RECV_TIMEOUT_MS = 6000

# Timers for the timeout tests, small to keep the tests short: Timer B (no response at
# all) and Timer C (a provisional, then nothing), Kamailio's fr_timer / fr_inv_timer.
FR_TIMER = 1.0
FR_INV_TIMER = 2.0
# How late a 408 may come: the event loop, SIPp's 10 ms clock, a loaded box. (Small
# enough to catch a timer that waits for the next UDP retransmission timer, T1 = 0.5 s.)
TIMER_SLACK = 0.35

# -------------------------------------------------------------------------------------------
# Helpers.


@dataclass
class Callee:
    """A SIPp callee: its process, trace label and the Request-URI that reaches it."""

    proc: object
    label: str
    port: int
    uri: str


def _uri(user: str, port: int, transport: str) -> str:
    return f"sip:{user}@{HOST}:{port}" + (";transport=tcp" if transport == "t1" else "")


def _callee(tmp_path: Path, scenario: str, transport: str, calls: int, label: str,
            extra: tuple[str, ...] = ()) -> Callee:
    port = free_port(HOST)
    proc = start_sipp_scenario(
        tmp_path, HOST, port, SCENARIOS / scenario, transport=transport, calls=calls,
        timeout=UAS_TIMEOUT, label=label,
        extra=("-recv_timeout", str(UAS_RECV_TIMEOUT_MS)) + extra)
    return Callee(proc, label, port, _uri(label, port, transport))


def _call(tmp_path: Path, server: SiprouterProcess, scenario: str, transport: str, calls: int,
          rate: int = 20, extra: tuple[str, ...] = ()) -> SippResult:
    return run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / scenario,
                             calls=calls, rate=rate, transport=transport,
                             timeout=UAC_TIMEOUT, label="uac", extra=extra)


def _finish(tmp_path: Path, callees: list[Callee], caller: SippResult) -> list[SippResult]:
    """The callees' results: each exits by itself after its calls; when the caller's run
    failed some never will, so they are stopped sooner."""
    wait = 10.0 if caller.returncode == 0 and caller.failed == 0 else 1.0
    return [finish_sipp(c.proc, tmp_path, c.label, wait) for c in callees]


def _why(server: SiprouterProcess, *results: SippResult) -> str:
    return ("\n".join(r.diagnostics() for r in results)
            + "\n--- siprouter log ---\n" + server.log_tail(60))


def _assert_all_succeeded(result: SippResult, calls: int, why: str) -> None:
    """SIPp ran ``calls`` calls of its scenario and every one succeeded."""
    assert result.returncode == 0, why
    assert result.successful == calls, why
    assert result.failed == 0, why


def _assert_server_clean(server: SiprouterProcess) -> None:
    assert server.alive(), f"siprouter died:\n{server.log_tail()}"
    assert server.stop() == 0, server.log_tail()
    assert "Traceback" not in server.log_text(), server.log_tail(80)


def _by_call(trace: list[SippTraceEntry]) -> dict[str, list[SippTraceEntry]]:
    calls: dict[str, list[SippTraceEntry]] = defaultdict(list)
    for entry in trace:
        calls[entry.call_id or ""].append(entry)
    return calls


def _top_via(entry: SippTraceEntry) -> str:
    vias = entry.headers("Via")
    return vias[0].split(",")[0].strip() if vias else ""


def _branch(via: str) -> str:
    for param in via.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "branch":
            return value.strip()
    return ""


def _sent_by(via: str) -> str:
    """``host:port`` of a Via value (``SIP/2.0/UDP 127.0.0.1:5060;branch=…``)."""
    return via.split(";")[0].split()[-1] if via else ""


def _to_tag(entry: SippTraceEntry) -> str:
    to = entry.headers("To")
    for param in (to[0].split(">")[-1] if to else "").split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "tag":
            return value.strip()
    return ""


def _contacts(entry: SippTraceEntry) -> list[str]:
    """The Contact values of a message, one per URI, in order (no URI here has a comma)."""
    return [c.strip() for value in entry.headers("Contact") for c in value.split(",")]


def _received(trace: list[SippTraceEntry], method: str | None = None,
              status: int | None = None, cseq: str | None = None) -> list[SippTraceEntry]:
    return [e for e in trace if e.direction == "received"
            and (method is None or e.method == method)
            and (status is None or e.status == status)
            and (cseq is None or e.cseq_method == cseq)]


def _sent(trace: list[SippTraceEntry], method: str | None = None,
          status: int | None = None, cseq: str | None = None) -> list[SippTraceEntry]:
    return [e for e in trace if e.direction == "sent"
            and (method is None or e.method == method)
            and (status is None or e.status == status)
            and (cseq is None or e.cseq_method == cseq)]


def _assert_via_proxy(entries: list[SippTraceEntry], server: SiprouterProcess,
                      what: str) -> None:
    """Each message came from the proxy: its top Via is the proxy's."""
    for e in entries:
        assert _sent_by(_top_via(e)) == server.hostport, (
            f"{what} did not come through the proxy {server.hostport}:\n"
            f"{e.data.decode(errors='replace')}")


def _assert_record_routed(entries: list[SippTraceEntry], server: SiprouterProcess,
                          what: str) -> None:
    for e in entries:
        rr = e.headers("Record-Route")
        assert any(server.hostport in v and ";lr" in v for v in rr), (
            f"{what} lacks the proxy's Record-Route <sip:{server.hostport};lr>:\n"
            f"{e.data.decode(errors='replace')}")


# -------------------------------------------------------------------------------------------
# 1. A call through the proxy with Record-Route: ACK and BYE go through it.


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_call_with_record_route(siprouter: SiprouterFactory, tmp_path: Path,
                                transport: str) -> None:
    calls = 50
    uas = _callee(tmp_path, "uas_answer.xml", transport, calls, "uas")
    try:
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": uas.uri})
        uac = _call(tmp_path, server, "uac_call.xml", transport, calls, rate=100)
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)

    caller, callee = read_sipp_trace(tmp_path, "uac"), read_sipp_trace(tmp_path, "uas")
    # RFC 3261 §16.6 step 4: the proxy put itself on the route of every dialog.
    invites = _received(callee, "INVITE")
    assert len(invites) == calls, why
    _assert_record_routed(invites, server, "an INVITE at the callee")
    _assert_record_routed(_received(caller, status=200, cseq="INVITE"), server,
                          "a 200 for the INVITE at the caller")
    # The caller's ACK and BYE carry Route: <proxy;lr> (§12.2.1.1) …
    for e in _sent(caller, "ACK") + _sent(caller, "BYE"):
        routes = e.headers("Route")
        assert routes and server.hostport in routes[0], e.data.decode()
    # … and reach the callee through the proxy (its Via on top), with the proxy's own
    # Route entry removed (§16.4) and the callee's Contact as Request-URI (§16.12).
    for method in ("ACK", "BYE"):
        got = _received(callee, method)
        assert len(got) == calls, f"{len(got)} {method}s reached the callee, not {calls}\n{why}"
        _assert_via_proxy(got, server, f"a {method} at the callee")
        for e in got:
            assert not e.headers("Route"), e.data.decode()
            assert e.start_line.startswith(f"{method} sip:{HOST}:{uas.port};transport="), (
                e.start_line)
    _assert_server_clean(server)


@needs_sipp
def test_call_from_udp_to_tcp_gets_a_double_record_route(siprouter: SiprouterFactory,
                                                         tmp_path: Path) -> None:
    """Caller over UDP, callee over TCP: the proxy record-routes twice (one entry per
    side, Kamailio's double Record-Route), the caller's ACK and BYE carry both as Route,
    and the proxy takes both off before sending them to the callee over TCP."""
    calls = 20
    uas = _callee(tmp_path, "uas_answer.xml", "t1", calls, "uas")
    try:
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": uas.uri})
        uac = _call(tmp_path, server, "uac_call.xml", "u1", calls, rate=50)
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)

    callee = read_sipp_trace(tmp_path, "uas")
    for e in _received(callee, "INVITE"):
        entries = [v.strip() for value in e.headers("Record-Route") for v in value.split(",")]
        ours = [v for v in entries if server.hostport in v and ";lr" in v]
        assert len(ours) == 2, f"not a double Record-Route:\n{e.data.decode()}"
        assert sum("transport=tcp" in v.lower() for v in ours) == 1, e.data.decode()
    for e in _sent(read_sipp_trace(tmp_path, "uac"), "BYE"):
        routes = [v for value in e.headers("Route") for v in value.split(",")]
        assert len(routes) == 2, e.data.decode()
    for method in ("ACK", "BYE"):
        got = _received(callee, method)
        assert len(got) == calls, f"{len(got)} {method}s reached the callee\n{why}"
        for e in got:
            assert e.transport == "TCP" and not e.headers("Route"), e.data.decode()
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 2. A callee that never answers: the caller gets 408 when the configured timer fires.


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("callee_scenario", "timer"),
    [
        # No response at all: Timer B (fr_timer), and no CANCEL ever (§9.1).
        pytest.param("uas_silent.xml", FR_TIMER, id="silent"),
        # 180, then nothing: Timer C (fr_inv_timer); the proxy CANCELs the branch (§16.8).
        pytest.param("uas_ring_cancel.xml", FR_INV_TIMER, id="ringing"),
    ],
)
def test_unanswered_invite_gets_408_when_the_timer_fires(
    siprouter: SiprouterFactory, tmp_path: Path, transport: str, callee_scenario: str,
    timer: float,
) -> None:
    calls = 3
    # The silent callee keeps each call (absorbing the proxy's INVITE retransmissions)
    # until well after the proxy gave up.
    extra = ("-d", str(int((timer + 1) * 1000))) if callee_scenario == "uas_silent.xml" else ()
    uas = _callee(tmp_path, callee_scenario, transport, calls, "uas", extra)
    try:
        server = siprouter.start(
            E2E_SCRIPTS / "record_route.py", params={"next_hop": uas.uri},
            extra_toml=f"[transaction]\nfr_timer = {FR_TIMER}\nfr_inv_timer = {FR_INV_TIMER}\n")
        # 100 ms apart: one call's timer must not hide the next one's lateness.
        uac = _call(tmp_path, server, "uac_expect_408.xml", transport, calls, rate=10)
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)

    caller = _by_call(read_sipp_trace(tmp_path, "uac"))
    assert len(caller) == calls, why
    for call_id, entries in caller.items():
        invite = _sent(entries, "INVITE")[0]
        final = _received(entries, status=408)
        assert len(final) >= 1, f"{call_id}: no 408\n{why}"
        took = final[0].time - invite.time
        assert timer - 0.05 <= took <= timer + TIMER_SLACK, (
            f"{call_id}: 408 after {took:.3f} s, the timer is {timer} s\n{why}")
    callee = read_sipp_trace(tmp_path, "uas")
    cancels = _received(callee, "CANCEL")
    if callee_scenario == "uas_silent.xml":
        # §9.1: no CANCEL for a branch that has not sent a provisional response.
        assert not cancels, f"a CANCEL reached a callee that never answered\n{why}"
    else:
        assert len(cancels) == calls, why
        _assert_via_proxy(cancels, server, "a CANCEL at the callee")
    _assert_server_clean(server)


@needs_sipp
def test_timers_set_by_the_script_win_over_the_configuration(
    siprouter: SiprouterFactory, tmp_path: Path,
) -> None:
    """``relay(fr_inv_timer=…)`` (Kamailio ``t_set_fr``) for one transaction, with the
    configured fr_inv_timer ten times longer."""
    calls = 2
    uas = _callee(tmp_path, "uas_ring_cancel.xml", "u1", calls, "uas")
    try:
        server = siprouter.start(
            E2E_SCRIPTS / "record_route.py",
            params={"next_hop": uas.uri, "fr_timer": str(FR_TIMER),
                    "fr_inv_timer": str(FR_INV_TIMER)},
            extra_toml=f"[transaction]\nfr_inv_timer = {FR_INV_TIMER * 10}\n")
        uac = _call(tmp_path, server, "uac_expect_408.xml", "u1", calls, rate=10)
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        took = _received(entries, status=408)[0].time - _sent(entries, "INVITE")[0].time
        assert FR_INV_TIMER - 0.05 <= took <= FR_INV_TIMER + TIMER_SLACK, (call_id, took, why)
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 3. CANCEL before the answer.


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_before_answer(siprouter: SiprouterFactory, tmp_path: Path,
                              transport: str) -> None:
    """The caller CANCELs a ringing call: it gets 200 for the CANCEL and 487 for the
    INVITE; the CANCEL reaches the callee (§16.10) with the branch of the INVITE the
    proxy sent it (§9.1), and the callee's 487 is ACKed hop by hop."""
    calls = 10
    uas = _callee(tmp_path, "uas_ring_cancel.xml", transport, calls, "uas")
    try:
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": uas.uri})
        uac = _call(tmp_path, server, "uac_cancel.xml", transport, calls, extra=("-d", "300"))
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)

    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uas")).items():
        invites, cancels = _received(entries, "INVITE"), _received(entries, "CANCEL")
        acks = _received(entries, "ACK")
        assert len(cancels) >= 1 and acks, f"{call_id}\n{why}"
        _assert_via_proxy(cancels + acks, server, "a CANCEL or ACK at the callee")
        assert _branch(_top_via(cancels[0])) == _branch(_top_via(invites[0])), (
            f"{call_id}: the CANCEL's branch is not the INVITE's (§9.1)\n{why}")
        assert _branch(_top_via(acks[0])) == _branch(_top_via(invites[0])), (
            f"{call_id}: the ACK for the 487 is not hop by hop (§17.1.1.3)\n{why}")
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        assert len(_received(entries, status=487, cseq="INVITE")) >= 1, f"{call_id}\n{why}"
        assert len(_received(entries, status=200, cseq="CANCEL")) >= 1, f"{call_id}\n{why}"
    _assert_server_clean(server)


@needs_sipp
def test_cancel_before_any_provisional_waits_for_one(siprouter: SiprouterFactory,
                                                     tmp_path: Path) -> None:
    """The caller CANCELs after the proxy's 100 Trying, while the callee has sent nothing
    (it rings only after 1.5 s): the proxy answers the CANCEL at once but sends its own
    CANCEL downstream only after the callee's 180 (§9.1: "the CANCEL request MUST NOT be
    sent" before a provisional response; §16.10)."""
    calls = 5
    uas = _callee(tmp_path, "uas_ring_cancel.xml", "u1", calls, "uas", ("-d", "1500"))
    try:
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": uas.uri})
        uac = _call(tmp_path, server, "uac_cancel_early.xml", "u1", calls,
                    extra=("-d", "100"))
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)
    caller = _by_call(read_sipp_trace(tmp_path, "uac"))
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uas")).items():
        ringing = _sent(entries, status=180)
        cancels = _received(entries, "CANCEL")
        assert ringing and cancels and cancels[0].time >= ringing[0].time, (
            f"{call_id}: the CANCEL reached the callee before its 180\n{why}")
        # … and the caller's CANCEL had been answered before that.
        ok = _received(caller[call_id], status=200, cseq="CANCEL")
        assert ok and ok[0].time < ringing[0].time, f"{call_id}\n{why}"
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 4. Parallel forking.


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_parallel_fork_first_200_wins_and_the_other_branch_is_canceled(
    siprouter: SiprouterFactory, tmp_path: Path, transport: str,
) -> None:
    """Two callees ring; the first answers after 300 ms, the second would ring forever
    (it answers a CANCEL with 200 and its INVITE with 487). The caller gets the first
    200 and nothing of the second branch; the second branch is CANCELed (§16.7 step 10)."""
    calls = 10
    uas1 = _callee(tmp_path, "uas_answer.xml", transport, calls, "uas1", ("-d", "300"))
    uas2 = _callee(tmp_path, "uas_ring_cancel.xml", transport, calls, "uas2")
    try:
        server = siprouter.start(E2E_SCRIPTS / "fork.py",
                                 params={"uas1": uas1.uri, "uas2": uas2.uri})
        uac = _call(tmp_path, server, "uac_call.xml", transport, calls)
        results = _finish(tmp_path, [uas1, uas2], uac)
    finally:
        stop_process(uas1.proc)
        stop_process(uas2.proc)
    why = _why(server, uac, *results)
    _assert_all_succeeded(uac, calls, why)
    for r in results:
        _assert_all_succeeded(r, calls, why)

    first = read_sipp_trace(tmp_path, "uas1")
    second = read_sipp_trace(tmp_path, "uas2")
    assert len(_received(first, "INVITE")) == calls, why
    assert len(_received(second, "INVITE")) == calls, why
    cancels = _received(second, "CANCEL")
    assert len({e.call_id for e in cancels}) == calls, why
    _assert_via_proxy(cancels, server, "a CANCEL at the second callee")
    assert not _received(first, "CANCEL"), f"the branch that answered was CANCELed\n{why}"
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        finals = [e for e in _received(entries, cseq="INVITE") if e.status >= 200]
        assert {e.status for e in finals} == {200}, f"{call_id}: {finals}\n{why}"
        assert len({_to_tag(e) for e in finals}) == 1, f"{call_id}\n{why}"
    _assert_server_clean(server)


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_parallel_fork_both_answer_and_the_caller_gets_both_200s(
    siprouter: SiprouterFactory, tmp_path: Path, transport: str,
) -> None:
    """Neither callee rings: the first answers at once, the second after 300 ms. With
    no provisional response the second branch cannot be CANCELed (§9.1), so its 200
    reaches the caller too (§16.7 step 5); the caller ACKs and BYEs both dialogs."""
    calls = 10
    uas1 = _callee(tmp_path, "uas_answer_at_once.xml", transport, calls, "uas1")
    uas2 = _callee(tmp_path, "uas_answer_at_once.xml", transport, calls, "uas2",
                   ("-d", "300"))
    try:
        server = siprouter.start(E2E_SCRIPTS / "fork.py",
                                 params={"uas1": uas1.uri, "uas2": uas2.uri})
        uac = _call(tmp_path, server, "uac_fork_two_answers.xml", transport, calls)
        results = _finish(tmp_path, [uas1, uas2], uac)
    finally:
        stop_process(uas1.proc)
        stop_process(uas2.proc)
    why = _why(server, uac, *results)
    _assert_all_succeeded(uac, calls, why)
    for r in results:
        _assert_all_succeeded(r, calls, why)

    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        oks = _received(entries, status=200, cseq="INVITE")
        assert len({_to_tag(e) for e in oks}) == 2, f"{call_id}: {len(oks)} 200s\n{why}"
        _assert_record_routed(oks, server, "a 200 at the caller")
    for label in ("uas1", "uas2"):
        callee = read_sipp_trace(tmp_path, label)
        assert not _received(callee, "CANCEL"), f"{label} got a CANCEL\n{why}"
        for method in ("ACK", "BYE"):
            got = _received(callee, method)
            assert len({e.call_id for e in got}) == calls, f"{label} {method}\n{why}"
            _assert_via_proxy(got, server, f"a {method} at {label}")
    _assert_server_clean(server)


@needs_sipp
def test_parallel_fork_with_a_refused_first_target_rings_the_other(
    siprouter: SiprouterFactory, tmp_path: Path,
) -> None:
    """The first branch cannot be sent (a broadcast address is never sent to): it counts
    as a 403 final response of its own, and the fork goes on with the second (§16.7:
    the best response is chosen when *every* branch has a final response).
    Regression: the 403 used to complete the transaction before the second branch was
    started (``_start_branches`` counted pending branches one by one)."""
    calls = 3
    uas = _callee(tmp_path, "uas_answer.xml", "u1", calls, "uas2")
    try:
        server = siprouter.start(E2E_SCRIPTS / "fork.py",
                                 params={"uas1": "sip:nobody@255.255.255.255",
                                         "uas2": uas.uri})
        uac = _call(tmp_path, server, "uac_call.xml", "u1", calls)
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)
    _assert_all_succeeded(uas_result, calls, why)
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 5. Serial forking.


@needs_sipp
@pytest.mark.parametrize(
    ("transport", "mode"),
    [
        pytest.param("u1", "failure_route", id="udp-failure_route"),
        pytest.param("t1", "failure_route", id="tcp-failure_route"),
        pytest.param("u1", "q", id="udp-q"),
    ],
)
def test_serial_fork_tries_the_second_callee_when_the_first_is_busy(
    siprouter: SiprouterFactory, tmp_path: Path, transport: str, mode: str,
) -> None:
    """The first callee answers 486; the script's on_failure relays to the second
    (``mode="failure_route"``), or the branches' q-values order them
    (``mode="q"``, §16.6); the second answers and the call succeeds. The caller never
    sees the 486, and the second callee is rung only after the first said no."""
    calls = 10
    uas1 = _callee(tmp_path, "uas_busy.xml", transport, calls, "uas1")
    uas2 = _callee(tmp_path, "uas_answer.xml", transport, calls, "uas2")
    try:
        server = siprouter.start(E2E_SCRIPTS / "serial.py",
                                 params={"uas1": uas1.uri, "uas2": uas2.uri, "mode": mode})
        uac = _call(tmp_path, server, "uac_call.xml", transport, calls)
        results = _finish(tmp_path, [uas1, uas2], uac)
    finally:
        stop_process(uas1.proc)
        stop_process(uas2.proc)
    why = _why(server, uac, *results)
    _assert_all_succeeded(uac, calls, why)
    for r in results:
        _assert_all_succeeded(r, calls, why)

    first = _by_call(read_sipp_trace(tmp_path, "uas1"))
    second = _by_call(read_sipp_trace(tmp_path, "uas2"))
    assert len(first) == len(second) == calls, why
    for call_id, entries in second.items():
        busy = _sent(first[call_id], status=486)
        invite = _received(entries, "INVITE")
        # SIPp stamps a sent message after its write returns: the proxy may have relayed
        # the next INVITE a few µs before uas1's stamp. The 486 comes 100 ms after uas1's
        # INVITE (uas_busy.xml), so a parallel fork would be ~100 ms early, not 20 ms.
        assert busy and invite and invite[0].time >= busy[0].time - 0.02, (
            f"{call_id}: the second callee was rung before the first answered 486\n{why}")
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        assert not _received(entries, status=486), f"{call_id}: the caller got the 486\n{why}"
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 6. Redirect server.

REDIRECT_CONTACTS = ["<sip:bob@192.0.2.10>", "<sip:bob@192.0.2.20;transport=tcp>;q=0.5"]


@needs_sipp
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirect_answers_302_with_the_contacts(siprouter: SiprouterFactory, tmp_path: Path,
                                                transport: str) -> None:
    calls = 5
    server = siprouter.start(E2E_SCRIPTS / "redirect.py",
                             params={"contacts": "|".join(REDIRECT_CONTACTS)})
    uac = _call(tmp_path, server, "uac_expect_302.xml", transport, calls)
    why = _why(server, uac)
    _assert_all_succeeded(uac, calls, why)
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uac")).items():
        (redirect, *_) = _received(entries, status=302)
        assert _contacts(redirect) == REDIRECT_CONTACTS, (
            f"{call_id}\n{redirect.data.decode()}")
        assert _to_tag(redirect), redirect.data.decode()  # §8.2.6.2
    _assert_server_clean(server)


# -------------------------------------------------------------------------------------------
# 7. Retransmitted INVITEs never make a second branch.


@needs_sipp
@pytest.mark.parametrize(
    ("caller_scenario", "callee_delay_ms"),
    [
        # Every provisional response is lost at the caller: it retransmits its INVITE at
        # 0.5 s, while the callee (having sent 180) waits 0.9 s to answer.
        pytest.param("uac_invite_retransmitted.xml", 900, id="before-the-answer"),
        # A copy of the INVITE arrives after the 200 and the ACK (RFC 6026 "Accepted").
        pytest.param("uac_invite_copy_after_2xx.xml", 0, id="after-the-2xx"),
    ],
)
def test_retransmitted_invite_never_makes_a_second_branch(
    siprouter: SiprouterFactory, tmp_path: Path, caller_scenario: str, callee_delay_ms: int,
) -> None:
    calls = 5
    uas = _callee(tmp_path, "uas_answer.xml", "u1", calls, "uas",
                  ("-d", str(callee_delay_ms)))
    try:
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": uas.uri})
        uac = _call(tmp_path, server, caller_scenario, "u1", calls, extra=("-d", "300"))
        (uas_result,) = _finish(tmp_path, [uas], uac)
    finally:
        stop_process(uas.proc)
    why = _why(server, uac, uas_result)
    _assert_all_succeeded(uac, calls, why)

    # The test means something only if the caller did send its INVITE more than once.
    sent = Counter(e.call_id for e in _sent(read_sipp_trace(tmp_path, "uac"), "INVITE"))
    assert len(sent) == calls and min(sent.values()) >= 2, sent
    for call_id, entries in _by_call(read_sipp_trace(tmp_path, "uas")).items():
        invites = _received(entries, "INVITE")
        branches = {_branch(_top_via(e)) for e in invites}
        assert len(branches) == 1, (
            f"{call_id}: {len(branches)} INVITE branches reached the callee\n{why}")
        # The callee answered at once, so the proxy had nothing to retransmit either.
        assert len(invites) == 1, f"{call_id}: the callee got {len(invites)} INVITEs\n{why}"
    _assert_all_succeeded(uas_result, calls, why)
    _assert_server_clean(server)


def _response_to(request: bytes, status: int, reason: str, to_tag: str) -> bytes:
    """A response to ``request`` as a UAS makes it (§8.2.6): its Via, From, To (+ tag),
    Call-ID and CSeq."""
    head = request.split(b"\r\n\r\n", 1)[0].decode()
    lines = [f"SIP/2.0 {status} {reason}"]
    for line in head.split("\r\n")[1:]:
        name = line.partition(":")[0].strip().lower()
        if name in ("via", "v", "from", "f", "call-id", "i", "cseq", "record-route"):
            lines.append(line)
        elif name in ("to", "t"):
            lines.append(line if ";tag=" in line else f"{line};tag={to_tag}")
    return ("\r\n".join(lines + ["Content-Length: 0", "", ""])).encode()


def _ack_for(invite: bytes, response: bytes) -> bytes:
    """The ACK for a non-2xx ``response`` to ``invite`` (§17.1.1.3): the INVITE's Via,
    From, Call-ID and Request-URI, the response's To, CSeq with method ACK."""
    head = invite.split(b"\r\n\r\n", 1)[0].decode()
    start, *lines = head.split("\r\n")
    out = [start.replace("INVITE ", "ACK ", 1)]
    for line in lines:
        name = line.partition(":")[0].strip().lower()
        if name in ("via", "v", "from", "f", "call-id", "i", "max-forwards"):
            out.append(line)
        elif name == "cseq":
            out.append(line.replace("INVITE", "ACK"))
    out += [f"To: {header_values(response, 'To')[0]}", "Content-Length: 0", "", ""]
    return "\r\n".join(out).encode()


def test_duplicate_invites_before_any_response_make_one_branch(
    siprouter: SiprouterFactory,
) -> None:
    """Four copies of one INVITE within 300 ms, while the next hop (a plain UDP socket)
    has not answered anything: one branch leaves the proxy (its own Timer A
    retransmissions keep that branch). The next hop's 486 then comes back once per
    final response, and the proxy ACKs it hop by hop with the branch's id."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as next_hop:
        next_hop.bind((HOST, 0))
        nh_port = next_hop.getsockname()[1]
        server = siprouter.start(E2E_SCRIPTS / "record_route.py",
                                 params={"next_hop": f"sip:{HOST}:{nh_port}"})
        with UdpPeer(server) as caller:
            invite = invite_request(server.hostport, "udp", caller.hostport, "dup-1@e2e")
            for _ in range(4):
                caller.send(invite)
                time.sleep(0.1)
            # Everything the next hop gets in the first second.
            seen: list[bytes] = []
            deadline = time.monotonic() + 1.0
            while (left := deadline - time.monotonic()) > 0:
                next_hop.settimeout(left)
                try:
                    data, proxy_addr = next_hop.recvfrom(70000)
                except TimeoutError:
                    break
                seen.append(data)
            invites = [m for m in seen if m.startswith(b"INVITE ")]
            assert invites, f"no INVITE reached the next hop\n{server.log_tail()}"
            branches = {_branch(header_values(m, "Via")[0]) for m in invites}
            assert len(branches) == 1, (branches, server.log_tail())

            next_hop.sendto(_response_to(invites[0], 486, "Busy Here", "nh1"), proxy_addr)
            # The proxy ACKs the 486 hop by hop (§17.1.1.3: same branch as its INVITE).
            next_hop.settimeout(5.0)
            ack = None
            while ack is None:
                data = next_hop.recv(70000)
                if data.startswith(b"ACK "):
                    ack = data
            assert _branch(header_values(ack, "Via")[0]) == branches.pop()

            # The caller gets 100 Trying (maybe more than one: each copy is answered with
            # the last response) and then the 486.
            statuses = []
            while 486 not in statuses:
                got = caller.recv(5.0)
                assert got is not None, (statuses, server.log_tail())
                assert call_id_of(got) == "dup-1@e2e"
                statuses.append(status_of(got))
            assert set(statuses) <= {100, 486}, statuses
            # ACK the 486 so that the proxy stops retransmitting it.
            caller.send(_ack_for(invite, got))
    _assert_server_clean(server)
