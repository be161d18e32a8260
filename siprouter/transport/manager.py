# SPDX-License-Identifier: Apache-2.0
"""UDP and TCP listeners and senders on one asyncio loop (plain asyncio or uvloop).

How this works
--------------
Each UDP socket is bound here (so a failure names the socket) and then handed to
``loop.create_datagram_endpoint(sock=...)``: the loop's own datagram transport reads
it and calls ``_UdpProtocol.datagram_received``, which counts the datagram, filters
keep-alives and oversize datagrams and calls ``on_message(data, Source)``
synchronously. Sends go through ``transport.sendto``. We used to read with
``add_reader`` and a Python loop of ``recvfrom`` until ``BlockingIOError``, but at
ordinary load each wake-up finds one datagram, so that loop paid a second, failing
``recvfrom`` and an exception per datagram. Plain asyncio's transport reads one
datagram per wake-up (no failing read; its read size is capped at ``RECV_SIZE``, see
there); uvloop's reads in C, libuv taking several datagrams per wake-up. Measured with SIPp at 500 calls/s through the stateless
relay, server CPU per call fell from 457 to 402 µs on plain asyncio and from 484 to
437 µs on uvloop.

The transports buffer a datagram the kernel will not take yet. We set their
high-water mark to zero, so ``pause_writing``/``resume_writing`` tell the protocol
exactly when such a backlog exists; only then does a send ask for the buffer size,
and beyond ``UDP_WRITE_BUFFER_MAX`` bytes datagrams are dropped and counted rather
than queued without bound. A send the kernel refuses outright is reported by the
transport through ``error_received`` while ``sendto`` runs, and counted as a send
error. Other reports (ICMP errors; Linux gives them only to connected sockets or with
``IP_RECVERR``, udp(7), and ours are neither) are counted and logged; nothing a
transport reports stops a socket.

TCP uses asyncio protocols. Each connection owns a ``StreamFramer`` (RFC 3261 §18.3)
and one ``Source`` (with its ``conn_id``) reused for every message it carries.
Connections are found again by id (responses, RFC 3261 §18.2.2: "the server
transport MUST use [the existing] connection") and by remote ``(ip, port)`` (requests
to the same target reuse an open connection, accepted or opened by us). A keep-alive
ping (RFC 5626 §3.5.1) is answered with a single CRLF. One periodic sweep, not a timer
per connection, closes connections idle for longer than ``tcp_idle_timeout``.

What to do with a message (parse, reply, route) is the caller's business: the
transport only counts, delivers and sends. Exceptions from ``on_message`` are logged
with a traceback and counted; they never stop a reader. Sending never raises for
network trouble: it is counted in ``stats`` and logged at debug level.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from siprouter.sip.errors import SipParseError
from siprouter.sip.framer import PING, StreamFramer

from .resolver import Resolver, ip_literal
from .types import ListenSocket, Source, Target

__all__ = [
    "TransportManager",
    "TransportLimits",
    "MAX_MESSAGE_SIZE",
    "TCP_IDLE_TIMEOUT",
    "MAX_CONNECTIONS_PER_SOURCE",
    "MAX_CONNECTIONS",
    "SOCKET_BUFFER_SIZE",
    "UDP_WRITE_BUFFER_MAX",
    "TCP_CONNECT_TIMEOUT",
    "TCP_WRITE_BUFFER_MAX",
    "TCP_CONNECT_QUEUE_MAX",
    "STAT_NAMES",
]

log = logging.getLogger("siprouter.transport")

# --- limits (defaults of TransportLimits) -------------------------------------------

# The largest UDP payload; Kamailio's BUF_SIZE default is the same 65535. Over TCP the
# same ceiling keeps every accepted message forwardable over UDP size-wise.
MAX_MESSAGE_SIZE = 65535
# Kamailio's tcp_connection_lifetime default (120 s). RFC 5626 clients ping far more
# often than that (§4.4.1 suggests 95-120 s for UDP, and TCP pings keep it alive).
TCP_IDLE_TIMEOUT = 120.0
# No RFC number; a guard against one address eating the connection table. 32 leaves
# room for an office of phones behind one NAT address, each with its own flow.
MAX_CONNECTIONS_PER_SOURCE = 32
# Kamailio's tcp_max_connections default is 2048; we allow twice that, as a
# connection here is a few KiB of Python objects.
MAX_CONNECTIONS = 4096

# --- internal constants -------------------------------------------------------------

# Kernel socket buffers asked for (best effort; Linux caps at net.core.[rw]mem_max).
# Bursts of a few thousand datagrams then survive a slow loop iteration.
SOCKET_BUFFER_SIZE = 4 * 1024 * 1024
# Bytes asked for per read. Any UDP payload fits (at most 65527). asyncio's selector
# transports ask for 256 KiB, above glibc's mmap threshold, so each read could cost an
# mmap, an mremap and a munmap: +30 µs per datagram measured on this VM.
RECV_SIZE = 65535
# Bytes a UDP socket's transport may hold back when the kernel send buffer is full;
# beyond this, datagrams are dropped and counted. As large as the kernel buffer we
# ask for: when both are full the box is not keeping up, and queueing more only adds
# delay while the sender's retransmission timers run (RFC 3261 §17.1.1.2: UDP is
# lossy and SIP retransmits, so a dropped datagram is sent again).
UDP_WRITE_BUFFER_MAX = 4 * 1024 * 1024
# Seconds to establish an outgoing TCP connection; well inside Timer B/F (32 s).
TCP_CONNECT_TIMEOUT = 10.0
# Bytes buffered for a TCP peer that does not read; further messages are dropped.
TCP_WRITE_BUFFER_MAX = 1024 * 1024
# Messages waiting while an outgoing TCP connection is being established.
TCP_CONNECT_QUEUE_MAX = 256
# Seconds a connection may take to flush and close after we asked it to.
TCP_CLOSE_GRACE = 5.0
# Pending accepts per TCP listener.
TCP_LISTEN_BACKLOG = 1024
# Entries of the host -> IP literal cache before it is cleared.
LITERAL_CACHE_MAX = 4096

#: Counter names in ``TransportManager.stats`` (all present from the start).
STAT_NAMES = (
    "rx_datagrams",        # UDP datagrams received
    "rx_bytes",            # bytes received, UDP and TCP
    "rx_keepalives",       # UDP datagrams holding only CRLF/NUL keep-alive padding
    "rx_oversize",         # UDP datagrams above max_message_size (dropped)
    "rx_errors",           # errors a UDP transport reports outside a send (ICMP,
                           # or a buffered datagram failing later)
    "rx_stream_messages",  # messages framed on TCP
    "keepalive_pings",     # RFC 5626 pings answered on TCP
    "tx_datagrams",        # UDP datagrams the transport accepted (sent or buffered)
    "tx_stream_messages",  # messages written to TCP connections
    "tx_queued",           # of those, datagrams that waited for kernel buffer space
    "tx_dropped",          # messages dropped for full queues/buffers
    "tx_errors",           # send failures (includes failed connects' queued messages)
    "tx_no_socket",        # no socket of the needed protocol/family
    "tx_unresolved",       # host names without a usable address
    "tcp_accepted",
    "tcp_connected",       # outgoing connections established
    "tcp_connect_failed",
    "tcp_rejected_limit",  # connections refused by max_connections(_per_source)
    "tcp_idle_closed",
    "tcp_closed",
    "framing_errors",      # TCP streams closed for bad framing (see on_stream_error)
    "callback_errors",     # exceptions raised by on_message / on_stream_error
)


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Limits applied by the transports (see the module constants for the reasons)."""

    max_message_size: int = MAX_MESSAGE_SIZE
    tcp_idle_timeout: float = TCP_IDLE_TIMEOUT
    max_connections_per_source: int = MAX_CONNECTIONS_PER_SOURCE
    max_connections: int = MAX_CONNECTIONS


