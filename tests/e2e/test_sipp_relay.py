# SPDX-License-Identifier: Apache-2.0
"""End to end with real SIP peers: ``sipp -sn uac`` → siprouter (stateless relay,
examples/stateless_nexthop.py) → ``sipp -sn uas``, 1,000 calls each over UDP, TCP and
UDP on IPv6 (issue 2, "Done when"); plus the relay's hop-by-hop edits seen on the wire."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from e2e_support import (
    EXAMPLES,
    SIPP,
    SIPP_MISSING,
    SiprouterFactory,
    UdpPeer,
    call_id_of,
    free_port,
    invite_request,
    run_sipp_uac,
    start_sipp_uas,
    status_of,
    stop_process,
)

pytestmark = pytest.mark.e2e

SCRIPT = EXAMPLES / "stateless_nexthop.py"
CALLS = 1000
RATE = 200  # calls/s: 1,000 calls take 5 s
# SIPp's -timeout (an error when reached): 5 s of calls, a few seconds to spare.
SIPP_TIMEOUT = 25


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)
@pytest.mark.parametrize(
    ("host", "sipp_transport", "uri_params"),
    [
        pytest.param("127.0.0.1", "u1", "", id="udp"),
        pytest.param("127.0.0.1", "t1", ";transport=tcp", id="tcp"),
        pytest.param("::1", "u1", "", id="udp-ipv6", marks=pytest.mark.skipif(
            not _ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")),
    ],
)
def test_sipp_1000_calls_through_the_stateless_relay(
    siprouter: SiprouterFactory, tmp_path: Path, host: str, sipp_transport: str,
    uri_params: str,
) -> None:
    bracketed = f"[{host}]" if ":" in host else host
    nh_port = free_port(host)
    uas = start_sipp_uas(tmp_path, host, nh_port, sipp_transport, timeout=SIPP_TIMEOUT + 20)
    try:
        server = siprouter.start(
            SCRIPT, host=host, params={"next_hop": f"sip:{bracketed}:{nh_port}{uri_params}"})
        result = run_sipp_uac(tmp_path, host, server.hostport, calls=CALLS, rate=RATE,
                              transport=sipp_transport, timeout=SIPP_TIMEOUT)
        assert server.alive(), f"siprouter died during the run:\n{server.log_tail()}"
    finally:
        stop_process(uas)

    why = result.diagnostics() + "\n--- siprouter log ---\n" + server.log_tail()
    assert result.returncode == 0, why  # SIPp: 0 means every call succeeded
    assert result.successful == CALLS, why
    assert result.failed == 0, why
    assert result.created == CALLS, why
    # SIGTERM stops the server cleanly, and nothing went wrong on the way.
    assert server.stop() == 0, server.log_tail()
    assert "Traceback" not in server.log_text(), server.log_tail()


def _parse_head(message: bytes) -> tuple[str, list[tuple[str, str]]]:
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    start, *lines = head.split("\r\n")
    fields = []
    for line in lines:
        name, _, value = line.partition(":")
        fields.append((name.strip().lower(), value.strip()))
    return start, fields


def test_relay_edits_on_the_wire(siprouter: SiprouterFactory) -> None:
    """One INVITE through the relay, a plain UDP socket as next hop: the relay adds its
    Via and decrements Max-Forwards (§16.6 steps 3 and 8); the next hop's 200 comes back
    to the sender with the relay's Via removed (§16.11)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as next_hop:
        next_hop.bind(("127.0.0.1", 0))
        next_hop.settimeout(5)
        nh = next_hop.getsockname()[1]
        server = siprouter.start(SCRIPT, params={"next_hop": f"sip:127.0.0.1:{nh}"})
        with UdpPeer(server) as uac:
            uac.send(invite_request(server.hostport, "udp", uac.hostport, "edits-1@e2e"))
            forwarded, relay_addr = next_hop.recvfrom(70000)
            start, fields = _parse_head(forwarded)
            assert start == f"INVITE sip:bob@{server.hostport} SIP/2.0"
            vias = [v for n, v in fields if n in ("via", "v")]
            assert len(vias) == 2, vias
            assert vias[0].startswith(f"SIP/2.0/UDP {server.hostport};branch=z9hG4bK"), vias
            assert f"SIP/2.0/UDP {uac.hostport};" in vias[1], vias
            # RFC 3581 §4: the empty rport is filled in with the source port.
            assert f"rport={uac.hostport.rsplit(':', 1)[1]}" in vias[1], vias
            assert ("max-forwards", "69") in fields
            assert forwarded.endswith(b"a=rtpmap:0 PCMU/8000\r\n")  # body untouched

            # Answer like a UAS would: echo Via, From, To (+tag), Call-ID, CSeq.
            keep = [(n, v) for n, v in fields if n in ("via", "v", "from", "to", "call-id",
                                                      "cseq")]
            lines = ["SIP/2.0 200 OK"]
            for n, v in keep:
                lines.append(f"{n}: {v};tag=uas1" if n == "to" else f"{n}: {v}")
            lines += ["Content-Length: 0", "", ""]
            next_hop.sendto("\r\n".join(lines).encode(), relay_addr)

            answer = uac.recv(5.0)
            assert answer is not None, server.log_tail()
            assert status_of(answer) == 200
            assert call_id_of(answer) == "edits-1@e2e"
            _, answer_fields = _parse_head(answer)
            answer_vias = [v for n, v in answer_fields if n in ("via", "v")]
            assert len(answer_vias) == 1 and uac.hostport in answer_vias[0], answer_vias


def test_relay_answers_483_when_max_forwards_is_0(siprouter: SiprouterFactory) -> None:
    server = siprouter.start(SCRIPT, params={"next_hop": "sip:127.0.0.1:9"})
    with UdpPeer(server) as uac:
        msg = invite_request(server.hostport, "udp", uac.hostport, "mf0@e2e")
        uac.send(msg.replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 0\r\n"))
        answer = uac.recv(5.0)
    assert answer is not None, server.log_tail()
    assert status_of(answer) == 483
    assert call_id_of(answer) == "mf0@e2e"
