# SPDX-License-Identifier: Apache-2.0
"""Turn a host name into IP addresses for sending: /etc/hosts first, then A/AAAA
through dnspython's asyncio resolver, with a small TTL cache.

RFC 3263 (NAPTR → SRV → A/AAAA, picking transport and port) comes with a later
issue; ``locate`` is the seam where it goes. Until then a name resolves to its
addresses and the caller's transport and port are kept.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable

import dns.asyncresolver
import dns.exception
import dns.resolver

__all__ = ["Resolver", "HostsFile", "POSITIVE_TTL_CAP", "NEGATIVE_TTL", "DNS_LIFETIME",
           "MAX_CACHE_ENTRIES"]

log = logging.getLogger("siprouter.transport.resolver")

# Longest time an answer is kept, whatever its TTL says: a destination that moves
# is picked up within the hour even from a zone with day-long TTLs.
POSITIVE_TTL_CAP = 3600.0
# How long "no such name / no address" is remembered (RFC 2308 negative caching;
# we do not read the SOA minimum, 30 s bounds both a typo's cost and a fix's delay).
NEGATIVE_TTL = 30.0
# Total time for one query including retries: well inside SIP Timer B/F (32 s) so a
# transaction still has time to fail over.
DNS_LIFETIME = 5.0
# Cache entries before the cache is cleared wholesale (names we send to are few; a
# flood of distinct names must not grow memory without bound).
MAX_CACHE_ENTRIES = 10_000
# How often /etc/hosts' modification time is checked.
HOSTS_RECHECK_INTERVAL = 5.0


def ip_literal(host: str) -> str | None:
    """Normalized IP literal for ``host`` ("[::1]" → "::1"), or None for a name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class HostsFile:
    """The static table of /etc/hosts (dnspython does not read it), reloaded when the
    file changes."""

    def __init__(self, path: str = "/etc/hosts", *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._mtime: float | None = None
        self._next_check = 0.0
        self._table: dict[str, list[str]] = {}

    def lookup(self, name: str) -> list[str]:
        """Addresses listed for ``name`` (case-insensitive), in file order."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + HOSTS_RECHECK_INTERVAL
            self._maybe_reload()
        return self._table.get(name.lower().rstrip("."), [])

    def _maybe_reload(self) -> None:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            self._table = {}
            self._mtime = None
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return
        self._table = self.parse(text)

    @staticmethod
    def parse(text: str) -> dict[str, list[str]]:
        """``name -> [addresses]`` from hosts(5) text; bad lines are skipped."""
        table: dict[str, list[str]] = {}
        for line in text.splitlines():
            fields = line.partition("#")[0].split()
            if len(fields) < 2:
                continue
            addr = ip_literal(fields[0])
            if addr is None:
                continue
            for name in fields[1:]:
                addrs = table.setdefault(name.lower().rstrip("."), [])
                if addr not in addrs:
                    addrs.append(addr)
        return table


class Resolver:
    """Resolve host names to IP addresses for the transport.

    :param hosts_path: static table consulted before DNS.
    :param dns_resolver: a ``dns.asyncresolver.Resolver``; by default one is made
        from /etc/resolv.conf on first use.
    :param lifetime: seconds one DNS query may take, retries included.
    :param clock: monotonic clock (injectable for tests).
    """

    def __init__(self, *, hosts_path: str = "/etc/hosts",
                 dns_resolver: dns.asyncresolver.Resolver | None = None,
                 lifetime: float = DNS_LIFETIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hosts = HostsFile(hosts_path, clock=clock)
        self.lifetime = lifetime
        self._dns = dns_resolver
        self._clock = clock
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[str, asyncio.Future[list[str]]] = {}

    async def resolve(self, host: str, proto: str) -> list[str]:
        """IP addresses for ``host``: an IP literal as is, else /etc/hosts, else A and
        AAAA records (IPv4 first). An empty list when the name has no address or DNS
        fails (logged at debug). ``proto`` is unused until RFC 3263 lands.
        """
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        name = host.lower().rstrip(".")
        static = self.hosts.lookup(name)
        if static:
            return list(static)
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and cached[0] > now:
            return list(cached[1])
        pending = self._inflight.get(name)
        if pending is None:
            # One query per name at a time: concurrent senders share its answer.
            pending = asyncio.ensure_future(self._query(name))
            self._inflight[name] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(name, None))
        return list(await asyncio.shield(pending))

    async def locate(self, host: str, port: int | None, proto: str) -> list[tuple[str, str, int]]:
        """Ordered ``(proto, ip, port)`` hops to try for a SIP URI's host.

        This is the RFC 3263 seam: §4.1 (transport from NAPTR) and §4.2 (SRV, when no
        port is given) belong here. Today: the given transport, the given port or 5060,
        every A/AAAA address.
        """
        addrs = await self.resolve(host, proto)
        return [(proto, ip, port if port is not None else 5060) for ip in addrs]

    async def _query(self, name: str) -> list[str]:
        resolver = self._dns
        if resolver is None:
            try:
                resolver = self._dns = dns.asyncresolver.Resolver()
            except (dns.resolver.NoResolverConfiguration, OSError) as exc:
                log.warning("no DNS configuration (%s); only /etc/hosts and IP addresses "
                            "can be sent to", exc)
                self._store(name, [], NEGATIVE_TTL)
                return []
        v4, v6 = await asyncio.gather(self._rrset(resolver, name, "A"),
                                      self._rrset(resolver, name, "AAAA"))
        addrs = v4[0] + v6[0]
        ttls = [t for t in (v4[1], v6[1]) if t is not None]
        ttl = min(min(ttls), POSITIVE_TTL_CAP) if addrs and ttls else NEGATIVE_TTL
        self._store(name, addrs, ttl)
        return addrs

    async def _rrset(self, resolver: dns.asyncresolver.Resolver, name: str,
                     rdtype: str) -> tuple[list[str], float | None]:
        try:
            answer = await resolver.resolve(name, rdtype, lifetime=self.lifetime,
                                            search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], None
        except dns.exception.DNSException as exc:
            log.debug("DNS %s %s failed: %s", rdtype, name, exc)
            return [], None
        ttl = float(answer.rrset.ttl) if answer.rrset is not None else None
        return [rr.to_text() for rr in answer], ttl

    def _store(self, name: str, addrs: list[str], ttl: float) -> None:
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.clear()
        self._cache[name] = (self._clock() + ttl, addrs)
