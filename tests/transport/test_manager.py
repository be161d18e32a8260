# SPDX-License-Identifier: Apache-2.0
"""TransportManager over real sockets on 127.0.0.1 and ::1 (every test runs on plain
asyncio and on uvloop; see conftest.py). Waits are bounded by ``WAIT``."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile

import pytest
from transport_helpers import WAIT, eventually, recv_udp, udp_client

from siprouter.sip.errors import SipParseError
from siprouter.transport.manager import TransportLimits, TransportManager
from siprouter.transport.types import Source, Target

MESSAGE_TOO_LARGE = 513
BAD_REQUEST = 400

V4 = socket.AF_INET
V6 = socket.AF_INET6
LOOPBACK = {V4: "127.0.0.1", V6: "::1"}
BRACKETED = {V4: "127.0.0.1", V6: "[::1]"}


def request(n: int = 1, body: bytes = b"", *, cl: bool = True) -> bytes:
    cl_line = f"Content-Length: {len(body)}\r\n" if cl else ""
    return (
        f"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK{n}\r\n"
        f"From: <sip:alice@example.com>;tag=1\r\n"
        f"To: <sip:bob@example.com>\r\n"
        f"Call-ID: call-{n}\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        f"{cl_line}\r\n"
    ).encode() + body


async def tcp_client(manager: TransportManager, index: int = 0, family: int = V4,
                     *, nodelay: bool = False
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ls = manager.sockets[index]
    assert ls.proto == "tcp"
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(LOOPBACK[family], ls.port), WAIT)
    if nodelay:
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def read_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the peer closes (a reset counts as closed)."""
    try:
        return await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionResetError:
        return b""


# --- UDP ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", [V4, V6], ids=["ipv4", "ipv6"])
async def test_udp_receive_and_send_back(make_manager, family: int) -> None:
    manager, inbox = await make_manager(f"udp:{BRACKETED[family]}:0")
    ls = manager.sockets[0]
    client = udp_client(family)
    with client:
        client.sendto(request(), (LOOPBACK[family], ls.port))
        data, source = await inbox.get()
        assert data == request()
        assert (source.proto, source.ip, source.port) == ("udp", LOOPBACK[family],
                                                          client.getsockname()[1])
        assert source.local is ls
        assert source.conn_id is None

        manager.send_to_source(b"SIP/2.0 200 OK\r\n\r\n", source)
        reply, addr = await recv_udp(client)
        assert reply == b"SIP/2.0 200 OK\r\n\r\n"
        assert addr[1] == ls.port  # from the socket the request came in on

        manager.send(b"again", Target("udp", BRACKETED[family], client.getsockname()[1]))
        reply, addr = await recv_udp(client)
        assert reply == b"again"
        assert addr[1] == ls.port
    assert manager.stats["rx_datagrams"] == 1
    assert manager.stats["tx_datagrams"] == 2


async def test_send_prefers_the_given_socket(make_manager) -> None:
    manager, _ = await make_manager("udp:127.0.0.1:0", "udp:127.0.0.1:0", "udp:[::1]:0")
    first, second, v6 = manager.sockets
    with udp_client() as client:
        dest = Target("udp", "127.0.0.1", client.getsockname()[1])
        manager.send(b"a", dest)
        manager.send(b"b", dest, prefer=second)
        manager.send(b"c", dest, prefer=v6)  # wrong family: falls back to the first v4
        got = [await recv_udp(client) for _ in range(3)]
    assert [(d, a[1]) for d, a in got] == [(b"a", first.port), (b"b", second.port),
                                           (b"c", first.port)]


async def test_several_sockets_at_once(make_manager) -> None:
    manager, inbox = await make_manager(
        "udp:127.0.0.1:0", "udp:[::1]:0", "tcp:127.0.0.1:0", "tcp:[::1]:0")
    udp4, udp6, tcp4, tcp6 = manager.sockets
    assert [str(s).rsplit(":", 1)[0] for s in manager.sockets] == [
        "udp:127.0.0.1", "udp:[::1]", "tcp:127.0.0.1", "tcp:[::1]"]

    for ls, family in ((udp4, V4), (udp6, V6)):
        with udp_client(family) as client:
            client.sendto(request(), (LOOPBACK[family], ls.port))
            _, source = await inbox.get()
            assert source.local is ls
    for index, family in ((2, V4), (3, V6)):
        _, writer = await tcp_client(manager, index, family)
        writer.write(request())
        _, source = await inbox.get()
        assert source.local is manager.sockets[index]
        assert source.proto == "tcp"
        assert source.ip == LOOPBACK[family]
        writer.close()


