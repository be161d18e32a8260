# SPDX-License-Identifier: Apache-2.0
"""Small value types of the transport layer: where we listen, where a message came
from, where one goes. Plain ``__slots__`` classes because one ``Source`` is made per
received UDP datagram."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["ListenSocket", "Source", "Target", "parse_socket_spec", "PROTOCOLS",
           "DEFAULT_SIP_PORT"]

#: Transports this layer serves (TLS and WebSocket come with later issues).
PROTOCOLS = ("udp", "tcp")

#: RFC 3261 §19.1.2: the default port for sip: over UDP and TCP.
DEFAULT_SIP_PORT = 5060


class ListenSocket:
    """A socket we listen on.

    ``host`` is an IP literal (IPv6 without brackets); ``port`` is the bound port (the
    real one when 0 was asked for).
    """

    __slots__ = ("proto", "host", "port", "family", "via_host_port", "_text")

    def __init__(self, proto: str, host: str, port: int) -> None:
        self.proto = proto
        self.host = host
        self.port = port
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        hp = f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"
        #: "127.0.0.1:5060" / "[::1]:5060": the sent-by of a Via through this socket.
        self.via_host_port = hp
        self._text = f"{proto}:{hp}"

    @property
    def is_wildcard(self) -> bool:
        """Bound to 0.0.0.0 or :: (every local address)."""
        return self.host in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"ListenSocket({self._text})"


class Source:
    """Where a received message came from.

    ``conn_id`` identifies the TCP connection (``None`` for UDP); ``local`` is the
    socket it arrived on (for a connection we opened, the TCP listen socket of the same
    address family, whose address our Via carries).
    """

    __slots__ = ("proto", "ip", "port", "local", "conn_id")

    def __init__(self, proto: str, ip: str, port: int, local: ListenSocket,
                 conn_id: int | None = None) -> None:
        self.proto = proto
        self.ip = ip
        self.port = port
        self.local = local
        self.conn_id = conn_id

    def __repr__(self) -> str:
        ip = f"[{self.ip}]" if ":" in self.ip else self.ip
        conn = f" conn={self.conn_id}" if self.conn_id is not None else ""
        return f"Source({self.proto}:{ip}:{self.port} via {self.local}{conn})"


class Target:
    """Where to send: ``host`` is an IP literal or a DNS name; ``conn_id`` names a TCP
    connection to prefer while it is open."""

    __slots__ = ("proto", "host", "port", "conn_id")

    def __init__(self, proto: str, host: str, port: int, conn_id: int | None = None) -> None:
        self.proto = proto
        self.host = host
        self.port = port
        self.conn_id = conn_id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return (self.proto, self.host, self.port, self.conn_id) == (
            other.proto, other.host, other.port, other.conn_id)

    def __hash__(self) -> int:
        return hash((self.proto, self.host, self.port, self.conn_id))

    def __repr__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        conn = f" conn={self.conn_id}" if self.conn_id is not None else ""
        return f"Target({self.proto}:{host}:{self.port}{conn})"


_SPEC_FORM = ("expected PROTO:HOST[:PORT] with PROTO one of udp, tcp and HOST an IPv4 "
              "address or an IPv6 address in brackets, e.g. udp:127.0.0.1:5060 or "
              "tcp:[::1]:5060")


def parse_socket_spec(text: str) -> tuple[str, str, int]:
    """Parse a listen socket description into ``(proto, host, port)``.

    Accepts ``udp:127.0.0.1:5060``, ``tcp:[::1]:5060``, ``udp:0.0.0.0`` (port
    defaults to 5060), ``tcp:[::]``; the protocol is case-insensitive. The host is
    returned normalized (IPv6 compressed, without brackets). Port 0 asks for any free
    port.

    :raises ValueError: with a message saying what is expected.
    """
    proto, sep, rest = text.strip().partition(":")
    proto = proto.lower()
    if not sep or not rest:
        raise ValueError(f"bad listen socket {text!r}: {_SPEC_FORM}")
    if proto not in PROTOCOLS:
        raise ValueError(f"bad listen socket {text!r}: unsupported transport {proto!r}; "
                         f"{_SPEC_FORM}")
    port_text = ""
    if rest.startswith("["):
        host, close, after = rest[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise ValueError(f"bad listen socket {text!r}: {_SPEC_FORM}")
        port_text = after[1:] if after else ""
        if after and not port_text:
            raise ValueError(f"bad listen socket {text!r}: empty port; {_SPEC_FORM}")
        try:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad listen socket {text!r}: {host!r} is not an IPv6 "
                             f"address; {_SPEC_FORM}") from None
    else:
        if rest.count(":") > 1:
            raise ValueError(f"bad listen socket {text!r}: put an IPv6 address in "
                             f"brackets; {_SPEC_FORM}")
        host, colon, port_text = rest.partition(":")
        if colon and not port_text:
            raise ValueError(f"bad listen socket {text!r}: empty port; {_SPEC_FORM}")
        try:
            addr = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"bad listen socket {text!r}: {host!r} is not an IPv4 "
                             f"address; {_SPEC_FORM}") from None
    port = DEFAULT_SIP_PORT
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            raise ValueError(f"bad listen socket {text!r}: port {port_text!r} is not a "
                             f"number from 0 to 65535; {_SPEC_FORM}")
        port = int(port_text)
    return proto, str(addr), port
