# SPDX-License-Identifier: Apache-2.0
"""The sanity stage: what RFC 3261 says must be rejected before a request is processed.

Runs after parsing, before the routing script (Kamailio's ``sanity_check`` with its
default checks, plus the Proxy-Require rule of §16.3). Raises ``RemoteProtocolError``
carrying the status to answer; the proxy core turns it into a stateless reply. Checks
that the proxy role makes on every request:

- mandatory headers present and well formed: Via, From, To, Call-ID, CSeq (§8.1.1,
  §16.3 step 1 "reasonable syntax"); Max-Forwards and Content-Length well formed;
- CSeq method equals the request method (§8.1.1.5; RFC 4475 §3.1.2.17/18);
- Request-URI scheme known: sip, sips, tel (§8.2.2.1: else 416);
- Proxy-Require lists only option tags we support (§16.3 step 5: else 420 with an
  Unsupported header listing them).

``Require`` is end to end: a proxy ignores it (§16.3 step 5 note); it is checked only by
the element that answers a request itself (role ``"uas"``/``"registrar"``), §8.2.2.3.
"""

from __future__ import annotations

from siprouter.sip.errors import RemoteProtocolError
from siprouter.sip.message import Request, Response
from siprouter.sip.uri import AbsoluteUri, SipUri

__all__ = ["SUPPORTED_OPTION_TAGS", "UnsupportedExtension", "check_request", "check_response",
           "check_require"]

# Option tags this server implements. None yet for a proxy; the registrar adds "path"
# (RFC 3327) and "outbound" (RFC 5626) when they exist (issue 5).
SUPPORTED_OPTION_TAGS: frozenset[str] = frozenset()

_SUPPORTED_SCHEMES = ("sip", "sips", "tel")
# Headers a request carries exactly once: canonical key -> name for the reason phrase.
_SINGLE = {"call-id": "Call-ID", "cseq": "CSeq", "from": "From", "to": "To",
           "max-forwards": "Max-Forwards", "content-length": "Content-Length"}
_MANDATORY = ("from", "to", "call-id", "cseq")


class UnsupportedExtension(RemoteProtocolError):
    """420 Bad Extension; ``unsupported`` goes into the reply's Unsupported header."""

    def __init__(self, unsupported: list[str]) -> None:
        super().__init__("Bad Extension", 420, ", ".join(unsupported))
        self.unsupported = unsupported


def _option_tags(req: Request, name: str) -> list[str]:
    tags: list[str] = []
    for value in req.header_all(name):
        tags.extend(t.strip() for t in value.split(",") if t.strip())
    return tags


def check_require(req: Request, supported: frozenset[str] = SUPPORTED_OPTION_TAGS) -> None:
    """§8.2.2.3: a UAS rejects a Require with unknown option tags with 420 + Unsupported.
    Not for CANCEL, and not for ACK (they would not be answered)."""
    if req.method in ("ACK", "CANCEL"):
        return
    unknown = [t for t in _option_tags(req, "Require") if t.lower() not in supported]
    if unknown:
        raise UnsupportedExtension(unknown)


def check_request(req: Request, *, role: str = "proxy",
                  supported: frozenset[str] = SUPPORTED_OPTION_TAGS) -> None:
    """Reject what must not be processed. ``role`` is "proxy" (forwards requests) or
    "uas"/"registrar" (answers them itself: also checks Require).

    :raises RemoteProtocolError: with ``status_hint`` (400, 416, 420 …) and a fixed reason.
    """
    # Mandatory headers (§8.1.1), each exactly once where the grammar allows one value
    # (§7.3.1; RFC 4475 §3.3.8 multi01: two Call-IDs, CSeqs ... are a 400).
    seen: set[str] = set()
    proxy_require = False
    for f in req.fields:
        key = f[0]
        if key in _SINGLE and f[2] is not None:
            if key in seen:
                raise RemoteProtocolError(f"Duplicate {_SINGLE[key]}", 400)
            seen.add(key)
        elif key == "proxy-require":
            proxy_require = True
    if req.top_via is None:
        # No Via: a response could not be routed back (§18.2.2); dropped, as Kamailio does.
        raise RemoteProtocolError("Missing Via", None)
    for key in _MANDATORY:
        if key not in seen:
            raise RemoteProtocolError(f"Missing {_SINGLE[key]}", 400)
    if role != "proxy":
        # An element that answers the request itself needs From and To well formed. A
        # proxy forwards them untouched (and parses them only when the script reads them).
        req.from_  # noqa: B018
        req.to  # noqa: B018
    cseq = req.cseq
    # §8.1.1.5 / §8.2.2 implied: the CSeq method matches the request method
    # (RFC 4475 §3.1.2.17 mismatch01).
    if cseq.method != req.method:
        raise RemoteProtocolError("CSeq Method Mismatch", 400)
    req.max_forwards  # noqa: B018 - must be 1*DIGIT when present
    # Request-URI (§8.2.2.1): parse it; a scheme we cannot route is 416.
    uri = req.uri
    if isinstance(uri, AbsoluteUri) and uri.scheme.lower() not in _SUPPORTED_SCHEMES:
        raise RemoteProtocolError("Unsupported URI Scheme", 416)
    # §19.1.1 Table 1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11
    # escruri: "acceptable for an element to reject this request with a 400").
    if isinstance(uri, SipUri) and uri.headers:
        raise RemoteProtocolError("Headers In Request-URI", 400)
    if role == "proxy":
        # §16.3 step 5: Proxy-Require option tags must all be supported by this proxy.
        if proxy_require and req.method not in ("ACK", "CANCEL"):
            unknown = [t for t in _option_tags(req, "Proxy-Require")
                       if t.lower() not in supported]
            if unknown:
                raise UnsupportedExtension(unknown)
    else:
        check_require(req, supported)


def check_response(res: Response) -> None:
    """A response must carry a parseable topmost Via to be routed and a CSeq that
    transactions match on; other headers are forwarded as they are, as Kamailio's
    forward_reply does. Raises RemoteProtocolError (status_hint None: dropped)."""
    try:
        if not res.has_header("via"):
            raise RemoteProtocolError("Missing Via", None)
        res.cseq  # noqa: B018 - transactions match on it
    except RemoteProtocolError as e:
        raise RemoteProtocolError(e.reason, None, e.detail) from None
