# SPDX-License-Identifier: Apache-2.0
"""HTTP Digest for SIP: credentials, challenges, HA1 and the response (RFC 3261 §22.4,
RFC 2617, RFC 7616, RFC 8760).

How this works
--------------
The auth-header grammar (``scheme LWS auth-param *(COMMA auth-param)``, quoted strings
with quoted-pairs, case-insensitive parameter names, a repeated parameter refused) is
``siprouter.sip.headers.parse_auth``; :func:`parse_credentials` runs it and then checks
what Digest adds (RFC 7616 §3.4): the scheme is ``Digest``; ``username`` (or
``username*``), ``realm``, ``nonce``, ``uri`` and ``response`` are present; with ``qop``,
``cnonce`` and an 8-hex-digit ``nc`` are too; ``response`` has the length of the
algorithm's hash in hex. Anything else is a :class:`SipParseError` with status hint 400.

The hash side (RFC 7616 §3.4.1-3.4.3, RFC 2617 §3.2.2)::

    HA1       = H(username ":" realm ":" password)
    HA1-sess  = H(HA1 ":" nonce ":" cnonce)                     (the "-sess" algorithms)
    HA2       = H(method ":" uri)                               (qop=auth, or no qop)
              = H(method ":" uri ":" H(body))                   (qop=auth-int)
    response  = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   (qop present)
              = H(HA1 ":" nonce ":" HA2)                        (RFC 2069, no qop)

H is the algorithm's hash as lower-case hex. Text is hashed as UTF-8 (RFC 7616 §4:
charset UTF-8); bytes that came in as surrogate escapes hash as the bytes they were.
Responses are compared in constant time (``hmac.compare_digest``).

Algorithms: MD5 and SHA-256 with their ``-sess`` variants, and SHA-512-256 when the
Python build's OpenSSL has it (RFC 8760 names all three for SIP). Names compare
case-insensitively; :data:`ALGORITHMS` maps each to its canonical spelling.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import parse_auth, quote_string

__all__ = [
    "ALGORITHMS",
    "DigestCredentials",
    "parse_credentials",
    "is_digest",
    "format_challenge",
    "compute_ha1",
    "compute_response",
]


def _hasher(name: str) -> Callable[[bytes], Any]:
    def h(data: bytes) -> Any:
        return hashlib.new(name, data)

    return h


# Canonical name -> (hash constructor, length of its hex digest, is a "-sess" variant).
_HASHES: dict[str, tuple[Callable[[bytes], Any], int, bool]] = {
    "MD5": (hashlib.md5, 32, False),
    "MD5-sess": (hashlib.md5, 32, True),
    "SHA-256": (hashlib.sha256, 64, False),
    "SHA-256-sess": (hashlib.sha256, 64, True),
}
if "sha512_256" in hashlib.algorithms_available:  # OpenSSL-dependent (RFC 7616 §3.2)
    _HASHES["SHA-512-256"] = (_hasher("sha512_256"), 64, False)
    _HASHES["SHA-512-256-sess"] = (_hasher("sha512_256"), 64, True)

#: Lower-cased algorithm name -> its canonical spelling, for every algorithm this module
#: can compute ("md5" -> "MD5", "sha-256-sess" -> "SHA-256-sess" …).
ALGORITHMS: dict[str, str] = {name.lower(): name for name in _HASHES}

_HEX = frozenset("0123456789abcdef")


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _hash_of(algorithm: str) -> tuple[Callable[[bytes], Any], int, bool]:
    entry = _HASHES.get(algorithm)
    if entry is None:
        name = ALGORITHMS.get(algorithm.lower())
        if name is None:
            raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}; "
                                     f"expected one of {', '.join(_HASHES)}")
        entry = _HASHES[name]
    return entry


class DigestCredentials:
    """Digest credentials from an Authorization or Proxy-Authorization value.

    ``algorithm`` is canonical when this module knows it ("MD5" when absent, RFC 7616
    §3.4), else as received; ``qop`` is lower-cased ("auth", "auth-int") or None for
    RFC 2069 credentials; ``nc`` is the 8-digit text and ``nc_value`` its number (None
    without qop); ``response`` is lower-cased hex; ``params`` holds every parameter as
    received (names lower-cased).
    """

    __slots__ = ("username", "realm", "nonce", "uri", "response", "algorithm", "qop",
                 "cnonce", "nc", "nc_value", "opaque", "userhash", "params", "raw")

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    cnonce: str | None
    nc: str | None
    nc_value: int | None
    opaque: str | None
    userhash: bool
    params: dict[str, str]
    raw: str

    @property
    def known_algorithm(self) -> bool:
        """True when this module can compute ``algorithm``."""
        return self.algorithm in _HASHES

    def expected_response(self, ha1: str, method: str, body: bytes = b"") -> str:
        """The response a client knowing ``ha1`` (the plain HA1, not HA1-sess) sends.

        :raises LocalProtocolError: for an algorithm this module cannot compute.
        """
        return compute_response(ha1, self.nonce, method, self.uri, algorithm=self.algorithm,
                                qop=self.qop, nc=self.nc, cnonce=self.cnonce, body=body)

    def matches(self, ha1: str, method: str, body: bytes = b"") -> bool:
        """Does ``response`` prove knowledge of ``ha1``? Compared in constant time.
        An algorithm this module cannot compute never matches."""
        if self.algorithm not in _HASHES:
            return False
        return hmac.compare_digest(self.expected_response(ha1, method, body), self.response)

    def __repr__(self) -> str:
        return (f"DigestCredentials(username={self.username!r}, realm={self.realm!r}, "
                f"algorithm={self.algorithm!r}, qop={self.qop!r})")


def is_digest(value: str) -> bool:
    """Cheap check: does an Authorization-type value use the Digest scheme?"""
    return value.lstrip(" \t")[:7].lower() in ("digest ", "digest\t", "digest\r", "digest\n")


def _decode_ext_value(text: str, what: str, value: str) -> str:
    # RFC 7616 §3.4.4 username* is an RFC 5987 ext-value: charset "'" [language] "'"
    # value-chars; this module reads UTF-8 only (what RFC 7616 §4 requires of clients).
    charset, q1, rest = text.partition("'")
    _lang, q2, encoded = rest.partition("'")
    if not q1 or not q2 or charset.lower() != "utf-8":
        raise SipParseError(f"Bad {what}", 400, f"bad username*: {value[:120]!r}")
    try:
        return unquote_to_bytes(encoded).decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError(f"Bad {what}", 400, f"username* not UTF-8: {value[:120]!r}") from None


# The shape nearly every client sends: ``Digest`` SP, then ``name=token`` or
# ``name="text"`` items separated by commas with optional SP/HTAB around them; no
# quoted-pairs, no line folding. One C-level scan (findall) cuts the items; a character
# that is not part of an item comes out as a one-character "junk" match with an empty
# name, which sends the value to the full grammar (headers.parse_auth) — as does a
# repeated name. The full grammar also produces the error for malformed values.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]*'
_FAST_ITEMS = re.compile(
    rf'[ \t]*({_TOKEN})[ \t]*=[ \t]*(?:"({_QDTEXT})"|({_TOKEN}))[ \t]*(?:,|\Z)|(.)', re.S)


def _fast_params(value: str) -> dict[str, str] | None:
    """The parameters of a Digest value in the common shape, or None when it is not in
    that shape (or repeats a name)."""
    if value[:7].lower() != "digest " or value.rstrip(" \t")[-1:] == ",":
        return None
    items = _FAST_ITEMS.findall(value, 7)
    params = {name.lower(): quoted or token for name, quoted, token, _ in items}
    if len(params) != len(items) or "" in params or not params:
        return None
    return params


def parse_credentials(value: str, what: str = "Authorization") -> DigestCredentials:
    """Parse a Digest Authorization / Proxy-Authorization value (RFC 7616 §3.4,
    RFC 3261 §25.1 ``digest-response``).

    :param what: the header name, for the reason phrase ("Bad Proxy-Authorization").
    :raises SipParseError: (f"Bad {what}", 400) for another scheme, a missing required
        parameter, a qop without cnonce or nc, an nc that is not 8 hex digits, a
        response of the wrong length for its algorithm, or ``username`` together with
        ``username*``.
    """
    p = _fast_params(value)
    if p is not None:
        raw = value
    else:
        generic = parse_auth(value, what)
        if generic.scheme.lower() != "digest":
            raise SipParseError(f"Bad {what}", 400, f"not Digest: {value[:60]!r}")
        p = generic.params
        raw = generic.raw

    def bad(why: str) -> SipParseError:
        return SipParseError(f"Bad {what}", 400, f"{why}: {value[:120]!r}")

    username = p.get("username")
    ext = p.get("username*")
    if ext is not None:
        if username is not None:
            raise bad("both username and username*")  # RFC 7616 §3.4.4
        username = _decode_ext_value(ext, what, value)
    realm = p.get("realm")
    nonce = p.get("nonce")
    uri = p.get("uri")
    response = p.get("response")
    if username is None or realm is None or nonce is None or uri is None or response is None:
        raise bad("missing username, realm, nonce, uri or response")
    if not uri:
        raise bad("empty uri")

    algorithm = p.get("algorithm")
    if algorithm is None:
        algorithm = "MD5"  # RFC 7616 §3.4: "If this is not present, it is assumed to be MD5"
    else:
        algorithm = ALGORITHMS.get(algorithm.lower(), algorithm)
    response = response.lower()
    entry = _HASHES.get(algorithm)
    if entry is not None and (len(response) != entry[1] or not _HEX.issuperset(response)):
        raise bad(f"response is not {entry[1]} hex digits")

    qop = p.get("qop")
    cnonce = nc = None
    nc_value = None
    if qop is not None:
        qop = qop.lower()
        cnonce = p.get("cnonce")
        nc = p.get("nc")
        # RFC 7616 §3.4: cnonce and nc "MUST be specified if a qop parameter is sent";
        # nc-value = 8LHEX (RFC 2617 §3.2.2; upper case accepted liberally).
        if cnonce is None or nc is None:
            raise bad("qop without cnonce or nc")
        if len(nc) != 8 or not _HEX.issuperset(nc.lower()):
            raise bad("nc is not 8 hex digits")
        nc_value = int(nc, 16)

    userhash = p.get("userhash")
    cred = object.__new__(DigestCredentials)
    cred.username = username
    cred.realm = realm
    cred.nonce = nonce
    cred.uri = uri
    cred.response = response
    cred.algorithm = algorithm
    cred.qop = qop
    cred.cnonce = cnonce
    cred.nc = nc
    cred.nc_value = nc_value
    cred.opaque = p.get("opaque")
    cred.userhash = userhash is not None and userhash.lower() == "true"
    cred.params = p
    cred.raw = raw
    return cred


def format_challenge(realm: str, nonce: str, *, algorithm: str = "MD5",
                     qop: str | None = "auth", opaque: str | None = None,
                     stale: bool = False) -> str:
    """A WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §25.1 ``digest-cln``,
    RFC 7616 §3.3): ``Digest realm="…", nonce="…"[, opaque="…"], algorithm=A[, qop="…"]
    [, stale=true]``. ``qop`` None or "" leaves it out (RFC 2069 style challenge).

    :raises LocalProtocolError: for a realm or nonce holding a line break, or an
        algorithm this module cannot compute.
    """
    name = ALGORITHMS.get(algorithm.lower())
    if name is None:
        raise LocalProtocolError(f"unsupported digest algorithm {algorithm!r}")
    parts = [f"Digest realm={quote_string(realm)}, nonce={quote_string(nonce)}"]
    if opaque is not None:
        parts.append(f", opaque={quote_string(opaque)}")
    parts.append(f", algorithm={name}")
    if qop:
        parts.append(f", qop={quote_string(qop)}")  # qop-options is quoted (§25.1)
    if stale:
        parts.append(", stale=true")
    return "".join(parts)


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username ":" realm ":" password)`` as lower-case hex (RFC 7616 §3.4.2). For a
    "-sess" algorithm this is the stored HA1; the session key is made per response.

    :raises LocalProtocolError: for an algorithm this module cannot compute.
    """
    h = _hash_of(algorithm)[0]
    return h(_b(f"{username}:{realm}:{password}")).hexdigest()


