# SPDX-License-Identifier: Apache-2.0
"""Header field grammar: names, lists, Via, name-addr, CSeq, numbers, auth (RFC 3261 §7.3,
§20, §25.1; RFC 3581; RFC 5118).

How this works
--------------
Every parser has two paths. The *fast path* handles the shape that nearly all traffic has
(``SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport``, ``"Bob" <sip:bob@h>;tag=x``):
no line folding, no LWS around separators, no quoted-pairs. It cuts the value with
``str.find``/``partition`` and checks character classes with one anchored regular
expression. Whenever the value leaves that shape the same function falls through to the
*full grammar*: a small scanner over the §25.1 ABNF with SWS allowed wherever the RFC
allows it (around "/", ";", "=", ":", ",", before "<" and after ">"), quoted strings with
quoted-pairs, and folded lines. Both paths produce identical results (tests compare them
on the fast shapes, including a Hypothesis round trip for Via).

All parse functions take one header value (the text after HCOLON, as the message layer
found it; surrounding LWS is tolerated) and raise :class:`SipParseError` with a short
fixed reason such as "Bad Via" on anything the grammar does not produce. Nothing else
escapes: numbers are length-checked before ``int()`` and only ASCII digits count.

Liberal choices, each one deliberate: line breaks are treated as LWS wherever LWS may
appear (the message layer normally unfolds them already); generic parameter values may
also hold ":" "[" "]" (a host such as an IPv6 reference, RFC 3261 ``gen-value = token /
host / quoted-string``); the Via ``received`` parameter may hold an IPv6 address with or
without brackets (RFC 5118 §4.5); a display name needs no LWS before "<" (RFC 4475
§3.1.1.6 lwsdisp). Where a parameter name repeats, the first occurrence wins, except in
auth headers where a repeat is an error (RFC 7235 §2.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.uri import (
    _HOST_CACHE,
    _IPV4_RE,
    AbsoluteUri,
    SipUri,
    TelUri,
    _check_host,
    parse_uri,
)

_new = object.__new__

__all__ = [
    "COMPACT_FORMS",
    "canonical_key",
    "split_values",
    "Via",
    "parse_via",
    "NameAddr",
    "ContactStar",
    "parse_name_addr",
    "parse_name_addr_list",
    "parse_contact_list",
    "CSeq",
    "parse_cseq",
    "parse_uint",
    "Credentials",
    "Challenge",
    "parse_auth",
    "parse_challenge",
    "parse_params",
    "format_params",
    "quote_string",
    "is_token",
]

# --- header names (§7.3.3, and the compact forms registered since) ----------------------

COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",  # RFC 6665
    "u": "allow-events",  # RFC 6665
    "r": "refer-to",  # RFC 3515
    "b": "referred-by",  # RFC 3892
    "x": "session-expires",  # RFC 4028
    "y": "identity",  # RFC 8224
}

_KEY_OF_NAME: dict[str, str] = {}
for _short, _long in COMPACT_FORMS.items():
    _KEY_OF_NAME[_short] = _KEY_OF_NAME[_short.upper()] = _long
for _name in ("Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Route",
              "Record-Route", "Content-Length", "Content-Type", "Expires", "Authorization",
              "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate", "Allow",
              "Supported", "Require", "Proxy-Require", "User-Agent", "Server", "Accept",
              "Call-Id", "Cseq", "Event", "Subject"):
    _KEY_OF_NAME[_name] = _name.lower()
del _short, _long, _name


def canonical_key(name: str) -> str:
    """The lookup key of a header name: lower-case long form ("v", "VIA" -> "via")."""
    key = _KEY_OF_NAME.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
    return key


# --- shared lexical pieces (§25.1) -------------------------------------------------------

_WS = " \t\r\n"
_TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN = re.compile(f"[{_TOKEN_CHARS}]+")
_TOKEN_SET = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "-.!%*_+`'~")
# gen-value = token / host / quoted-string: the unquoted forms together.
_PVALUE = re.compile(f"[{_TOKEN_CHARS}:\\[\\]]+")
_PVALUE_SET = _TOKEN_SET | frozenset(":[]")
_SWS = re.compile(r"[ \t\r\n]*")
_LWS = re.compile(r"[ \t\r\n]+")
# quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE (the SWS is the caller's).
# qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII;
# quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_QUOTED = re.compile(
    r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|[\r\n]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
# A run of a comma-separated list that must not be split: a quoted string (its
# quoted-pairs included) or an <...> URI.
_LIST_GUARD = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|<[^>]*>?|,', re.S)
# Unquoted parameter lists in the common shape (no LWS, no quotes): one class check.
_PARAMS_FAST = re.compile(f"(?:;[{_TOKEN_CHARS}:\\[\\]=;]*)?")


def _bad(what: str, text: str, why: str) -> SipParseError:
    # Only a bounded repr of received text goes to the log detail, never to the peer.
    return SipParseError(f"Bad {what}", 400, f"{why}: {text[:120]!r}")


def is_token(text: str) -> bool:
    """True if ``text`` is a non-empty RFC 3261 token."""
    return bool(text) and _TOKEN_SET.issuperset(text)


def quote_string(text: str) -> str:
    """``text`` as a quoted-string: ``"`` ``\\`` and control characters become
    quoted-pairs (§25.1 quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F)).

    :raises LocalProtocolError: for CR or LF, which no quoted-string can hold.
    """
    if _NEEDS_PAIR.search(text) is None:
        return f'"{text}"'
    if "\r" in text or "\n" in text:
        raise LocalProtocolError(f"line break in quoted string: {text!r}")
    return '"' + _NEEDS_PAIR.sub(r"\\\g<0>", text) + '"'


_NEEDS_PAIR = re.compile(r'["\\\x00-\x08\x0a-\x1f\x7f]')


def _unquote(inner: str) -> str:
    return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner


def _split_commas(value: str) -> list[str]:
    """Split at commas outside quoted strings and <...>; items not stripped."""
    if '"' not in value and "<" not in value:
        return value.split(",")
    items = []
    start = 0
    for m in _LIST_GUARD.finditer(value):
        if value[m.start()] == ",":
            items.append(value[start:m.start()])
            start = m.end()
    items.append(value[start:])
    return items


def split_values(value: str) -> list[str]:
    """Split a list header value at commas outside quoted strings (quoted-pairs
    included) and ``<...>``; each item stripped of LWS, empty items dropped."""
    out = []
    for item in _split_commas(value):
        item = item.strip(_WS)
        if item:
            out.append(item)
    return out


def _strict_items(value: str, what: str) -> list[str]:
    """Like split_values, but an empty item is an error (RFC 3261 lists are
    ``x *(COMMA x)``: no empty elements)."""
    items = _split_commas(value)
    for i, item in enumerate(items):
        item = items[i] = item.strip(_WS)
        if not item:
            raise _bad(what, value, "empty list element")
    return items


# --- generic parameters (§25.1 generic-param) -------------------------------------------


def _scan_params(text: str, pos: int, what: str) -> tuple[dict[str, str | None], int]:
    """Full grammar for ``*( SEMI generic-param )`` from ``pos``. Returns the parameters
    and the position after the last one (trailing SWS consumed)."""
    params: dict[str, str | None] = {}
    n = len(text)
    sws = _SWS.match
    while True:
        pos = sws(text, pos).end()
        if pos >= n or text[pos] != ";":
            return params, pos
        pos = sws(text, pos + 1).end()
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _bad(what, text, "bad parameter name")
        name = m.group().lower()
        pos = sws(text, m.end()).end()
        value: str | None = None
        if pos < n and text[pos] == "=":
            pos = sws(text, pos + 1).end()
            if pos < n and text[pos] == '"':
                m = _QUOTED.match(text, pos)
                if m is None:
                    raise _bad(what, text, "bad quoted string")
                value = _unquote(m.group(1))
            else:
                m = _PVALUE.match(text, pos)
                if m is None:
                    raise _bad(what, text, "bad parameter value")
                value = m.group()
            pos = m.end()
        if name not in params:
            params[name] = value


def _fast_params(text: str) -> dict[str, str | None] | None:
    """``;a=b;c`` without LWS or quotes, or None when the text needs the full grammar."""
    if not text:
        return {}
    if _PARAMS_FAST.fullmatch(text) is None:
        return None
    if text.find(";", 1) < 0:
        # one parameter (";tag=..."): the most common case by far
        name, eq, value = text[1:].partition("=")
        if not name or (eq and (not value or "=" in value)) or not _TOKEN_SET.issuperset(name):
            return None
        return {name.lower(): value if eq else None}
    return _split_params(text)


def _split_params(text: str) -> dict[str, str | None] | None:
    """Split ``;a=b;c`` whose characters are already known to be token/host characters,
    "=" and ";"; None if its structure needs the full grammar (or is wrong)."""
    params: dict[str, str | None] = {}
    issuperset = _TOKEN_SET.issuperset
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        if not name or (eq and (not value or "=" in value)) or not issuperset(name):
            return None
        name = name.lower()
        if name not in params:
            params[name] = value if eq else None
    return params


def parse_params(text: str, what: str = "Parameter") -> dict[str, str | None]:
    """Parse ``;a=b;c=\"q s\"`` (generic-param list) into {"a": "b", "c": "q s"}.

    Names are lower-cased; quoted values are unquoted with quoted-pairs resolved; a
    parameter without "=" maps to None. An empty or all-LWS text gives {}.

    :raises SipParseError: (f"Bad {what}", 400) on anything else.
    """
    params = _fast_params(text)
    if params is not None:
        return params
    params, pos = _scan_params(text, 0, what)
    if pos != len(text):
        raise _bad(what, text, "junk in parameters")
    return params


def format_params(params: Mapping[str, str | None]) -> str:
    """Inverse of :func:`parse_params`: ``;name=value`` for each item, the value quoted
    when it is not a token or host; None gives a bare ``;name``."""
    parts = []
    for name, value in params.items():
        if value is None:
            parts.append(f";{name}")
        elif value and _PVALUE_SET.issuperset(value):
            parts.append(f";{name}={value}")
        else:
            parts.append(f";{name}={quote_string(value)}")
    return "".join(parts)


# --- Via (§20.42, §18.2.2; RFC 3581; RFC 5118 §4.5) ------------------------------------

_KNOWN_TRANSPORTS = frozenset(("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "TLS-SCTP"))
# The common Via: upper-case "SIP/2.0/<transport>", one SP, no LWS elsewhere, parameter
# values that are tokens (so "branch" is a token by construction).
_VIA_FAST = re.compile(
    r"SIP/2\.0/([A-Z]+) ([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?"
    f"(;[{_TOKEN_CHARS}=;]*)?"
)
_HOST_LOOSE = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")
_DIGITS = re.compile(r"[0-9]+")
_IPV6_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
_VIA_CHECKED = ("branch", "received", "rport", "maddr", "ttl")


class Via:
    """One via-parm: ``SIP/2.0/UDP host:port;params``."""

    __slots__ = ("protocol", "transport", "host", "port", "params", "raw")

    protocol: str
    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]
    raw: str

    def __init__(self, transport: str, host: str, port: int | None = None,
                 params: Mapping[str, str | None] | None = None,
                 protocol: str = "SIP/2.0") -> None:
        """Build a Via to send; raises LocalProtocolError on a bad transport, host or port."""
        if not is_token(transport):
            raise LocalProtocolError(f"bad Via transport {transport!r}")
        try:
            host = _check_host(host, "Via", host)
        except SipParseError:
            raise LocalProtocolError(f"bad Via host {host!r}") from None
        if port is not None and (type(port) is not int or not 0 <= port <= 65535):
            raise LocalProtocolError(f"bad Via port {port!r}")
        params = dict(params) if params else {}
        try:
            _check_via_params(params, "")
        except SipParseError as exc:
            raise LocalProtocolError(f"bad Via parameter: {exc.detail}") from None
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = params
        self.raw = str(self)

    @property
    def branch(self) -> str | None:
        """The branch parameter (§8.1.1.7), or None."""
        return self.params.get("branch")

    @property
    def has_magic_cookie(self) -> bool:
        """True if the branch starts with RFC 3261's magic cookie ``z9hG4bK``."""
        b = self.params.get("branch")
        return b is not None and b.startswith("z9hG4bK")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter as written (IPv6 with or without brackets), or None."""
        return self.params.get("received")

    @property
    def received_bare(self) -> str | None:
        """``received`` without IPv6 brackets (RFC 5118 §4.5 allows both), for socket
        calls; None if absent."""
        r = self.params.get("received")
        if r and r[0] == "[":
            return r[1:-1]
        return r

    @property
    def rport(self) -> str | None:
        """RFC 3581 ``rport``: None if absent, "" if present without value, else the port."""
        params = self.params
        if "rport" not in params:
            return None
        return params["rport"] or ""

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter (lower-cased), or None."""
        m = self.params.get("maddr")
        return m.lower() if m else None

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` parameter (0-255, checked when parsed), or None."""
        t = self.params.get("ttl")
        return int(t) if t else None

    @property
    def host_bare(self) -> str:
        """The sent-by host without IPv6 brackets, for socket calls."""
        h = self.host
        return h[1:-1] if h[0] == "[" else h

    @property
    def sent_by(self) -> str:
        """``host`` or ``host:port`` as written in a Via."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({self.raw!r})"


def parse_via(value: str) -> list[Via]:
    """Parse one Via header value (one or more comma-separated via-parms), topmost first.

    ``protocol`` is normalised ("SIP/2.0", LWS around "/" removed), ``transport``
    upper-cased, ``host`` lower-cased. Checked: sent-protocol and sent-by syntax, port
    0-65535, ``ttl`` 0-255, ``maddr`` a host, ``received`` an IPv4 or IPv6 address (RFC
    5118 §4.5: with or without brackets), ``rport`` empty or a port (RFC 3581), ``branch``
    a token.

    :raises SipParseError: ("Bad Via", 400).
    """
    if "," in value:
        return [_parse_one_via(item, value) for item in _strict_items(value, "Via")]
    return [_parse_one_via(value, value)]


def _parse_one_via(text: str, whole: str) -> Via:
    m = _VIA_FAST.fullmatch(text)
    if m is not None:
        transport, host, port_text, params_text = m.groups()
        # The expression allowed only token characters, "=" and ";" in the parameters:
        # what is left to check is their structure (see _split_params).
        params: dict[str, str | None] | None = {}
        if params_text:
            for item in params_text[1:].split(";"):
                name, eq, value = item.partition("=")
                if not name or (eq and (not value or "=" in value)):
                    params = None
                    break
                name = name.lower()
                if name not in params:  # type: ignore[operator]
                    params[name] = value if eq else None  # type: ignore[index]
        if params is not None and transport in _KNOWN_TRANSPORTS:
            via = _new(Via)
            via.protocol = "SIP/2.0"
            via.transport = transport
            lowered = _HOST_CACHE.get(host)
            via.host = lowered if lowered is not None else _check_host(host, "Via", whole)
            if port_text is None:
                via.port = None
            elif (port := int(port_text)) <= 65535:
                via.port = port
            else:
                raise _bad("Via", whole, "port out of range")
            via.params = params
            via.raw = text
            # A branch value is a token by the expression; the usual companion is a bare
            # rport (RFC 3581 §3); anything else gets the full check.
            n = len(params)
            if params.get("branch") is None or n > 2 or (n == 2 and params.get("rport", 0)
                                                         is not None):
                _check_via_params(params, whole)
            return via
    via = _parse_via_full(text.strip(_WS), whole)
    _check_via_params(via.params, whole)
    return via


def _check_via_params(params: dict[str, str | None], whole: str) -> None:
    for name in _VIA_CHECKED:
        if name in params:
            _check_via_param(name, params[name], whole)


def _via_port(port_text: str, whole: str) -> int:
    if len(port_text) > 5:
        port_text = port_text.lstrip("0") or "0"
        if len(port_text) > 5:
            raise _bad("Via", whole, "port out of range")
    port = int(port_text)
    if port > 65535:
        raise _bad("Via", whole, "port out of range")
    return port


def _parse_via_full(text: str, whole: str) -> Via:
    # via-parm = sent-protocol LWS sent-by *( SEMI via-params )
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport
    sws = _SWS.match
    parts = []
    pos = 0
    for i in range(3):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _bad("Via", whole, "bad sent-protocol")
        parts.append(m.group())
        pos = m.end()
        if i < 2:
            pos = sws(text, pos).end()
            if not text.startswith("/", pos):
                raise _bad("Via", whole, "bad sent-protocol")
            pos = sws(text, pos + 1).end()
    m = _LWS.match(text, pos)
    if m is None:
        raise _bad("Via", whole, "no LWS before sent-by")
    pos = m.end()
    # sent-by = host [ COLON port ]
    m = _HOST_LOOSE.match(text, pos)
    if m is None:
        raise _bad("Via", whole, "bad sent-by host")
    host = _check_host(m.group(), "Via", whole)
    pos = sws(text, m.end()).end()
    port = None
    if text.startswith(":", pos):
        m = _DIGITS.match(text, sws(text, pos + 1).end())
        if m is None:
            raise _bad("Via", whole, "bad port")
        port = _via_port(m.group(), whole)
        pos = m.end()
    params, pos = _scan_params(text, pos, "Via")
    if pos != len(text):
        raise _bad("Via", whole, "junk after via-parm")
    via = object.__new__(Via)
    via.protocol = f"{parts[0].upper()}/{parts[1]}"
    via.transport = parts[2].upper()
    via.host = host
    via.port = port
    via.params = params
    via.raw = text
    return via


def _check_via_param(name: str, value: str | None, whole: str) -> None:
    if name == "branch":
        # via-branch = "branch" EQUAL token
        if not value or not _TOKEN_SET.issuperset(value):
            raise _bad("Via", whole, "bad branch")
    elif name == "rport":
        # RFC 3581 §3: response-port = "rport" [EQUAL 1*DIGIT]
        if value is not None and not (value.isascii() and value.isdigit()
                                      and len(value) <= 5 and int(value) <= 65535):
            raise _bad("Via", whole, "bad rport")
    elif name == "ttl":
        # via-ttl = "ttl" EQUAL ttl; ttl = 1*3DIGIT ; 0 to 255
        if not (value and value.isascii() and value.isdigit() and len(value) <= 3
                and int(value) <= 255):
            raise _bad("Via", whole, "bad ttl")
    elif name == "maddr":
        # via-maddr = "maddr" EQUAL host
        if not value:
            raise _bad("Via", whole, "bad maddr")
        _check_host(value, "Via", whole)
    elif name == "received":
        # via-received = "received" EQUAL (IPv4address / IPv6address); RFC 5118 §4.5
        # asks receivers to accept an IPv6reference ("[...]") here as well.
        if not value:
            raise _bad("Via", whole, "bad received")
        if _IPV4_RE.fullmatch(value) is None:
            inner = value[1:-1] if value[0] == "[" and value[-1] == "]" else value
            if _IPV6_TEXT.fullmatch(inner) is None:
                raise _bad("Via", whole, "bad received")
            _check_host(f"[{inner}]", "Via", whole)


# --- name-addr / addr-spec (§20.10, §20.20, §20.39, §25.1) -----------------------------

# The common shapes, no LWS except one SP after a quoted display name, no quoted-pairs:
# ``"Bob" <sip:bob@h>;tag=x``, ``<sip:bob@h>;tag=x`` and ``sip:bob@h;tag=x``.
_NAME_ADDR_FAST = re.compile(
    r'(?:"([^"\\\x00-\x1f\x7f]*)" ?)?<([^<>"\s]+)>' f"(;[{_TOKEN_CHARS}:\\[\\]=;]*)?")
_ADDR_SPEC_FAST = re.compile(r'([^;,\s<>"?]+)' f"(;[{_TOKEN_CHARS}:\\[\\]=;]*)?")
_DISPLAY_TOKENS = re.compile(f"[{_TOKEN_CHARS}]+(?:[ \\t\\r\\n]+[{_TOKEN_CHARS}]+)*")
_ADDR_SPEC_END = re.compile(r"[;, \t\r\n]")
# c-p-q = "q" EQUAL qvalue; qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")


class NameAddr:
    """A name-addr or addr-spec with its header parameters (From, To, Contact, Route …).

    ``params`` are the header parameters after the URI (tag, q, expires …); URI
    parameters live in ``uri.params``.
    """

    __slots__ = ("display_name", "uri", "params", "raw")

    display_name: str | None
    uri: SipUri | TelUri | AbsoluteUri
    params: dict[str, str | None]
    raw: str

    def __init__(self, uri: SipUri | TelUri | AbsoluteUri, display_name: str | None = None,
                 params: Mapping[str, str | None] | None = None) -> None:
        """Build a value to send (serialized in name-addr form with ``<>``)."""
        self.display_name = display_name
        self.uri = uri
        self.params = dict(params) if params else {}
        self.raw = str(self)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (§19.3), or None."""
        return self.params.get("tag")

    @property
    def q(self) -> float | None:
        """Contact ``q`` (0.0-1.0), or None when absent or not a qvalue."""
        q = self.params.get("q")
        if q and _QVALUE.fullmatch(q):
            return float(q)
        return None

    @property
    def expires(self) -> int | None:
        """Contact ``expires`` in seconds, or None when absent, not 1*DIGIT, or above
        2**32-1 (RFC 4475 §3.1.2.4 scalar02: an element may treat an overlarge expiry as
        if it were absent and apply its default)."""
        e = self.params.get("expires")
        if e and e.isascii() and e.isdigit():
            e = e.lstrip("0") or "0"
            if len(e) <= 10 and (n := int(e)) <= 0xFFFFFFFF:
                return n
        return None

    def __str__(self) -> str:
        name = self.display_name
        head = f"{quote_string(name)} " if name is not None else ""
        return f"{head}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"NameAddr({self.raw!r})"


class ContactStar:
    """The ``Contact: *`` of a REGISTER that removes all bindings (§10.2.2)."""

    __slots__ = ()

    raw = "*"
    params: Mapping[str, str | None] = {}

    def __str__(self) -> str:
        return "*"

    def __repr__(self) -> str:
        return "ContactStar()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContactStar)

    def __hash__(self) -> int:
        return hash("*")


def parse_name_addr(value: str, what: str = "Address") -> NameAddr:
    """Parse one ``(name-addr / addr-spec) *(SEMI param)`` value (From, To, Refer-To …).

    §20.10: without ``<>`` the URI cannot carry parameters or headers: every ";"
    parameter belongs to the header, and a "?" or "," in an unbracketed URI is an error.

    :raises SipParseError: (f"Bad {what}", 400); ``what`` names the header for the reason
        phrase ("From", "To" …).
    """
    m = _NAME_ADDR_FAST.fullmatch(value)
    if m is not None:
        display, uri_text, params_text = m.groups()
    else:
        m = _ADDR_SPEC_FAST.fullmatch(value)
        if m is not None:
            display = None
            uri_text, params_text = m.groups()
    if m is not None:
        params = _split_params(params_text) if params_text else {}
        if params is not None:
            try:
                uri = parse_uri(uri_text)
            except SipParseError as exc:
                raise _bad(what, value, f"bad URI ({exc.detail})") from None
            na = _new(NameAddr)
            na.display_name = display
            na.uri = uri
            na.params = params
            na.raw = value
            return na
    return _parse_name_addr_full(value, what)


def _parse_name_addr_full(value: str, what: str) -> NameAddr:
    v = value
    if v and (v[0] in _WS or v[-1] in _WS):
        v = v.strip(_WS)
    if not v:
        raise _bad(what, value, "empty")
    first = v[0]
    display: str | None = None
    lt = -1
    if first == "<":
        lt = 0
    elif first == '"':
        # display-name = quoted-string; fast when it needs no unquoting
        q = v.find('"', 1)
        inner = v[1:q]
        if q > 0 and "\\" not in inner and inner.isprintable():
            display = inner
            pos = q + 1
        else:
            m = _QUOTED.match(v)
            if m is None:
                raise _bad(what, value, "bad quoted display name")
            display = _unquote(m.group(1))
            pos = m.end()
        if v.startswith("<", pos):
            lt = pos
        else:
            lt = _SWS.match(v, pos).end()
            if not v.startswith("<", lt):
                raise _bad(what, value, "no <URI> after display name")
    else:
        # display-name = *(token LWS); a name-addr only if all before "<" is tokens
        lt = v.find("<")
        if lt > 0:
            name = v[:lt].rstrip(_WS)
            if _DISPLAY_TOKENS.fullmatch(name):
                display = name
            else:
                lt = -1
    if lt >= 0:
        gt = v.find(">", lt + 1)
        if gt < 0:
            raise _bad(what, value, "no closing >")
        try:
            uri = parse_uri(v[lt + 1:gt])
        except SipParseError as exc:
            raise _bad(what, value, f"bad URI ({exc.detail})") from None
        pos = gt + 1
    else:
        # addr-spec: the URI ends at the first ";", "," or LWS (§20.10)
        m = _ADDR_SPEC_END.search(v)
        pos = m.start() if m is not None else len(v)
        uri_text = v[:pos]
        if "?" in uri_text:
            raise _bad(what, value, "URI with headers must be in <>")
        try:
            uri = parse_uri(uri_text)
        except SipParseError as exc:
            raise _bad(what, value, f"bad URI ({exc.detail})") from None
    tail = v[pos:] if pos < len(v) else ""
    params = _fast_params(tail)
    if params is None:
        params, end = _scan_params(v, pos, what)
        if end != len(v):
            raise _bad(what, value, "junk after address")
    na = object.__new__(NameAddr)
    na.display_name = display
    na.uri = uri
    na.params = params
    na.raw = v
    return na


def parse_name_addr_list(value: str, what: str = "Address") -> list[NameAddr]:
    """Parse a comma-separated list of name-addr/addr-spec values (Route,
    Record-Route, Contact without "*" …).

    :raises SipParseError: (f"Bad {what}", 400), also for an empty list element.
    """
    if "," not in value:
        return [parse_name_addr(value, what)]
    return [parse_name_addr(item, what) for item in _strict_items(value, what)]


def parse_contact_list(value: str, what: str = "Contact") -> list[NameAddr] | list[ContactStar]:
    """Parse a Contact value: ``*`` (§10.2.2) or contact-params separated by commas.

    Contact parameters are checked: ``q`` must be a qvalue, ``expires`` 1*DIGIT (a value
    above 2**32-1 parses; :attr:`NameAddr.expires` then reads None).

    :raises SipParseError: ("Bad Contact", 400).
    """
    if value.strip(_WS) == "*":
        return [ContactStar()]
    contacts = parse_name_addr_list(value, what)
    for c in contacts:
        params = c.params
        if "q" in params:
            q = params["q"]
            if q is None or _QVALUE.fullmatch(q) is None:
                raise _bad(what, value, "bad q")
        if "expires" in params:
            e = params["expires"]
            if not (e and e.isascii() and e.isdigit()):
                raise _bad(what, value, "bad expires")
    return contacts


# --- CSeq and numbers (§20.16, §8.1.1.5, §25.1) ----------------------------------------

_KNOWN_METHODS = frozenset(("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER",
                            "PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "INFO", "REFER",
                            "MESSAGE", "UPDATE"))
_CSEQ_FULL = re.compile(f"[ \\t\\r\\n]*([0-9]+)[ \\t\\r\\n]+([{_TOKEN_CHARS}]+)[ \\t\\r\\n]*")
_CSEQ_MAX = 2**31 - 1


class CSeq:
    """CSeq: ``seq`` (0 .. 2**31-1, §8.1.1.5) and ``method`` (case-sensitive)."""

    __slots__ = ("seq", "method")

    seq: int
    method: str

    def __init__(self, seq: int, method: str) -> None:
        """Build a CSeq; raises LocalProtocolError on a bad number or method."""
        if type(seq) is not int or not 0 <= seq <= _CSEQ_MAX:
            raise LocalProtocolError(f"CSeq number must be in 0..2**31-1, not {seq!r}")
        if not is_token(method):
            raise LocalProtocolError(f"CSeq method must be a token, not {method!r}")
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))


def parse_cseq(value: str) -> CSeq:
    """Parse ``CSeq: 1*DIGIT LWS Method``.

    §8.1.1.5: the number "MUST be expressible as a 32-bit unsigned integer and MUST be
    less than 2**31"; leading zeros are allowed.

    :raises SipParseError: ("Bad CSeq", 400).
    """
    seq_text, _, method = value.partition(" ")
    if not (seq_text and len(seq_text) <= 10 and seq_text.isdigit() and seq_text.isascii()
            and (method in _KNOWN_METHODS or is_token(method))):
        m = _CSEQ_FULL.fullmatch(value)
        if m is None:
            raise _bad("CSeq", value, "not number and method")
        seq_text, method = m.groups()
        seq_text = seq_text.lstrip("0") or "0"
        if len(seq_text) > 10:
            raise _bad("CSeq", value, "number out of range")
    seq = int(seq_text)
    if seq > _CSEQ_MAX:
        raise _bad("CSeq", value, "number out of range")
    cseq = object.__new__(CSeq)
    cseq.seq = seq
    cseq.method = method
    return cseq


def parse_uint(value: str, what: str, maximum: int = 2**32 - 1) -> int:
    """Parse ``1*DIGIT`` (Max-Forwards, Expires, Content-Length, Min-Expires …);
    leading zeros are fine, surrounding LWS is ignored.

    :raises SipParseError: (f"Bad {what}", 400) for anything else or a value above
        ``maximum``.
    """
    v = value
    if not (v.isdigit() and v.isascii()):
        v = v.strip(_WS)
        if not (v.isdigit() and v.isascii()):
            raise _bad(what, value, "not a number")
    if len(v) > 10:
        v = v.lstrip("0") or "0"
        if len(v) > len(str(maximum)):
            raise _bad(what, value, "number out of range")
    n = int(v)
    if n > maximum:
        raise _bad(what, value, "number out of range")
    return n


# --- Authorization / WWW-Authenticate / Proxy-* (§20.7, §20.27, §20.28, §20.44, §25.1) --


class _AuthValue:
    __slots__ = ("scheme", "params", "raw")

    scheme: str
    params: dict[str, str]
    raw: str

    def __init__(self, scheme: str, params: Mapping[str, str]) -> None:
        if not is_token(scheme):
            raise LocalProtocolError(f"auth scheme must be a token, not {scheme!r}")
        self.scheme = scheme
        self.params = dict(params)
        self.raw = str(self)

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (compared case-insensitively)."""
        return self.scheme.lower() == "digest"

    def __str__(self) -> str:
        # Digest's token-valued parameters go unquoted, everything else quoted
        # (RFC 3261 §25.1 digest-response / digest-cln; RFC 7616 §3.3-3.4).
        items = []
        for name, value in self.params.items():
            if name in _UNQUOTED_AUTH_PARAMS and is_token(value):
                items.append(f"{name}={value}")
            else:
                items.append(f"{name}={quote_string(value)}")
        return f"{self.scheme} " + ", ".join(items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.raw!r})"


_UNQUOTED_AUTH_PARAMS = frozenset(("algorithm", "nc", "stale", "qop"))


class Credentials(_AuthValue):
    """Authorization / Proxy-Authorization: ``scheme`` and its parameters (names
    lower-cased, quotes removed, quoted-pairs resolved)."""

    __slots__ = ()


class Challenge(_AuthValue):
    """WWW-Authenticate / Proxy-Authenticate: ``scheme`` and its parameters."""

    __slots__ = ()


# One auth-param with the COMMA (or the end) after it:
# auth-param = auth-param-name EQUAL ( token / quoted-string )
_AUTH_PARAM = re.compile(
    f"([{_TOKEN_CHARS}]+)[ \\t\\r\\n]*=[ \\t\\r\\n]*"
    r'(?:"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|[\r\n]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*)"'
    f"|([{_TOKEN_CHARS}]+))"
    r"[ \t\r\n]*(?:,[ \t\r\n]*|\Z)"
)
_AUTH_SCHEME = re.compile(f"[ \\t\\r\\n]*([{_TOKEN_CHARS}]+)[ \\t\\r\\n]+")


def _parse_auth(value: str, what: str) -> tuple[str, dict[str, str], str]:
    # credentials / challenge = auth-scheme LWS auth-param *(COMMA auth-param)
    m = _AUTH_SCHEME.match(value)
    if m is None:
        raise _bad(what, value, "no scheme and parameters")
    scheme = m.group(1)
    pos = m.end()
    n = len(value.rstrip(_WS))
    params: dict[str, str] = {}
    match = _AUTH_PARAM.match
    while True:
        m = match(value, pos)
        if m is None:
            raise _bad(what, value, "bad auth-param")
        name, quoted, token = m.groups()
        name = name.lower()
        if name in params:
            # RFC 7235 §2.1: each parameter name MUST only occur once per challenge
            # (and per credentials); never guess between two "response" values.
            raise _bad(what, value, f"repeated parameter {name}")
        if token is None:
            params[name] = _unquote(quoted)
        else:
            params[name] = token
        pos = m.end()
        if pos >= n:
            if value[m.start():pos].rstrip(_WS).endswith(","):
                raise _bad(what, value, "trailing comma")
            return scheme, params, value.strip(_WS)


def parse_auth(value: str, what: str = "Authorization") -> Credentials:
    """Parse Authorization / Proxy-Authorization (and the challenge headers, which share
    the grammar): ``scheme LWS auth-param *(COMMA auth-param)``.

    :raises SipParseError: (f"Bad {what}", 400), also for a repeated parameter.
    """
    scheme, params, raw = _parse_auth(value, what)
    c = object.__new__(Credentials)
    c.scheme = scheme
    c.params = params
    c.raw = raw
    return c


def parse_challenge(value: str, what: str = "WWW-Authenticate") -> Challenge:
    """Parse WWW-Authenticate / Proxy-Authenticate into a :class:`Challenge`.

    :raises SipParseError: (f"Bad {what}", 400).
    """
    scheme, params, raw = _parse_auth(value, what)
    c = object.__new__(Challenge)
    c.scheme = scheme
    c.params = params
    c.raw = raw
    return c