OnMessage = Callable[[bytes, Source], None]
OnStreamError = Callable[[SipParseError, Source, bytes], None]


def _cap_read_size(transport: asyncio.BaseTransport) -> None:
    """Make an asyncio selector transport read ``RECV_SIZE`` bytes at a time (see there).

    ``max_size`` is an attribute of CPython's selector transports, not public API; uvloop's
    transports have none (libuv reads into one buffer per loop), so they are left alone.
    """
    if getattr(transport, "max_size", 0) > RECV_SIZE:
        transport.max_size = RECV_SIZE  # type: ignore[attr-defined]


class _UdpProtocol(asyncio.DatagramProtocol):
    """One bound UDP socket: receives for the manager, sends for it."""

    __slots__ = ("local", "on_message", "stats", "max_size", "transport", "backlog",
                 "sending", "send_error", "lost")

    def __init__(self, manager: TransportManager, local: ListenSocket):
        self.local = local
        self.on_message = manager._on_message
        self.stats = manager.stats
        self.max_size = manager.limits.max_message_size
        self.transport: asyncio.DatagramTransport | None = None
        # True while the transport holds datagrams the kernel did not take yet.
        self.backlog = False
        # True during transport.sendto, so error_received can tell a send error.
        self.sending = False
        self.send_error: Exception | None = None
        self.lost: asyncio.Future[None] = manager._loop.create_future()

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        _cap_read_size(transport)
        # High-water mark 0: pause_writing() as soon as anything is buffered, so the
        # backlog flag is exact and sends need not ask for the buffer size.
        transport.set_write_buffer_limits(high=0, low=0)  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        # Hot path: runs once per received datagram.
        stats = self.stats
        size = len(data)
        stats["rx_datagrams"] += 1
        stats["rx_bytes"] += size
        if size < 8 and not data.strip(b"\r\n\x00 "):
            # CRLF / NUL keep-alives some UAs send over UDP: nothing to parse.
            stats["rx_keepalives"] += 1
            return
        if size > self.max_size:
            stats["rx_oversize"] += 1
            return
        try:
            # IPv6 addresses come as (ip, port, flowinfo, scope_id).
            self.on_message(data, Source("udp", addr[0], addr[1], self.local))
        except Exception:
            stats["callback_errors"] += 1
            log.exception("on_message failed for a datagram from %s:%s", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        if self.sending:
            self.sending = False
            self.send_error = exc
            return
        self.stats["rx_errors"] += 1
        log.debug("udp socket %s reported: %s", self.local, exc)

    def pause_writing(self) -> None:
        self.backlog = True
        self.stats["tx_queued"] += 1  # the datagram that was just buffered

    def resume_writing(self) -> None:
        self.backlog = False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    # used by the manager

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        stats = self.stats
        transport = self.transport
        if self.backlog:
            if transport.get_write_buffer_size() >= UDP_WRITE_BUFFER_MAX:  # type: ignore[union-attr]
                stats["tx_dropped"] += 1
                log.debug("udp send buffer of %s full; datagram to %s dropped",
                          self.local, addr)
                return
            stats["tx_queued"] += 1  # waits behind the backlog
        self.sending = True
        try:
            transport.sendto(data, addr)  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:  # ValueError: address unusable by the loop
            self.send_error = exc
            self.sending = False
        if self.sending:
            self.sending = False
            stats["tx_datagrams"] += 1
            return
        stats["tx_errors"] += 1
        log.debug("udp send from %s to %s failed: %s", self.local, addr, self.send_error)
        self.send_error = None


class _TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted or opened by us."""

    __slots__ = ("manager", "local", "outgoing", "transport", "framer", "source",
                 "conn_id", "key", "last_activity", "closing", "closing_since",
                 "registered")

    def __init__(self, manager: TransportManager, local: ListenSocket, outgoing: bool):
        self.manager = manager
        self.local = local
        self.outgoing = outgoing
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(manager.limits.max_message_size)
        self.source: Source | None = None
        self.conn_id = 0
        self.key: tuple[str, int] = ("", 0)
        self.last_activity = 0.0
        self.closing = False
        self.closing_since = 0.0
        self.registered = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        _cap_read_size(transport)
        self.manager._register(self)

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        manager = self.manager
        stats = manager.stats
        self.last_activity = manager._loop.time()
        stats["rx_bytes"] += len(data)
        try:
            items = self.framer.feed(data)
        except SipParseError as exc:
            manager._stream_error(self, exc)
            return
        on_message = manager._on_message
        source = self.source
        for item in items:
            if item is PING:
                # RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
                stats["keepalive_pings"] += 1
                self.transport.write(b"\r\n")  # type: ignore[union-attr]
                continue
            stats["rx_stream_messages"] += 1
            try:
                on_message(item, source)  # type: ignore[arg-type]
            except Exception:
                stats["callback_errors"] += 1
                log.exception("on_message failed for a message from %s", source)
        error = self.framer.error
        if error is not None and not self.closing:
            manager._stream_error(self, error)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.manager._unregister(self)

    # used by the manager

    def write(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        stats = self.manager.stats
        if transport.get_write_buffer_size() > TCP_WRITE_BUFFER_MAX:
            stats["tx_dropped"] += 1
            log.debug("tcp peer %s does not read; message dropped", self.source)
            return
        transport.write(data)
        stats["tx_stream_messages"] += 1
        self.last_activity = self.manager._loop.time()

    def close(self) -> None:
        if self.closing or self.transport is None:
            return
        self.closing = True
        self.closing_since = self.manager._loop.time()
        self.transport.close()  # flushes what is buffered, then closes


class TransportManager:
    """All listen sockets and connections of one server process.

    :param specs: ``(proto, host, port)`` triples, as from ``parse_socket_spec``.
    :param on_message: called synchronously with each received message's bytes and its
        ``Source``. It must not block; exceptions are logged and counted.
    :param limits: message size, idle timeout and connection limits.
    :param resolver: resolves host names for ``send``; a default ``Resolver`` when None.
    :param on_stream_error: called when a TCP stream cannot be framed (missing or bad
        Content-Length, message too large) with the error, the connection's source and
        the start of the offending message, so the caller may answer (e.g. with the
        error's ``status_hint``) via ``send_to_source``. The connection is closed
        right after (what was sent in the hook is flushed first).
    """

    def __init__(self, specs: list[tuple[str, str, int]], on_message: OnMessage, *,
                 limits: TransportLimits = TransportLimits(),  # noqa: B008 (frozen)
                 resolver: Resolver | None = None,
                 on_stream_error: OnStreamError | None = None) -> None:
        self._specs = list(specs)
        self._on_message = on_message
        self._on_stream_error = on_stream_error
        self.limits = limits
        self.resolver = resolver if resolver is not None else Resolver()
        #: Bound sockets, in the order of ``specs`` (ports are the real ones).
        self.sockets: list[ListenSocket] = []
        #: Counters (see ``STAT_NAMES``).
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._udp: list[_UdpProtocol] = []
        self._udp_by_local: dict[ListenSocket, _UdpProtocol] = {}
        self._udp_by_family: dict[int, _UdpProtocol] = {}
        self._tcp_by_family: dict[int, ListenSocket] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._conn_ids = itertools.count(1)
        self._conns: dict[int, _TcpConnection] = {}
        self._conns_by_addr: dict[tuple[str, int], _TcpConnection] = {}
        self._per_source: dict[str, int] = {}
        self._connecting: dict[tuple[str, int], list[bytes]] = {}
        # Who to tell when a queued message cannot be sent (``send(on_error=…)``).
        self._connect_errbacks: dict[tuple[str, int], list[Callable[[BaseException], None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._literal_cache: dict[str, tuple[int, str] | None] = {}
        self._local_addr_cache: dict[str, bool] = {}
        self._started = False
        self._closed = False

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Bind every socket and start serving.

        :raises OSError: when a socket cannot be bound; the message names it (e.g.
            "cannot listen on udp:127.0.0.1:5060: Address already in use"). Sockets
            bound before the failure are closed again.
        """
        if self._started:
            raise RuntimeError("TransportManager.start() called twice")
        self._started = True
        self._loop = asyncio.get_running_loop()
        try:
            for proto, host, port in self._specs:
                if proto == "udp":
                    await self._start_udp(host, port)
                elif proto == "tcp":
                    await self._start_tcp(host, port)
                else:
                    raise ValueError(f"unsupported transport {proto!r} (expected udp or tcp)")
        except BaseException:
            await self.close()
            raise
        interval = max(0.01, min(self.limits.tcp_idle_timeout / 4, 5.0))
        self._sweeper = self._loop.create_task(self._sweep(interval))

    async def close(self) -> None:
        """Stop listening, drop every connection and pending send."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for ep in self._udp:
            if ep.transport is not None:
                ep.transport.abort()  # drops what waits; the socket closes soon after
        udp_lost = [ep.lost for ep in self._udp if ep.transport is not None]
        self._udp.clear()
        for server in self._servers:
            server.close()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.abort()
        self._connecting.clear()
        self._connect_errbacks.clear()
        waits: list[object] = [*tasks]
        if self._sweeper is not None:
            waits.append(self._sweeper)
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)  # type: ignore[arg-type]
        if udp_lost:
            # connection_lost comes one loop iteration after abort(); only then is the
            # port free again.
            await asyncio.wait(udp_lost, timeout=TCP_CLOSE_GRACE)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    def _open_socket(self, proto: str, host: str, port: int) -> tuple[socket.socket, int]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        where = f"{proto}:[{host}]:{port}" if family == socket.AF_INET6 else f"{proto}:{host}:{port}"
        try:
            sock = socket.socket(family, kind)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
        try:
            if family == socket.AF_INET6:
                # So [::] and 0.0.0.0 can be listed side by side.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_STREAM:
                # Restarting must not wait for TIME_WAIT connections of the old process.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_SIZE)
                except OSError:
                    pass  # best effort
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {where}: {exc.strerror}") from None
        return sock, sock.getsockname()[1]

    async def _start_udp(self, host: str, port: int) -> None:
        sock, real_port = self._open_socket("udp", host, port)
        local = ListenSocket("udp", host, real_port)
        try:
            _, ep = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self, local), sock=sock)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {local}: {exc.strerror}") from None
        self._udp.append(ep)
        self._udp_by_local[local] = ep
        self._udp_by_family.setdefault(local.family, ep)
        self.sockets.append(local)
        log.debug("listening on %s", local)

    async def _start_tcp(self, host: str, port: int) -> None:
        sock, real_port = self._open_socket("tcp", host, port)
        local = ListenSocket("tcp", host, real_port)
        try:
            server = await self._loop.create_server(
                lambda: _TcpConnection(self, local, False), sock=sock,
                backlog=TCP_LISTEN_BACKLOG)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {local}: {exc.strerror}") from None
        self._servers.append(server)
        self._tcp_by_family.setdefault(local.family, local)
        self.sockets.append(local)
        log.debug("listening on %s", local)

    # --- sending --------------------------------------------------------------------

    def send(self, data: bytes, target: Target, *, prefer: ListenSocket | None = None,
             on_error: Callable[[BaseException], None] | None = None) -> None:
        """Send one message. Fire and forget: never raises for network errors.

        ``on_error(exc)`` is called (at once or later) when the message is known not to
        have left: no socket for the transport, a host name that does not resolve, a
        TCP connection that cannot be opened (RFC 3261 §8.1.3.1: the transaction layer
        turns that into a 503 for the branch).

        UDP: ``sendto`` from ``prefer`` when it is a UDP socket of the target's address
        family, else from the first UDP socket of that family.
        TCP: on connection ``target.conn_id`` while it is open, else on an open
        connection to the same ``(ip, port)``, else on a new connection (opened
        asynchronously; the message waits for it).
        A host name is resolved first (asynchronously); an IP literal is sent at once.
        """
        if self._closed:
            self.stats["tx_errors"] += 1
            if on_error is not None:
                on_error(ConnectionError("transport closed"))
            return
        proto = target.proto
        if proto == "tcp" and target.conn_id is not None:
            conn = self._conns.get(target.conn_id)
            if conn is not None and not conn.closing:
                conn.write(data)
                return
        info = self._literal(target.host)
        if info is None:
            self._spawn(self._send_to_name(data, target, prefer, on_error))
            return
        family, ip = info
        if proto == "udp":
            if not self._send_udp(data, ip, target.port, family, prefer) and on_error is not None:
                on_error(OSError(f"no udp socket for {ip}"))
        elif proto == "tcp":
            self._send_tcp(data, ip, target.port, family, on_error)
        else:
            self.stats["tx_no_socket"] += 1
            log.debug("cannot send over %r: not a transport we serve", proto)
            if on_error is not None:
                on_error(OSError(f"transport {proto} is not served"))

    def send_to_source(self, data: bytes, source: Source) -> None:
        """Send back the way ``source`` came: from the same UDP socket, or on the same TCP
        connection (RFC 3261 §18.2.2); when that connection is gone, on one to
        ``source.ip:source.port`` (reused or new).

        For a response the proxy decides the address from the top Via (RFC 3261
        §18.2.2, RFC 3581 ``received``/``rport``) and uses ``send`` when that differs.
        """
        if self._closed:
            self.stats["tx_errors"] += 1
            return
        if source.proto == "udp":
            ep = self._udp_by_local.get(source.local)
            if ep is not None:
                ep.sendto(data, (source.ip, source.port))
                return
        elif source.proto == "tcp":
            conn = self._conns.get(source.conn_id)  # type: ignore[arg-type]
            if conn is not None and not conn.closing:
                conn.write(data)
                return
        self.send(data, Target(source.proto, source.ip, source.port))

    def _send_udp(self, data: bytes, ip: str, port: int, family: int,
                  prefer: ListenSocket | None) -> bool:
        ep = None
        if prefer is not None and prefer.proto == "udp" and prefer.family == family:
            ep = self._udp_by_local.get(prefer)
        if ep is None:
            ep = self._udp_by_family.get(family)
            if ep is None:
                self.stats["tx_no_socket"] += 1
                log.debug("no udp socket for the address family of %s", ip)
                return False
        ep.sendto(data, (ip, port))
        return True

    def _send_tcp(self, data: bytes, ip: str, port: int, family: int,
                  on_error: Callable[[BaseException], None] | None = None) -> None:
        key = (ip, port)
        conn = self._conns_by_addr.get(key)
        if conn is not None and not conn.closing:
            conn.write(data)
            return
        queued = self._connecting.get(key)
        if queued is not None:
            if len(queued) >= TCP_CONNECT_QUEUE_MAX:
                self.stats["tx_dropped"] += 1
                if on_error is not None:
                    on_error(OSError(f"too many messages waiting for {ip}:{port}"))
            else:
                queued.append(data)
                if on_error is not None:
                    self._connect_errbacks.setdefault(key, []).append(on_error)
            return
        self._connecting[key] = [data]
        if on_error is not None:
            self._connect_errbacks[key] = [on_error]
        self._spawn(self._connect(ip, port, family))

    async def _send_to_name(self, data: bytes, target: Target,
                            prefer: ListenSocket | None,
                            on_error: Callable[[BaseException], None] | None = None) -> None:
        try:
            addrs = await self.resolver.resolve(target.host, target.proto)
        except Exception:
            log.exception("resolving %s failed", target.host)
            addrs = []
        if self._closed:
            return
        for ip in addrs:
            family = socket.AF_INET6 if ":" in ip else socket.AF_INET
            if target.proto == "udp" and family not in self._udp_by_family:
                continue
            self.send(data, Target(target.proto, ip, target.port), prefer=prefer,
                      on_error=on_error)
            return
        self.stats["tx_unresolved"] += 1
        log.debug("no usable address for %s (%s)", target.host, addrs or "none")
        if on_error is not None:
            on_error(OSError(f"{target.host} does not resolve to a usable address"))

    async def _connect(self, ip: str, port: int, family: int) -> None:
        key = (ip, port)
        loop = self._loop
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            self._connect_failed(key, exc)
            return
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), TCP_CONNECT_TIMEOUT)
            if len(self._conns) >= self.limits.max_connections:
                raise OSError(errno.EMFILE, "connection limit reached")
            local = self._local_for_outgoing(family)
            _, conn = await loop.create_connection(
                lambda: _TcpConnection(self, local, True), sock=sock)
        except OSError as exc:  # TimeoutError is an OSError
            sock.close()
            self._connect_failed(key, exc)
            return
        except BaseException:
            sock.close()
            raise
        self.stats["tcp_connected"] += 1
        self._connect_errbacks.pop(key, None)
        queued = self._connecting.pop(key, [])
        if conn.closing:
            self.stats["tx_errors"] += len(queued)
            return
        for data in queued:
            conn.write(data)

    def _connect_failed(self, key: tuple[str, int], exc: BaseException) -> None:
        queued = self._connecting.pop(key, [])
        self.stats["tcp_connect_failed"] += 1
        self.stats["tx_errors"] += len(queued)
        log.debug("tcp connect to %s:%s failed: %s", key[0], key[1], exc or "timeout")
        for errback in self._connect_errbacks.pop(key, ()):
            try:
                errback(exc)
            except Exception:  # noqa: BLE001 - a caller's bug must not stop the others
                log.exception("send error callback failed")

    def _local_for_outgoing(self, family: int) -> ListenSocket:
        """The listen socket that stands for a connection we open: the TCP one of the
        same family (its address goes in our Via), else any."""
        local = self._tcp_by_family.get(family)
        if local is None:
            local = next((s for s in self.sockets if s.proto == "tcp"), None)
        if local is None:
            local = next((s for s in self.sockets if s.family == family), None)
        if local is None:
            local = self.sockets[0] if self.sockets else ListenSocket("tcp", "0.0.0.0", 0)
        return local

    def _spawn(self, coro: object) -> None:
        task = self._loop.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _literal(self, host: str) -> tuple[int, str] | None:
        """``(family, normalized ip)`` for an IP literal host (brackets allowed), None
        for a name. Cached: the same few hosts come back all the time."""
        cache = self._literal_cache
        try:
            return cache[host]
        except KeyError:
            pass
        ip = ip_literal(host)
        info = None if ip is None else (socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
        if len(cache) >= LITERAL_CACHE_MAX:
            cache.clear()
        cache[host] = info
        return info

    # --- TCP connection table -------------------------------------------------------

    def _register(self, conn: _TcpConnection) -> None:
        transport = conn.transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        ip, port = peer[0], peer[1]
        limits = self.limits
        if self._closed:
            transport.abort()
            return
        if not conn.outgoing:
            if (len(self._conns) >= limits.max_connections
                    or self._per_source.get(ip, 0) >= limits.max_connections_per_source):
                self.stats["tcp_rejected_limit"] += 1
                log.debug("tcp connection from %s:%s refused: connection limit", ip, port)
                conn.closing = True
                transport.abort()
                return
            self._per_source[ip] = self._per_source.get(ip, 0) + 1
            self.stats["tcp_accepted"] += 1
        conn.conn_id = next(self._conn_ids)
        conn.key = (ip, port)
        conn.source = Source("tcp", ip, port, conn.local, conn.conn_id)
        conn.last_activity = self._loop.time()
        conn.registered = True
        self._conns[conn.conn_id] = conn
        self._conns_by_addr[conn.key] = conn

    def _unregister(self, conn: _TcpConnection) -> None:
        if not conn.registered:
            return
        conn.registered = False
        self.stats["tcp_closed"] += 1
        self._conns.pop(conn.conn_id, None)
        if self._conns_by_addr.get(conn.key) is conn:
            del self._conns_by_addr[conn.key]
        if not conn.outgoing:
            ip = conn.key[0]
            left = self._per_source.get(ip, 0) - 1
            if left > 0:
                self._per_source[ip] = left
            else:
                self._per_source.pop(ip, None)

    def _stream_error(self, conn: _TcpConnection, exc: SipParseError) -> None:
        self.stats["framing_errors"] += 1
        log.debug("closing tcp connection %s: %s", conn.source, exc)
        hook = self._on_stream_error
        if hook is not None and conn.source is not None:
            try:
                hook(exc, conn.source, conn.framer.buffered)
            except Exception:
                self.stats["callback_errors"] += 1
                log.exception("on_stream_error failed for %s", conn.source)
        conn.close()

    async def _sweep(self, interval: float) -> None:
        """Close idle connections; abort those that do not finish closing."""
        timeout = self.limits.tcp_idle_timeout
        while True:
            await asyncio.sleep(interval)
            now = self._loop.time()
            for conn in list(self._conns.values()):
                if conn.closing:
                    if now - conn.closing_since > TCP_CLOSE_GRACE and conn.transport is not None:
                        conn.transport.abort()
                elif now - conn.last_activity > timeout:
                    self.stats["tcp_idle_closed"] += 1
                    log.debug("closing idle tcp connection %s", conn.source)
                    conn.close()

    # --- who are we -----------------------------------------------------------------

    @property
    def connection_count(self) -> int:
        """Open TCP connections (accepted and opened by us)."""
        return len(self._conns)

    def is_local(self, host: str, port: int | None, proto: str | None = None) -> bool:
        """Is ``host:port`` one of our sockets?

        ``host`` is an IP literal (brackets allowed; a name is never local here: names
        are the proxy's business). ``port`` None matches any of our ports, ``proto``
        None any transport. A socket bound to 0.0.0.0 or :: counts for every address
        of this host of its family.
        """
        info = self._literal(host)
        if info is None:
            return False
        family, ip = info
        for ls in self.sockets:
            if proto is not None and ls.proto != proto:
                continue
            if port is not None and ls.port != port:
                continue
            if ls.host == ip:
                return True
            if ls.family == family and ls.is_wildcard and self._is_local_address(ip, family):
                return True
        return False

    def _is_local_address(self, ip: str, family: int) -> bool:
        """Is ``ip`` an address of this host? Decided by trying to bind to it (the kernel
        knows every interface address; the answer is cached)."""
        cached = self._local_addr_cache.get(ip)
        if cached is not None:
            return cached
        addr = ipaddress.ip_address(ip.partition("%")[0])
        if addr.is_unspecified or addr.is_loopback:
            result = True
        else:
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.bind((ip, 0))
                result = True
            except OSError:
                result = False
        if len(self._local_addr_cache) >= LITERAL_CACHE_MAX:
            self._local_addr_cache.clear()
        self._local_addr_cache[ip] = result
        return result
