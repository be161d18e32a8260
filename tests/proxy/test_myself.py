"""Kamailio's ``myself``: configured domains, host name, listen addresses and ports."""

from __future__ import annotations

from siprouter.proxy.myself import Myself
from siprouter.sip.uri import parse_uri
from siprouter.transport.types import ListenSocket


def me(*specs, domains=("example.com",), hostname="sip1.example.net", is_local_ip=None):
    socks = [ListenSocket(p, h, port) for p, h, port in specs]
    return Myself(domains, socks, hostname, is_local_ip=is_local_ip)


def test_domains_and_hostname_match_on_any_port():
    m = me(("udp", "127.0.0.1", 5060))
    assert m.is_myself("sip:alice@example.com")
    assert m.is_myself("sip:alice@EXAMPLE.com:5099")
    assert m.is_myself(parse_uri("sips:sip1.example.net"))
    assert m.is_myself("example.com")
    assert not m.is_myself("sip:alice@example.org")


def test_addresses_match_with_their_port_or_any_port_when_none_is_given():
    m = me(("udp", "127.0.0.1", 5060), ("tcp", "::1", 5080))
    assert m.is_myself("sip:127.0.0.1")
    assert not m.is_myself("sip:127.0.0.1:5070")
    # No port in the URI: any port of ours (Kamailio's myself compares the port only
    # when the URI has one), so a phone set up with the IP alone finds us on 5080.
    assert m.is_myself("sip:[::1]")
    assert m.is_myself("sips:127.0.0.1")
    assert not m.is_myself("sip:127.0.0.2")
    assert m.is_myself("sip:[::1]:5080")
    assert m.is_myself("sip:[0:0:0:0:0:0:0:1]:5080")    # IPv6 compared as addresses
    assert not m.is_myself("tel:+15551234")


def test_wildcard_listen_asks_the_transport_about_non_loopback_addresses():
    asked = []

    def is_local_ip(host, port):
        asked.append((host, port))
        return host == "192.0.2.7"

    m = me(("udp", "0.0.0.0", 5060), is_local_ip=is_local_ip)
    assert m.is_myself("sip:127.0.0.1")
    assert m.is_myself("sip:192.0.2.7")
    assert not m.is_myself("sip:192.0.2.8")
    assert not m.is_myself("sip:192.0.2.7:5070")        # not a port we listen on
    assert ("192.0.2.7", 5060) in asked
