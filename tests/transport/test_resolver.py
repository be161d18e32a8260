# SPDX-License-Identifier: Apache-2.0
"""Resolver: IP literals, /etc/hosts, A/AAAA over real DNS (a tiny server on
127.0.0.1), TTL cache, shared in-flight queries."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from siprouter.transport.resolver import NEGATIVE_TTL, HostsFile, Resolver, ip_literal


class DnsServer:
    """A minimal authoritative DNS server on 127.0.0.1 answering from ``records``
    (``(name, "A"|"AAAA") -> ([addresses], ttl)``); NXDOMAIN for unknown names."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[list[str], int]] = {}
        self.queries: list[tuple[str, str]] = []
        self.delay = 0.0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()

    def _readable(self) -> None:
        try:
            data, addr = self.sock.recvfrom(4096)
        except BlockingIOError:
            return
        query = dns.message.from_wire(data)
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True)
        rdtype = dns.rdatatype.to_text(q.rdtype)
        self.queries.append((name, rdtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        found = self.records.get((name, rdtype))
        if found is not None:
            addrs, ttl = found
            response.answer.append(dns.rrset.from_text(q.name, ttl, "IN", rdtype, *addrs))
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        wire = response.to_wire()
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.sock.sendto, wire, addr)
        else:
            self.sock.sendto(wire, addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    server.start()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_resolver(server: DnsServer, hosts: Path, clock: Clock | None = None) -> Resolver:
    dns_resolver = dns.asyncresolver.Resolver(configure=False)
    dns_resolver.nameservers = ["127.0.0.1"]
    dns_resolver.port = server.port
    return Resolver(hosts_path=str(hosts), dns_resolver=dns_resolver,
                    clock=clock or Clock())


@pytest.fixture
def hosts_file(tmp_path: Path) -> Path:
    path = tmp_path / "hosts"
    path.write_text(
        "# comment line\n"
        "127.0.0.1\tlocalhost\n"
        "::1 localhost ip6-localhost  # trailing comment\n"
        "192.0.2.7 PBX.example.net pbx\n"
        "not-an-ip broken\n"
        "10.0.0.1\n"
    )
    return path


def test_ip_literal() -> None:
    assert ip_literal("127.0.0.1") == "127.0.0.1"
    assert ip_literal("[::1]") == "::1"
    assert ip_literal("2001:DB8::0:1") == "2001:db8::1"
    assert ip_literal("example.com") is None
    assert ip_literal("[example.com]") is None


def test_hosts_file_parse() -> None:
    table = HostsFile.parse("127.0.0.1 localhost\n::1 localhost\n# x\nbad line\n1.2.3.4 A.b.\n")
    assert table == {"localhost": ["127.0.0.1", "::1"], "a.b": ["1.2.3.4"]}


async def test_ip_literals_are_returned_as_is(dns_server: DnsServer, hosts_file: Path) -> None:
    resolver = make_resolver(dns_server, hosts_file)
    assert await resolver.resolve("192.0.2.1", "udp") == ["192.0.2.1"]
    assert await resolver.resolve("[::1]", "tcp") == ["::1"]
    assert dns_server.queries == []


async def test_hosts_file_comes_first(dns_server: DnsServer, hosts_file: Path) -> None:
    dns_server.records[("pbx.example.net", "A")] = (["198.51.100.1"], 60)
    resolver = make_resolver(dns_server, hosts_file)
    assert await resolver.resolve("localhost", "udp") == ["127.0.0.1", "::1"]
    assert await resolver.resolve("pbx.EXAMPLE.net.", "udp") == ["192.0.2.7"]
    assert dns_server.queries == []


async def test_hosts_file_changes_are_picked_up(dns_server: DnsServer, hosts_file: Path) -> None:
    clock = Clock()
    resolver = make_resolver(dns_server, hosts_file, clock)
    assert await resolver.resolve("pbx", "udp") == ["192.0.2.7"]
    hosts_file.write_text("192.0.2.99 pbx\n")

    os.utime(hosts_file, (2_000_000_000, 2_000_000_000))
    clock.now += 10
    assert await resolver.resolve("pbx", "udp") == ["192.0.2.99"]


async def test_a_and_aaaa_from_dns(dns_server: DnsServer, hosts_file: Path) -> None:
    dns_server.records[("sip.example.com", "A")] = (["192.0.2.10", "192.0.2.11"], 300)
    dns_server.records[("sip.example.com", "AAAA")] = (["2001:db8::10"], 300)
    resolver = make_resolver(dns_server, hosts_file)
    addrs = await resolver.resolve("sip.example.com", "udp")
    assert sorted(addrs[:2]) == ["192.0.2.10", "192.0.2.11"]
    assert addrs[2:] == ["2001:db8::10"]
    assert sorted(dns_server.queries) == [("sip.example.com", "A"), ("sip.example.com", "AAAA")]


async def test_answers_are_cached_for_their_ttl(dns_server: DnsServer, hosts_file: Path) -> None:
    dns_server.records[("sip.example.com", "A")] = (["192.0.2.10"], 60)
    clock = Clock()
    resolver = make_resolver(dns_server, hosts_file, clock)
    assert await resolver.resolve("sip.example.com", "udp") == ["192.0.2.10"]
    queries = len(dns_server.queries)
    clock.now += 59
    assert await resolver.resolve("sip.example.com", "udp") == ["192.0.2.10"]
    assert len(dns_server.queries) == queries
    dns_server.records[("sip.example.com", "A")] = (["192.0.2.20"], 60)
    clock.now += 2
    assert await resolver.resolve("sip.example.com", "udp") == ["192.0.2.20"]
    assert len(dns_server.queries) == 2 * queries


async def test_unknown_names_are_cached_negatively(dns_server: DnsServer, hosts_file: Path) -> None:
    clock = Clock()
    resolver = make_resolver(dns_server, hosts_file, clock)
    assert await resolver.resolve("nowhere.example.com", "udp") == []
    queries = len(dns_server.queries)
    assert queries >= 1
    clock.now += NEGATIVE_TTL - 1
    assert await resolver.resolve("nowhere.example.com", "udp") == []
    assert len(dns_server.queries) == queries
    clock.now += 2
    assert await resolver.resolve("nowhere.example.com", "udp") == []
    assert len(dns_server.queries) > queries


async def test_concurrent_lookups_share_one_query(dns_server: DnsServer, hosts_file: Path) -> None:
    dns_server.records[("sip.example.com", "A")] = (["192.0.2.10"], 60)
    dns_server.delay = 0.05
    resolver = make_resolver(dns_server, hosts_file)
    results = await asyncio.gather(*(resolver.resolve("sip.example.com", "udp") for _ in range(10)))
    assert results == [["192.0.2.10"]] * 10
    assert dns_server.queries.count(("sip.example.com", "A")) == 1


async def test_locate_is_the_rfc3263_seam(dns_server: DnsServer, hosts_file: Path) -> None:
    resolver = make_resolver(dns_server, hosts_file)
    assert await resolver.locate("pbx", None, "tcp") == [("tcp", "192.0.2.7", 5060)]
    assert await resolver.locate("192.0.2.1", 5080, "udp") == [("udp", "192.0.2.1", 5080)]
