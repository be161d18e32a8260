# SPDX-License-Identifier: Apache-2.0
"""Who "we" are: Kamailio's ``myself`` — configured domains, listen addresses, host name.

A URI is ours when its host is one of the configured domains or the host name (any
port), or one of our listen addresses with the port we listen on there (the default
port, 5060 or 5061 for sips, when the URI gives none), as Kamailio's ``check_self``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from siprouter.sip.errors import SipParseError
from siprouter.sip.uri import SipUri, parse_uri

__all__ = ["Myself", "bare_host"]


def bare_host(host: str) -> str:
    """Host in lowercase, IPv6 without brackets and in canonical form."""
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            pass
    return host


class Myself:
    """The set of names and addresses that mean "this server"."""

    def __init__(self, domains: Iterable[str], sockets: Iterable[Any],
                 hostname: str | None = None,
                 is_local_ip: Callable[[str, int], bool] | None = None) -> None:
        """:param is_local_ip: tells whether an IP address is one of this machine's (the
        transport's ``is_local``); needed only for wildcard (0.0.0.0 / ::) listens."""
        self._is_local_ip = is_local_ip
        self._seen: dict[tuple[str, int], bool] = {}
        self.domains = frozenset(d.lower() for d in domains)
        names = set(self.domains)
        if hostname:
            names.add(hostname.lower())
        self.names = frozenset(names)
        self.sockets = list(sockets)
        # (ip, port) pairs we listen on; wildcard listens accept any local address.
        self.addresses: set[tuple[str, int]] = set()
        self.wildcard_ports: set[int] = set()
        for s in self.sockets:
            host = bare_host(s.host)
            if host in ("0.0.0.0", "::"):
                self.wildcard_ports.add(s.port)
            self.addresses.add((host, s.port))
        #: The listen addresses, without their ports.
        self._hosts = frozenset(h for h, _ in self.addresses)

    def is_local_address(self, host: str, port: int) -> bool:
        """One of our listen (address, port) pairs? (Loop checks and the "is this Via
        ours" test of every response use this: answers are memoized.)"""
        key = (host, port)
        verdict = self._seen.get(key)
        if verdict is None:
            verdict = self._is_local_address(host, port)
            if len(self._seen) < 4096:
                self._seen[key] = verdict
        return verdict

    def _is_local_address(self, host: str, port: int) -> bool:
        host = bare_host(host)
        if (host, port) in self.addresses:
            return True
        if port in self.wildcard_ports:
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                return False
            if ip.is_loopback or ip.is_unspecified:
                return True
            return self._is_local_ip is not None and self._is_local_ip(host, port)
        return False

    def is_myself(self, uri_or_host: Any, port: int | None = None) -> bool:
        """Is this URI, or host (with port when given), this server?"""
        if isinstance(uri_or_host, SipUri):
            host, port, secure = uri_or_host.host, uri_or_host.port, uri_or_host.scheme == "sips"
        elif isinstance(uri_or_host, str) and (
            uri_or_host[:4].lower() == "sip:" or uri_or_host[:5].lower() == "sips:"
        ):
            try:
                uri = parse_uri(uri_or_host)
            except SipParseError:
                return False
            if not isinstance(uri, SipUri):
                return False
            host, port, secure = uri.host, uri.port, uri.scheme == "sips"
        elif isinstance(uri_or_host, str):
            host, secure = uri_or_host, False
        else:
            return False  # tel: and other schemes name no host of ours
        host = bare_host(host)
        if host in self.names:
            return True
        if port is None:
            # No port in the URI: our address on any of our ports (as Kamailio's
            # ``myself``, which compares the port only when the URI has one) — a phone
            # set up with the server's IP alone reaches a server on port 5080.
            return host in self._hosts or self.is_local_address(host, 5061 if secure else 5060)
        return self.is_local_address(host, port)
