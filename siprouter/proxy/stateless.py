# SPDX-License-Identifier: Apache-2.0
"""Stateless proxying (RFC 3261 §16.11): branch computation, next-hop selection for
requests and responses, and the Via/Max-Forwards edits of a forwarded request.

Pure functions over messages (no sockets); ``ProxyCore`` calls them and sends.
"""

from __future__ import annotations

import hashlib
import ipaddress

from siprouter.sip.errors import RemoteProtocolError
from siprouter.sip.headers import Via
from siprouter.sip.message import Request
from siprouter.sip.uri import SipUri, TelUri, parse_uri
from siprouter.transport.types import Target

__all__ = [
    "MAGIC_COOKIE",
    "TM_BRANCH_PREFIX",
    "DEFAULT_MAX_FORWARDS",
    "stateless_branch",
    "stateless_to_tag",
    "uri_target",
    "response_target",
    "is_forbidden_destination",
]

#: RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this.
MAGIC_COOKIE = "z9hG4bK"
#: Branch ids of our stateful branches (``siprouter.proxy.tm``) start with this; those of
#: statelessly forwarded requests with ``MAGIC_COOKIE + "sl"``.
TM_BRANCH_PREFIX = MAGIC_COOKIE + "tm"
#: RFC 3261 §16.6 step 3: a proxy adds Max-Forwards: 70 when the request has none.
DEFAULT_MAX_FORWARDS = 70

_DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


def _digest(secret: bytes, *parts: str) -> str:
    """A keyed 64-bit hash of the parts, as 16 hex digits."""
    data = "\0".join(parts).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(data, key=secret, digest_size=8).hexdigest()


def stateless_branch(req: Request, secret: bytes, next_uri: str) -> str:
    """The branch of our Via on a statelessly forwarded request (§16.11).

    Retransmissions, and the CANCEL or non-2xx ACK of an INVITE, must leave with the same
    branch as the INVITE did. §16.11 recommends a hash of the received branch when it
    carries the magic cookie, else of the topmost Via, To tag, From tag, Call-ID, CSeq
    number and Request-URI. The URI we forward to is added so that a request spiralling
    back through us with a new target gets a new branch.
    """
    via = req.top_via
    if via is not None and via.branch and via.branch.startswith(MAGIC_COOKIE):
        return MAGIC_COOKIE + "sl" + _digest(secret, via.branch, next_uri)
    # The To and From values stand in for their tags: they contain them, and reading
    # them raw cannot fail on a header the script never looked at.
    return MAGIC_COOKIE + "sl" + _digest(
        secret, via.raw if via else "", req.header("to") or "", req.header("from") or "",
        req.header("call-id") or "", str(req.cseq.seq), req.ruri, next_uri)


def stateless_to_tag(req: Request, secret: bytes) -> str:
    """A To-tag for a stateless reply: the same for retransmissions of one request, so
    that the UAC sees one dialog-less answer (as Kamailio's sl module does)."""
    # Raw values, as for the branch: they contain the tag and branch, and a reply must
    # still be possible when one of them is malformed (that may be why we answer).
    return _digest(secret, req.header("call-id") or "", req.header("from") or "",
                   req.header("via") or "")


def uri_target(uri_text: str | SipUri, *, default_proto: str = "udp") -> Target:
    """Where a SIP URI says to send (§16.6 step 7 / RFC 3263 §4 without DNS records):
    ``maddr`` or host, the port (or the transport's default), the ``transport`` param.

    :raises RemoteProtocolError: 416 for a URI we cannot send to (tel:, other schemes),
        400 for a malformed one.
    """
    uri = parse_uri(uri_text) if isinstance(uri_text, str) else uri_text
    if not isinstance(uri, SipUri):
        if isinstance(uri, TelUri):
            raise RemoteProtocolError("Unsupported URI Scheme", 416, "tel: URI has no host")
        raise RemoteProtocolError("Unsupported URI Scheme", 416, str(uri)[:60])
    proto = uri.params.get("transport") or default_proto
    proto = proto.lower() if isinstance(proto, str) else default_proto
    if uri.scheme == "sips" and proto == "udp":
        proto = "tls"
    host = uri.params.get("maddr") or uri.host
    if host.startswith("["):
        host = host[1:-1]
    # TODO(issue: RFC 3263): a host name without port should be looked up by NAPTR/SRV.
    return Target(proto, host, uri.port or _DEFAULT_PORTS.get(proto, 5060))


def response_target(via: Via) -> Target:
    """Where a response goes, from the Via it is routed by (§18.2.2, RFC 3581 §4).

    ``maddr`` first; else the ``received`` address (or the sent-by host) with the
    ``rport`` port when it has a value, else the sent-by port, else the default port.
    """
    proto = via.transport.lower()
    port = via.port or _DEFAULT_PORTS.get(proto, 5060)
    maddr = via.maddr
    if maddr:
        return Target(proto, maddr.strip("[]"), port)
    rport = via.rport
    if rport:
        port = int(rport)
    host = via.received or via.host
    if host.startswith("["):
        host = host[1:-1]
    return Target(proto, host, port)


_FORBIDDEN: dict[str, bool] = {}


def is_forbidden_destination(host: str) -> bool:
    """Broadcast and multicast addresses are never sent to (RFC 4475 §3.3.8 bcast;
    an open relay to a broadcast address is an amplifier)."""
    verdict = _FORBIDDEN.get(host)
    if verdict is None:
        verdict = _is_forbidden(host)
        if len(_FORBIDDEN) < 4096:
            _FORBIDDEN[host] = verdict
    return verdict


def _is_forbidden(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified:
        return True
    if ip.version == 4:
        # Only the limited broadcast address: a directed broadcast (x.y.z.255) is an
        # ordinary host address in any subnet larger than /24, and we know no masks.
        return host == "255.255.255.255"
    return False