async def test_burst_of_datagrams_all_arrive(make_manager) -> None:
    # Hundreds wait in the kernel before the loop first looks: none lost, none reordered.
    manager, inbox = await make_manager("udp:127.0.0.1:0")
    port = manager.sockets[0].port
    with udp_client() as client:
        for n in range(300):
            client.sendto(request(n), ("127.0.0.1", port))
        got = [(await inbox.get())[0] for _ in range(300)]
    assert got == [request(n) for n in range(300)]


async def test_largest_udp_datagram_arrives_whole(make_manager) -> None:
    # Pins that reads are sized for any UDP payload (RECV_SIZE caps asyncio's 256 KiB
    # reads, which made every datagram cost an mmap + munmap).
    manager, inbox = await make_manager("udp:127.0.0.1:0")
    port = manager.sockets[0].port
    largest = request(body=b"x" * 65000)
    largest += b"y" * (65507 - len(largest))  # the IPv4 UDP maximum
    with udp_client() as client:
        client.sendto(largest, ("127.0.0.1", port))
        data, _ = await inbox.get()
    assert data == largest
    assert manager.stats["rx_oversize"] == 0


async def test_on_message_exception_does_not_kill_the_udp_reader(make_manager) -> None:
    delivered: list[bytes] = []

    def on_message(data: bytes, source: Source) -> None:
        if not data.startswith(b"OPTIONS"):
            raise SipParseError("Bad Request-Line", 400, "garbage")
        delivered.append(data)

    manager, _ = await make_manager("udp:127.0.0.1:0", on_message=on_message)
    port = manager.sockets[0].port
    with udp_client() as client:
        client.sendto(os.urandom(1000), ("127.0.0.1", port))
        client.sendto(b"\x00garbage\r\n\r\n", ("127.0.0.1", port))
        client.sendto(request(), ("127.0.0.1", port))
        await eventually(lambda: delivered == [request()])
    assert manager.stats["callback_errors"] == 2


async def test_udp_oversize_and_keepalives_are_dropped(make_manager) -> None:
    manager, inbox = await make_manager(
        "udp:127.0.0.1:0", limits=TransportLimits(max_message_size=1500))
    port = manager.sockets[0].port
    with udp_client() as client:
        client.sendto(request(body=b"x" * 2000), ("127.0.0.1", port))
        client.sendto(b"\r\n\r\n", ("127.0.0.1", port))
        client.sendto(b"", ("127.0.0.1", port))
        client.sendto(request(), ("127.0.0.1", port))
        data, _ = await inbox.get()
    assert data == request()
    assert manager.stats["rx_oversize"] == 1
    assert manager.stats["rx_keepalives"] == 2


async def test_send_to_a_name_resolves_via_hosts(make_manager) -> None:
    manager, inbox = await make_manager("udp:127.0.0.1:0", "tcp:127.0.0.1:0")
    udp, tcp = manager.sockets
    with udp_client() as client:
        manager.send(b"by name", Target("udp", "localhost", client.getsockname()[1]))
        data, addr = await recv_udp(client)
    assert (data, addr[1]) == (b"by name", udp.port)

    # TCP to a name: to our own listener, so the message comes back in.
    manager.send(request(7), Target("tcp", "LOCALHOST", tcp.port))
    data, source = await inbox.get()
    assert data == request(7)
    assert source.proto == "tcp"


