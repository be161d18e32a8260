# SPDX-License-Identifier: Apache-2.0
"""Garbage resilience (issue 2, "Done when"): a running siprouter that receives random
bytes, truncated messages, 64 KiB of headers, 10,000 Via lines, lying Content-Lengths and
binary junk on TCP keeps serving, and answers the next good request.

One server (the shipped default script, UDP and TCP on 127.0.0.1) is shared by the
module. After every attack a good OPTIONS addressed to the server itself must get its 200
(the default script answers those) over UDP and over a fresh TCP connection, and the
process must still be alive. Where RFC 3261 says a reply is due, its status is asserted;
where the server may either reject or drop (oversized messages) only those two outcomes
are allowed. Every reply, of any kind, must be a SIP response (never echoed junk).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest
from e2e_support import (
    SiprouterFactory,
    SiprouterProcess,
    TcpPeer,
    UdpPeer,
    call_id_of,
    invite_request,
    options_request,
    status_of,
)

pytestmark = pytest.mark.e2e

SEED = 20260502
BATCH = 100  # datagrams sent before each ping; keeps the server's receive buffer from overflowing
# RFC 3261 §21.5.14: 513 Message Too Large.
TOO_BIG = 513
# The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes).
MAX_UDP_PAYLOAD = 65507


@pytest.fixture(scope="module")
def server(module_siprouter: SiprouterFactory) -> Iterator[SiprouterProcess]:
    srv = module_siprouter.start(None)  # the shipped default script
    yield srv
    # The module's verdict on the server itself: it never crashed and logged no traceback.
    assert srv.alive(), srv.log_tail()
    assert "Traceback" not in srv.log_text(), srv.log_tail()


def assert_serving(server: SiprouterProcess) -> None:
    """The process is alive and answers a good OPTIONS over UDP and over new TCP."""
    assert server.alive(), f"siprouter exited with {server.proc.returncode}:\n{server.log_tail()}"
    with UdpPeer(server) as udp:
        status, _ = udp.ping()
        assert status == 200, f"UDP OPTIONS got {status}\n{server.log_tail()}"
    with TcpPeer(server) as tcp:
        status, _ = tcp.ping()
        assert status == 200, f"TCP OPTIONS got {status}\n{server.log_tail()}"


def assert_sip_responses(replies: list[bytes]) -> None:
    for reply in replies:
        assert status_of(reply) is not None, f"not a SIP response: {reply[:200]!r}"


def assert_refused_or_dropped(replies: list[bytes]) -> None:
    """Nothing came back, or exactly one 513."""
    statuses = [status_of(r) for r in replies]
    assert statuses in ([], [TOO_BIG]), [r[:200] for r in replies]


def send_in_batches(server: SiprouterProcess, peer: UdpPeer,
                    datagrams: list[bytes]) -> list[bytes]:
    """Send ``datagrams`` in batches, each followed by a ping that must get its 200;
    returns every other datagram the server sent back."""
    replies: list[bytes] = []
    for i in range(0, len(datagrams), BATCH):
        for d in datagrams[i : i + BATCH]:
            peer.send(d)
        status, others = peer.ping()
        assert status == 200, (
            f"no 200 to OPTIONS after datagrams {i}..{i + BATCH - 1}: {status}\n"
            f"{server.log_tail()}")
        replies += others
    return replies


# -------------------------------------------------------------------------------------------
# UDP


def test_random_datagrams(server: SiprouterProcess) -> None:
    rng = random.Random(SEED)
    # Some start like SIP so the parser gets past the start line before the junk.
    prefixes = [b"", b"INVITE sip:", b"SIP/2.0 200 OK\r\nVia: ", b"OPTIONS sip:a SIP/2.0\r\n",
                b"REGISTER sip:x SIP/2.0\r\nContent-Length: "]
    datagrams = [rng.choice(prefixes) + rng.randbytes(rng.randint(0, 1400))
                 for _ in range(2000)]
    datagrams += [b"\x00", b"\r\n", b"\r\n\r\n", b" " * 1000, b"\xff" * 1400]
    with UdpPeer(server) as peer:
        replies = send_in_batches(server, peer, datagrams)
    assert_sip_responses(replies)
    assert_serving(server)


def test_mutated_invites(server: SiprouterProcess) -> None:
    """A valid INVITE with 1-4 random bytes changed, 1,000 times."""
    rng = random.Random(SEED + 1)
    datagrams = []
    with UdpPeer(server) as peer:
        base = invite_request(server.hostport, "udp", peer.hostport, "mutant@e2e")
        for _ in range(1000):
            m = bytearray(base)
            for _ in range(rng.randint(1, 4)):
                m[rng.randrange(len(m))] = rng.randrange(256)
            datagrams.append(bytes(m))
        replies = send_in_batches(server, peer, datagrams)
    assert_sip_responses(replies)
    assert_serving(server)


def test_every_prefix_of_an_invite_over_udp(server: SiprouterProcess) -> None:
    """§18.3: a datagram that ends before the body Content-Length announces is an error;
    a request gets 400. Prefixes that cut the header section may be answered or dropped,
    never accepted."""
    with UdpPeer(server) as peer:
        # Every prefix carries its own Call-ID (same length) to match the answers.
        def make(i: int) -> bytes:
            return invite_request(server.hostport, "udp", peer.hostport, f"trunc-{i:05d}@e2e")

        full_len = len(make(0))
        messages = [make(i) for i in range(full_len + 1)]
        header_end = messages[0].index(b"\r\n\r\n") + 4
        datagrams = [messages[n][:n] for n in range(1, full_len)] + [messages[full_len]]
        replies = send_in_batches(server, peer, datagrams)
    assert_sip_responses(replies)
    by_prefix: dict[int, list[int | None]] = {}
    for reply in replies:
        cid = call_id_of(reply) or ""
        if cid.startswith("trunc-"):
            by_prefix.setdefault(int(cid[6:11]), []).append(status_of(reply))
    for n in range(1, full_len):
        got = by_prefix.get(n, [])
        if n >= header_end:
            assert got == [400], f"prefix of {n}/{full_len} bytes (body cut): {got}"
        else:
            assert all(s is not None and s >= 400 for s in got), f"prefix {n}: {got}"
    # The whole INVITE is a good request (default script: a user here is unknown → 404).
    assert by_prefix.get(full_len) == [404], by_prefix.get(full_len)
    assert_serving(server)


@pytest.mark.parametrize("declared", [500, 100_000], ids=["500", "100000"])
def test_content_length_larger_than_the_datagram(server: SiprouterProcess,
                                                 declared: int) -> None:
    """§18.3: "If the transport packet ends before the end of the message body, this is
    considered an error. [...] If the message is a request, the element SHOULD generate
    a 400 (Bad Request) response." """
    with UdpPeer(server) as peer:
        call_id = f"cl-{declared}@e2e"
        peer.send(invite_request(server.hostport, "udp", peer.hostport, call_id,
                                 content_length=declared))
        status, others = peer.ping()
    assert status == 200
    assert [(call_id_of(r), status_of(r)) for r in others] == [(call_id, 400)]
    assert_serving(server)


