# SPDX-License-Identifier: Apache-2.0
"""Listen socket specs and the small value types."""

from __future__ import annotations

import socket

import pytest

from siprouter.transport.types import ListenSocket, Source, Target, parse_socket_spec


@pytest.mark.parametrize(("text", "expected"), [
    ("udp:127.0.0.1:5060", ("udp", "127.0.0.1", 5060)),
    ("tcp:[::1]:5070", ("tcp", "::1", 5070)),
    ("udp:0.0.0.0", ("udp", "0.0.0.0", 5060)),
    ("tcp:[::]", ("tcp", "::", 5060)),
    ("UDP:10.0.0.1:0", ("udp", "10.0.0.1", 0)),
    ("tcp:[2001:DB8:0:0::1]:65535", ("tcp", "2001:db8::1", 65535)),
    (" udp:127.0.0.1:5060 ", ("udp", "127.0.0.1", 5060)),
])
def test_parse_socket_spec(text: str, expected: tuple[str, str, int]) -> None:
    assert parse_socket_spec(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("127.0.0.1:5060", "unsupported transport"),
    ("tls:127.0.0.1:5061", "unsupported transport 'tls'"),
    ("udp:", "expected PROTO:HOST[:PORT]"),
    ("udp", "expected PROTO:HOST[:PORT]"),
    ("udp:localhost:5060", "'localhost' is not an IPv4 address"),
    ("udp:::1:5060", "put an IPv6 address in brackets"),
    ("tcp:[::1:5060", "expected PROTO:HOST[:PORT]"),
    ("tcp:[::1]5060", "expected PROTO:HOST[:PORT]"),
    ("tcp:[1.2.3.4]:5060", "is not an IPv6 address"),
    ("udp:127.0.0.1:", "empty port"),
    ("tcp:[::1]:", "empty port"),
    ("udp:127.0.0.1:65536", "port '65536' is not a number from 0 to 65535"),
    ("udp:127.0.0.1:-1", "is not a number"),
    ("udp:127.0.0.1:５０６０", "is not a number"),
    ("udp:256.0.0.1:5060", "is not an IPv4 address"),
])
def test_parse_socket_spec_errors_say_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_socket_spec(text)
    assert says in str(info.value)
    assert "e.g. udp:127.0.0.1:5060" in str(info.value)


def test_listen_socket_text_forms() -> None:
    v4 = ListenSocket("udp", "127.0.0.1", 5060)
    v6 = ListenSocket("tcp", "::1", 5070)
    assert str(v4) == "udp:127.0.0.1:5060"
    assert str(v6) == "tcp:[::1]:5070"
    assert v4.via_host_port == "127.0.0.1:5060"
    assert v6.via_host_port == "[::1]:5070"
    assert (v4.family, v6.family) == (socket.AF_INET, socket.AF_INET6)
    assert not v4.is_wildcard
    assert ListenSocket("udp", "0.0.0.0", 1).is_wildcard
    assert ListenSocket("udp", "::", 1).is_wildcard


def test_value_types_have_slots() -> None:
    local = ListenSocket("udp", "127.0.0.1", 5060)
    src = Source("udp", "192.0.2.1", 5062, local)
    assert src.conn_id is None
    with pytest.raises(AttributeError):
        src.extra = 1  # type: ignore[attr-defined]
    assert "192.0.2.1:5062" in repr(src)
    assert Target("tcp", "example.com", 5060) == Target("tcp", "example.com", 5060)
    assert Target("tcp", "example.com", 5060) != Target("tcp", "example.com", 5060, conn_id=3)
    assert repr(Target("udp", "::1", 5060)) == "Target(udp:[::1]:5060)"