async def test_unresolvable_name_is_counted_not_raised(make_manager, tmp_path) -> None:
    from siprouter.transport.resolver import Resolver

    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    # A nameserver that does not exist (a closed loopback port): the query fails.
    import dns.asyncresolver

    dead = dns.asyncresolver.Resolver(configure=False)
    dead.nameservers = ["127.0.0.1"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        dead.port = s.getsockname()[1]
    manager, _ = await make_manager(
        "udp:127.0.0.1:0",
        resolver=Resolver(hosts_path=str(hosts), dns_resolver=dead, lifetime=0.3))
    manager.send(b"x", Target("udp", "no-such-host.invalid", 5060))
    await eventually(lambda: manager.stats["tx_unresolved"] == 1, timeout=10)


async def test_no_socket_of_the_family(make_manager) -> None:
    manager, _ = await make_manager("udp:127.0.0.1:0")
    manager.send(b"x", Target("udp", "::1", 5060))
    assert manager.stats["tx_no_socket"] == 1


# --- TCP framing ----------------------------------------------------------------------


async def test_tcp_message_split_byte_by_byte(make_manager) -> None:
    manager, inbox = await make_manager("tcp:127.0.0.1:0")
    _, writer = await tcp_client(manager, nodelay=True)
    data = request(1, b"v=0\r\n") + request(2, b"body")
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        if i % 16 == 0:
            await asyncio.sleep(0)  # let the server read partial segments
    first, src1 = await inbox.get()
    second, src2 = await inbox.get()
    assert (first, second) == (request(1, b"v=0\r\n"), request(2, b"body"))
    assert src1.conn_id == src2.conn_id is not None
    writer.close()


async def test_tcp_several_messages_in_one_segment(make_manager) -> None:
    manager, inbox = await make_manager("tcp:[::1]:0")
    _, writer = await tcp_client(manager, family=V6)
    writer.write(b"\r\n" + request(1) + request(2, b"ab") + request(3))
    got = [(await inbox.get())[0] for _ in range(3)]
    assert got == [request(1), request(2, b"ab"), request(3)]
    assert manager.stats["rx_stream_messages"] == 3
    writer.close()


async def test_keepalive_ping_gets_a_pong(make_manager) -> None:
    manager, inbox = await make_manager("tcp:127.0.0.1:0")
    reader, writer = await tcp_client(manager)
    writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
    writer.write(request())
    data, _ = await inbox.get()
    assert data == request()
    assert manager.stats["keepalive_pings"] == 1
    writer.close()


async def test_on_message_exception_keeps_the_tcp_connection(make_manager) -> None:
    delivered: list[bytes] = []

    def on_message(data: bytes, source: Source) -> None:
        if b"call-1" in data:
            raise RuntimeError("bug in the routing script")
        delivered.append(data)

    manager, _ = await make_manager("tcp:127.0.0.1:0", on_message=on_message)
    _, writer = await tcp_client(manager)
    writer.write(request(1) + request(2))
    await eventually(lambda: delivered == [request(2)])
    writer.write(request(3))
    await eventually(lambda: delivered == [request(2), request(3)])
    assert manager.stats["callback_errors"] == 1
    writer.close()


# --- TCP errors and limits ----------------------------------------------------------


async def test_message_too_large_calls_the_hook_then_closes(make_manager) -> None:
    errors: list[tuple[SipParseError, Source, bytes]] = []
    manager: TransportManager | None = None

    def on_stream_error(exc: SipParseError, source: Source, partial: bytes) -> None:
        errors.append((exc, source, partial))
        assert manager is not None
        manager.send_to_source(f"SIP/2.0 {exc.status_hint} {exc.reason}\r\n\r\n".encode(), source)

    manager, inbox = await make_manager(
        "tcp:127.0.0.1:0", limits=TransportLimits(max_message_size=2000),
        on_stream_error=on_stream_error)
    reader, writer = await tcp_client(manager)
    writer.write(request(1) + request(2, b"x" * 3000))
    assert (await inbox.get())[0] == request(1)
    assert await read_eof(reader) == b"SIP/2.0 513 Message Too Large\r\n\r\n"
    [(exc, source, partial)] = errors
    assert exc.status_hint == MESSAGE_TOO_LARGE
    assert partial.startswith(b"OPTIONS sip:bob@example.com SIP/2.0\r\n")
    assert b"call-2" in partial
    assert source.proto == "tcp"
    await eventually(lambda: manager.connection_count == 0)
    assert manager.stats["framing_errors"] == 1


async def test_missing_content_length_closes_without_a_hook(make_manager) -> None:
    manager, inbox = await make_manager("tcp:127.0.0.1:0")
    reader, writer = await tcp_client(manager)
    writer.write(request(1, cl=False))
    assert await read_eof(reader) == b""
    assert inbox.empty()
    assert manager.stats["framing_errors"] == 1


async def test_garbage_never_kills_the_tcp_listener(make_manager) -> None:
    errors: list[int | None] = []
    manager, inbox = await make_manager(
        "tcp:127.0.0.1:0", limits=TransportLimits(max_message_size=4096),
        on_stream_error=lambda exc, src, partial: errors.append(exc.status_hint))
    for payload in (os.urandom(10_000), b"\x00\xff\n\n\n", b"A" * 5000,
                    b"INVITE x SIP/2.0\r\nContent-Length: abc\r\n\r\n"):
        reader, writer = await tcp_client(manager)
        writer.write(payload)
        await read_eof(reader)
        writer.close()
    assert errors and set(errors) <= {BAD_REQUEST, MESSAGE_TOO_LARGE}
    _, writer = await tcp_client(manager)
    writer.write(request(9))
    assert (await inbox.get())[0] == request(9)
    writer.close()


async def test_idle_connection_is_closed(make_manager) -> None:
    manager, _ = await make_manager("tcp:127.0.0.1:0",
                                    limits=TransportLimits(tcp_idle_timeout=0.3))
    reader, _writer = await tcp_client(manager)
    await eventually(lambda: manager.connection_count == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await read_eof(reader) == b""
    assert 0.25 <= loop.time() - started < WAIT
    await eventually(lambda: manager.connection_count == 0)
    assert manager.stats["tcp_idle_closed"] == 1


async def test_keepalive_pings_keep_a_connection_open(make_manager) -> None:
    manager, _ = await make_manager("tcp:127.0.0.1:0",
                                    limits=TransportLimits(tcp_idle_timeout=0.3))
    reader, writer = await tcp_client(manager)
    for _ in range(8):  # 0.8 s, well past the idle timeout
        writer.write(b"\r\n\r\n")
        assert await asyncio.wait_for(reader.readexactly(2), WAIT) == b"\r\n"
        await asyncio.sleep(0.1)
    assert manager.connection_count == 1
    assert manager.stats["tcp_idle_closed"] == 0
    writer.close()


async def test_connections_per_source_are_limited(make_manager) -> None:
    manager, inbox = await make_manager(
        "tcp:127.0.0.1:0", limits=TransportLimits(max_connections_per_source=2))
    first = await tcp_client(manager)
    second = await tcp_client(manager)
    await eventually(lambda: manager.connection_count == 2)
    reader3, writer3 = await tcp_client(manager)
    assert await read_eof(reader3) == b""
    assert manager.stats["tcp_rejected_limit"] == 1
    assert manager.connection_count == 2
    for n, (_, writer) in enumerate((first, second)):
        writer.write(request(n))
        assert (await inbox.get())[0] == request(n)
    # When one closes, a new connection from the same address is accepted again.
    first[1].close()
    await eventually(lambda: manager.connection_count == 1)
    _, writer4 = await tcp_client(manager)
    writer4.write(request(4))
    assert (await inbox.get())[0] == request(4)
    for w in (second[1], writer3, writer4):
        w.close()


# --- TCP connection reuse ---------------------------------------------------------------


async def test_send_to_source_on_tcp_reuses_the_connection(make_manager) -> None:
    manager, inbox = await make_manager("tcp:127.0.0.1:0")
    reader, writer = await tcp_client(manager)
    writer.write(request(1))
    _, source = await inbox.get()
    manager.send_to_source(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", source)
    reply = await asyncio.wait_for(reader.readexactly(37), WAIT)
    assert reply == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
    # A request to the same (ip, port) goes on the same connection too, as does one
    # naming the connection.
    client_port = writer.get_extra_info("sockname")[1]
    manager.send(b"ping-1", Target("tcp", "127.0.0.1", client_port))
    manager.send(b"ping-2", Target("tcp", "127.0.0.1", 1, conn_id=source.conn_id))
    assert await asyncio.wait_for(reader.readexactly(12), WAIT) == b"ping-1ping-2"
    assert manager.connection_count == 1
    assert manager.stats["tcp_accepted"] == 1
    writer.close()


async def test_send_to_source_reconnects_when_the_connection_is_gone(make_manager) -> None:
    # RFC 3261 §18.2.2: if the connection is closed, open one to the source address.
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.put_nowait(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    manager, _ = await make_manager("tcp:127.0.0.1:0")
    gone = Source("tcp", "127.0.0.1", port, manager.sockets[0], conn_id=12345)
    manager.send_to_source(b"SIP/2.0 200 OK\r\n\r\n", gone)
    assert await asyncio.wait_for(received.get(), WAIT) == b"SIP/2.0 200 OK\r\n\r\n"
    server.close()


async def test_tcp_send_opens_one_connection_and_reuses_it(make_manager) -> None:
    accepted: list[asyncio.StreamWriter] = []
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        while data := await reader.read(65536):
            chunks.put_nowait(data)

    server = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    manager, inbox = await make_manager("tcp:127.0.0.1:0")
    target = Target("tcp", "127.0.0.1", port)
    manager.send(b"one;", target)  # queued while connecting
    manager.send(b"two;", target)
    got = b""
    while len(got) < 8:
        got += await asyncio.wait_for(chunks.get(), WAIT)
    assert got == b"one;two;"
    manager.send(b"three;", target)
    assert await asyncio.wait_for(chunks.get(), WAIT) == b"three;"
    assert len(accepted) == 1
    assert manager.stats["tcp_connected"] == 1

    # The peer answers on that connection: delivered with the connection's id and our
    # TCP listen socket as ``local``; send_to_source answers on the same connection.
    accepted[0].write(request(5))
    data, source = await inbox.get()
    assert data == request(5)
    assert source.local is manager.sockets[0]
    assert source.conn_id is not None
    assert source.port == port
    manager.send_to_source(b"back;", source)
    assert await asyncio.wait_for(chunks.get(), WAIT) == b"back;"
    assert len(accepted) == 1
    server.close()


async def test_tcp_connect_failure_is_counted(make_manager) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    manager, _ = await make_manager("tcp:127.0.0.1:0")
    manager.send(b"a", Target("tcp", "127.0.0.1", closed_port))
    manager.send(b"b", Target("tcp", "127.0.0.1", closed_port))
    await eventually(lambda: manager.stats["tcp_connect_failed"] == 1)
    assert manager.stats["tx_errors"] == 2


# --- life cycle and identity --------------------------------------------------------------


async def test_bind_failure_names_the_socket(make_manager) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as info:
            await make_manager("tcp:127.0.0.1:0", f"udp:127.0.0.1:{port}")
    assert f"cannot listen on udp:127.0.0.1:{port}" in str(info.value)


async def test_close_frees_the_ports_and_stops_sending(make_manager) -> None:
    manager, _ = await make_manager("udp:127.0.0.1:0", "tcp:127.0.0.1:0")
    ports = [s.port for s in manager.sockets]
    await manager.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", ports[0]))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", ports[1]))
    manager.send(b"x", Target("udp", "127.0.0.1", 9))
    assert manager.stats["tx_errors"] == 1


async def test_is_local(make_manager) -> None:
    manager, _ = await make_manager("udp:127.0.0.1:0", "tcp:0.0.0.0:0")
    udp, tcp = manager.sockets
    assert manager.is_local("127.0.0.1", udp.port)
    assert manager.is_local("127.0.0.1", udp.port, "udp")
    assert manager.is_local("127.0.0.1", None)
    assert not manager.is_local("127.0.0.1", udp.port + 1 if udp.port + 1 != tcp.port else 1)
    # The wildcard listen counts for every local address, not for foreign ones.
    assert manager.is_local("127.0.0.2", tcp.port, "tcp")
    assert manager.is_local("0.0.0.0", tcp.port)
    assert not manager.is_local("127.0.0.2", tcp.port, "udp")
    assert not manager.is_local("192.0.2.1", tcp.port)
    assert not manager.is_local("::1", tcp.port)
    assert not manager.is_local("[::1]", None)
    assert not manager.is_local("localhost", udp.port)  # names are the proxy's business


async def test_is_local_ipv6(make_manager) -> None:
    manager, _ = await make_manager("udp:[::1]:0", "tcp:[::]:0")
    udp, tcp = manager.sockets
    assert manager.is_local("[::1]", udp.port)
    assert manager.is_local("0:0::1", udp.port, "udp")
    assert manager.is_local("::1", tcp.port, "tcp")
    assert not manager.is_local("2001:db8::99", tcp.port)
    assert not manager.is_local("127.0.0.1", tcp.port)


async def test_udp_send_that_cannot_go_out_is_counted_not_raised(make_manager) -> None:
    # Linux refuses a datagram to port 0 (EINVAL): the transport reports it through
    # error_received, and send() must count it as a send error, not raise.
    manager, _ = await make_manager("udp:127.0.0.1:0")
    manager.send(b"nowhere", Target("udp", "127.0.0.1", 0))
    assert manager.stats["tx_errors"] == 1
    assert manager.stats["tx_datagrams"] == 0
    assert manager.stats["rx_errors"] == 0
    with udp_client() as client:
        manager.send(b"still works", Target("udp", "127.0.0.1", client.getsockname()[1]))
        data, _ = await recv_udp(client)
    assert data == b"still works"
    assert manager.stats["tx_datagrams"] == 1
    assert manager.stats["tx_errors"] == 1


async def test_errors_reported_on_a_udp_socket_never_stop_it(make_manager) -> None:
    manager, inbox = await make_manager("udp:127.0.0.1:0")
    port = manager.sockets[0].port
    with udp_client() as gone:
        closed_port = gone.getsockname()[1]
    # Loopback answers this with ICMP port unreachable. Linux does not report that on
    # an unconnected socket without IP_RECVERR (udp(7)), so nothing is counted ...
    manager.send(b"to a closed port", Target("udp", "127.0.0.1", closed_port))
    await asyncio.sleep(0.05)
    assert manager.stats["rx_errors"] == 0
    # ... but whatever the loop does report (as it would for a connected socket) is
    # counted, and the socket keeps serving.
    manager._udp[0].error_received(ConnectionRefusedError(111, "Connection refused"))
    assert manager.stats["rx_errors"] == 1
    with udp_client() as client:
        client.sendto(request(), ("127.0.0.1", port))
        data, source = await inbox.get()
        assert data == request()
        manager.send_to_source(b"SIP/2.0 200 OK\r\n\r\n", source)
        reply, _ = await recv_udp(client)
    assert reply == b"SIP/2.0 200 OK\r\n\r\n"
    assert manager.stats["tx_errors"] == 0
    assert manager.stats["tx_datagrams"] == 2


async def test_udp_backlog_is_flushed_in_order_and_bounded(make_manager, monkeypatch) -> None:
    # A UNIX datagram socket with a short receive queue makes the kernel refuse sends
    # (EAGAIN) reliably, which loopback UDP practically never does. The protocol is the
    # one the manager puts on each UDP socket, on the loop's own transport: datagrams
    # the kernel refuses wait and go out in order once the receiver reads; past
    # UDP_WRITE_BUFFER_MAX bytes waiting, further ones are dropped and counted.
    from siprouter.transport import manager as manager_module
    from siprouter.transport.types import ListenSocket

    monkeypatch.setattr(manager_module, "UDP_WRITE_BUFFER_MAX", 200)
    manager, _ = await make_manager("udp:127.0.0.1:0")
    stats = manager.stats
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory(prefix="sr-") as tmp:  # AF_UNIX paths are short
        path = os.path.join(tmp, "rx")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(path)
        receiver.setblocking(False)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        transport, proto = await loop.create_datagram_endpoint(
            lambda: manager_module._UdpProtocol(manager, ListenSocket("udp", "127.0.0.1", 0)),
            sock=sender)
        try:
            with receiver:
                for n in range(100):
                    proto.sendto(b"datagram%02d" % n, path)  # type: ignore[arg-type]
                accepted = stats["tx_datagrams"]
                assert proto.backlog
                assert 0 < stats["tx_queued"] <= 200 // 10 + 1
                assert 0 < accepted - stats["tx_queued"] < 60  # the rest went out at once
                assert stats["tx_dropped"] == 100 - accepted
                assert stats["tx_errors"] == 0
                got: list[bytes] = []
                deadline = loop.time() + WAIT
                while len(got) < accepted and loop.time() < deadline:
                    try:
                        got.append(receiver.recv(100))
                    except BlockingIOError:
                        await asyncio.sleep(0.002)
                assert got == [b"datagram%02d" % n for n in range(accepted)]
                await eventually(lambda: not proto.backlog)
                queued = stats["tx_queued"]
                proto.sendto(b"after", path)  # type: ignore[arg-type]
                assert receiver.recv(100) == b"after"
                assert stats["tx_queued"] == queued
        finally:
            transport.abort()
            await proto.lost