def _options_with_headers(server: SiprouterProcess, via_proto: str, via_hostport: str,
                          call_id: str, extra: bytes, *, extra_vias: bytes = b"") -> bytes:
    msg, _ = options_request(server.hostport, via_proto, via_hostport, call_id)
    head, _, tail = msg.partition(b"Max-Forwards:")
    # Extra Vias go right below the first one; other headers before Content-Length.
    msg = head + extra_vias + b"Max-Forwards:" + tail
    return msg.replace(b"Content-Length: 0\r\n", extra + b"Content-Length: 0\r\n")


def _padding(total: int, line_len: int) -> bytes:
    """``total`` bytes of ``X-Pad-n: xxx`` header lines about ``line_len`` bytes long."""
    out, n = [], 0
    size = 0
    while size < total:
        name = f"X-Pad-{n}: ".encode()
        line = name + b"x" * max(1, line_len - len(name) - 2) + b"\r\n"
        out.append(line)
        size += len(line)
        n += 1
    return b"".join(out)


def test_64_kib_of_headers_in_one_datagram(server: SiprouterProcess) -> None:
    """As many header bytes as one datagram holds, in 16 long lines: a good request
    that happens to be huge. It is either served (200) or refused as too big."""
    with UdpPeer(server) as peer:
        msg = _options_with_headers(server, "udp", peer.hostport, "big-udp@e2e", b"")
        pad = _padding(MAX_UDP_PAYLOAD - len(msg) - 4200, 4096)
        msg = _options_with_headers(server, "udp", peer.hostport, "big-udp@e2e", pad)
        assert 60_000 < len(msg) <= MAX_UDP_PAYLOAD
        peer.send(msg)
        status, others = peer.ping()
    assert status == 200
    assert [(call_id_of(r), status_of(r) in (200, TOO_BIG)) for r in others] == [
        ("big-udp@e2e", True)], [r[:100] for r in others]
    assert_serving(server)