def compute_response(ha1: str, nonce: str, method: str, uri: str, *, algorithm: str = "MD5",
                     qop: str | None = None, nc: str | None = None, cnonce: str | None = None,
                     body: bytes = b"") -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2069 when ``qop`` is None).

    :param ha1: the plain HA1 in hex (for a "-sess" algorithm the session key
        ``H(HA1:nonce:cnonce)`` is derived here, RFC 7616 §3.4.2).
    :param qop: "auth", "auth-int" (``body`` is hashed into HA2) or None.
    :raises LocalProtocolError: for an unknown algorithm or qop, or a qop or "-sess"
        algorithm without ``nc``/``cnonce``.
    """
    h, _, sess = _hash_of(algorithm)
    if sess:
        if cnonce is None:
            raise LocalProtocolError(f"{algorithm} needs a cnonce")
        ha1 = h(_b(f"{ha1}:{nonce}:{cnonce}")).hexdigest()
    if qop is None or qop == "auth":
        ha2 = h(_b(f"{method}:{uri}")).hexdigest()
    elif qop == "auth-int":
        ha2 = h(_b(f"{method}:{uri}:") + h(body).hexdigest().encode("ascii")).hexdigest()
    else:
        raise LocalProtocolError(f"unknown qop {qop!r}")
    if qop is None:
        return h(_b(f"{ha1}:{nonce}:{ha2}")).hexdigest()
    if nc is None or cnonce is None:
        raise LocalProtocolError("a qop response needs nc and cnonce")
    return h(_b(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")).hexdigest()