def test_many_via_lines_in_one_datagram(server: SiprouterProcess) -> None:
    """10,000 Via lines do not fit in a datagram; as many as fit (about 1,300) do. The
    request is refused (513) or dropped."""
    with UdpPeer(server) as peer:
        lines = []
        size = 0
        while size < MAX_UDP_PAYLOAD - 1000:
            lines.append(b"v: SIP/2.0/UDP 192.0.2.%d;branch=z9hG4bK%d\r\n"
                         % (len(lines) % 250, len(lines)))
            size += len(lines[-1])
        msg = _options_with_headers(server, "udp", peer.hostport, "vias-udp@e2e", b"",
                                    extra_vias=b"".join(lines))
        assert len(msg) <= MAX_UDP_PAYLOAD and len(lines) > 1000
        peer.send(msg)
        status, others = peer.ping()
    assert status == 200
    assert_refused_or_dropped(others)
    assert_serving(server)


def _invite(s: SiprouterProcess, p: str, **kw: object) -> bytes:
    return invite_request(s.hostport, "udp", p, "nasty@e2e", **kw)  # type: ignore[arg-type]


def _edited_invite(old: bytes, new: bytes):  # type: ignore[no-untyped-def]
    def build(s: SiprouterProcess, p: str) -> bytes:
        msg = _invite(s, p)
        assert old in msg
        return msg.replace(old, new, 1)
    return build


def _response_with_vias(vias: bytes) -> bytes:
    return (b"SIP/2.0 200 OK\r\n" + vias + b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\n"
            b"Call-ID: nasty@e2e\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")


NASTY_DATAGRAMS = {
    # name: (datagram builder(server, our host:port), statuses allowed in reply; None = none)
    "empty": (lambda s, p: b"", {None}),
    "negative-content-length": (lambda s, p: _invite(s, p, content_length="-1"), {400}),
    "huge-content-length": (
        lambda s, p: _invite(s, p, content_length="99999999999999999999999"), {400, 513}),
    "non-numeric-content-length": (lambda s, p: _invite(s, p, content_length="12abc"), {400}),
    "huge-cseq": (_edited_invite(b"CSeq: 314159", b"CSeq: 99999999999999999999999"), {400}),
    "sip-3.0": (_edited_invite(b" SIP/2.0\r\n", b" SIP/3.0\r\n"), {505}),
    "invalid-utf8": (_edited_invite(b"From: Alice", b"From: \xff\xfe\xc3"), {None, 400, 404}),
    "nul-in-headers": (_edited_invite(b"CSeq: 314159", b"CSeq: 3\x0014159"), {None, 400}),
    # No Via: nowhere to route a response by (§18.2.2); dropping it or answering the
    # source address are both seen in the wild (Kamailio drops it).
    "no-via": (lambda s, p: b"\r\n".join(
        line for line in _invite(s, p).split(b"\r\n") if not line.startswith(b"Via:")),
        {None, 400}),
    "response-not-for-us": (lambda s, p: _response_with_vias(
        b"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n"), {None}),
    # Every Via is the server itself: it may forward the response to itself once per Via,
    # but then it has to stop.
    "response-bouncing-off-ourselves": (lambda s, p: _response_with_vias(b"".join(
        b"Via: SIP/2.0/UDP %s;branch=z9hG4bK%03d\r\n" % (s.hostport.encode(), i)
        for i in range(200))), {None}),
}


@pytest.mark.parametrize("name", NASTY_DATAGRAMS)
def test_nasty_datagram(server: SiprouterProcess, name: str) -> None:
    build, allowed = NASTY_DATAGRAMS[name]
    with UdpPeer(server) as peer:
        peer.send(build(server, peer.hostport))
        status, others = peer.ping()
    assert status == 200, server.log_tail()
    assert_sip_responses(others)
    got = {status_of(r) for r in others} or {None}
    assert len(others) <= 1 and got <= allowed, f"{name}: got {got}, allowed {allowed}"
    assert_serving(server)


# -------------------------------------------------------------------------------------------
# TCP


def test_prefixes_of_an_invite_over_tcp_then_eof(server: SiprouterProcess) -> None:
    """A connection that ends in the middle of a message: the server closes its side
    and keeps serving. (A sample of cut points, one connection each.)"""
    with TcpPeer(server) as probe:
        full = invite_request(server.hostport, "tcp", probe.hostport, "trunc-tcp@e2e")
    for n in sorted({1, 7, 8, 30, len(full) // 2, full.index(b"\r\n\r\n") + 2,
                     full.index(b"\r\n\r\n") + 4, len(full) - 1, *range(40, len(full), 60)}):
        with TcpPeer(server) as peer:
            peer.send(full[:n])
            peer.sock.shutdown(socket.SHUT_WR)
            assert peer.closed_by_server(5.0), f"prefix of {n} bytes: connection left open"
    assert_serving(server)


def test_content_length_larger_than_the_data_over_tcp(server: SiprouterProcess) -> None:
    """On a stream the body is whatever follows, up to Content-Length (§18.3): the server
    waits for the rest, then handles the message; the connection stays usable."""
    with TcpPeer(server) as peer:
        msg = invite_request(server.hostport, "tcp", peer.hostport, "cl-tcp@e2e")
        body_len = len(msg) - msg.index(b"\r\n\r\n") - 4
        short = msg.replace(b"Content-Length: %d" % body_len,
                            b"Content-Length: %d" % (body_len + 50))
        assert peer.send(short)
        assert peer.recv_message(0.5) is None and not peer.eof, "answered a partial message"
        assert peer.send(b"x" * 50)
        answer = peer.recv_message(5.0)
        assert answer is not None and call_id_of(answer) == "cl-tcp@e2e"
        assert status_of(answer) == 404  # default script: unknown user of ours
        status, _ = peer.ping()
        assert status == 200
    assert_serving(server)


def test_64_kib_of_headers_over_tcp(server: SiprouterProcess) -> None:
    """More than 65,535 bytes of headers (the default max_message_size) in 1,100 lines:
    refused (513) or dropped, and the connection is closed (it cannot be re-framed)."""
    with TcpPeer(server) as peer:
        msg = _options_with_headers(server, "tcp", peer.hostport, "big-tcp@e2e",
                                    _padding(66 * 1024, 60))
        peer.send(msg)
        replies = []
        while (reply := peer.recv_message(5.0)) is not None:
            replies.append(reply)
        assert peer.eof, "connection left open after an oversized message"
    assert_refused_or_dropped(replies)
    assert_serving(server)


def test_too_many_header_lines_within_the_size_limit_over_tcp(
        server: SiprouterProcess) -> None:
    """60 KiB of headers in 1,000 short lines: small enough to frame, too many lines to
    parse. Refused (513) or dropped; the next message on the same connection is served."""
    with TcpPeer(server) as peer:
        msg = _options_with_headers(server, "tcp", peer.hostport, "lines-tcp@e2e",
                                    _padding(60 * 1024, 60))
        assert len(msg) < 65535
        assert peer.send(msg)
        status, others = peer.ping()
        assert status == 200, server.log_tail()
    assert_refused_or_dropped(others)
    assert_serving(server)


def test_10000_via_lines_over_tcp(server: SiprouterProcess) -> None:
    """10,000 Via lines (about 500 KB): refused (513) or dropped, connection closed."""
    with TcpPeer(server) as peer:
        vias = b"".join(b"Via: SIP/2.0/TCP 192.0.2.%d:5060;branch=z9hG4bK%05d\r\n"
                        % (i % 250, i) for i in range(10_000))
        msg = _options_with_headers(server, "tcp", peer.hostport, "vias-tcp@e2e", b"",
                                    extra_vias=vias)
        peer.send(msg)
        replies = []
        while (reply := peer.recv_message(5.0)) is not None:
            replies.append(reply)
        assert peer.eof, "connection left open after 10,000 Via lines"
    assert_refused_or_dropped(replies)
    assert_serving(server)


def test_binary_junk_over_tcp(server: SiprouterProcess) -> None:
    """128 KiB of random bytes on a connection: the server closes it (at the latest when
    the junk exceeds max_message_size without framing) and keeps serving."""
    rng = random.Random(SEED + 2)
    with TcpPeer(server) as peer:
        peer.send(rng.randbytes(128 * 1024))
        assert peer.closed_by_server(5.0), "connection left open after 128 KiB of junk"
    assert_serving(server)


def test_junk_after_a_good_request_over_tcp(server: SiprouterProcess) -> None:
    """A good request and junk in one write: the request is answered first."""
    rng = random.Random(SEED + 3)
    with TcpPeer(server) as peer:
        good, call_id = options_request(server.hostport, "tcp", peer.hostport)
        peer.send(good + b"\x00\x01garbage" + rng.randbytes(70_000))
        first = peer.recv_message(5.0)
        assert first is not None and call_id_of(first) == call_id and status_of(first) == 200
        assert peer.closed_by_server(5.0)
    assert_serving(server)


def test_crlf_keepalive_ping_over_tcp(server: SiprouterProcess) -> None:
    """RFC 5626 §3.5.1: a double-CRLF ping is answered with a single CRLF pong, and the
    connection goes on."""
    with TcpPeer(server) as peer:
        assert peer.send(b"\r\n\r\n")
        assert peer.recv_raw(5.0) == b"\r\n"
        status, _ = peer.ping()
        assert status == 200
    assert_serving(server)
