# SPDX-License-Identifier: Apache-2.0
"""SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966; RFC 5118; RFC 5954).

How this works
--------------
``parse_uri`` reads the scheme and dispatches. For ``sip:``/``sips:`` one compiled regular
expression cuts the text into user, password, host, port, parameters and headers and
checks the §25.1 character class of each part in the same C-level pass (there are two
such expressions, with and without userinfo, chosen by whether the text holds an "@",
which only userinfo may; that spares the engine from backtracking). What an expression
states expensively is then checked in Python: the host against the full host grammar,
the parameter structure (``pname [ "=" pvalue ]``, both non-empty), "%" always starting
a "%HH" escape, an IPv6 reference holding a real IPv6 address (RFC 5954 §4.1 fixes the
RFC 3261 ABNF that let ``2001:db8:::192.0.2.1`` through; RFC 5118 §4.10), a port of at
most 65535. Two bounded memo tables skip repeated work: validated host -> lower-cased
host, and SIP URI text -> parsed fields (every parse still gets its own dicts).

Host names follow §25.1 (labels of letters, digits and inner hyphens; the last label
starts with a letter; an optional final dot) with one liberal extension: "_" is accepted
inside labels, as deployed networks use such names. A host whose last label starts with
a digit must be an IPv4 address with octets 0-255 (RFC 3986 §3.2.2 dec-octet).

User, password, parameter and header parts are stored unescaped (§19.1.4: an escaped
character and its unescaped form are equal), decoded as UTF-8 with surrogateescape so any
escaped byte survives a round trip. Serializing escapes again whatever the grammar
requires. A parsed URI keeps the text it came from in ``raw``; ``str()`` returns that
text for as long as the fields still say what the text says.

Only ASCII digits count as digits, and ``int()`` never sees an unbounded digit string
(Python refuses more than 4300 digits with ValueError).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import unquote

from siprouter.sip.errors import LocalProtocolError, SipParseError

__all__ = [
    "SipUri",
    "TelUri",
    "AbsoluteUri",
    "Uri",
    "parse_uri",
    "uri_equal",
    "escape",
    "unescape",
]

# --- §25.1 character classes, as regular-expression class bodies ------------------------

_ALNUM = "A-Za-z0-9"
_UNRESERVED = _ALNUM + r"\-_.!~*'()"  # alphanum / mark
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
_USER_CLASS = _UNRESERVED + r"&=+$,;?/%"
# password = *( unreserved / escaped / & = + $ , )
_PASSWORD_CLASS = _UNRESERVED + r"&=+$,%"
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAM_CLASS = _UNRESERVED + r"\[\]/:&+$%"
# hname / hvalue = *( hnv-unreserved / unreserved / escaped ); hnv-unreserved = [ ] / ? : + $
_HNV_CLASS = _UNRESERVED + r"\[\]/?:+$%"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_TOPLABEL = r"[A-Za-z](?:[A-Za-z0-9_-]*[A-Za-z0-9])?"
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
_IPV4 = rf"{_DEC_OCTET}\.{_DEC_OCTET}\.{_DEC_OCTET}\.{_DEC_OCTET}"
_IPV6REF = r"\[[0-9A-Fa-f:.]+\]"
# host = hostname / IPv4address / IPv6reference (the IPv6 inside the brackets is checked
# separately with the ipaddress module).
HOST_PATTERN = rf"(?:{_IPV4}|(?:{_LABEL}\.)*{_TOPLABEL}\.?|{_IPV6REF})"

# The SIP URI grammar as two expressions: with userinfo (the text holds an "@", which no
# other part of a SIP URI may contain) and without. Choosing by ``"@" in text`` spares the
# engine from backtracking over a user part that is not there. Host and parameters are
# matched loosely here and checked exactly in Python (cheaper in CPython's re engine).
_SIP_TAIL = (
    rf"([A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]+))?"
    rf"(;[{_PARAM_CLASS}=;]*)?"
    rf"(?:\?([{_HNV_CLASS}]+=[{_HNV_CLASS}]*(?:&[{_HNV_CLASS}]+=[{_HNV_CLASS}]*)*))?"
)
_SIP_WITH_USERINFO = re.compile(
    rf"([{_USER_CLASS}]+)(?::([{_PASSWORD_CLASS}]*))?@" + _SIP_TAIL)
_SIP_WITHOUT_USERINFO = re.compile(_SIP_TAIL)
_HOST_RE = re.compile(HOST_PATTERN)
_IPV4_RE = re.compile(_IPV4)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")

# RFC 3966 §3: global-number-digits = "+" *phonedigit DIGIT *phonedigit;
# local-number-digits = *phonedigit-hex (HEXDIG / "*" / "#") *phonedigit-hex.
# The "at least one digit" part is checked in Python (a regex for it backtracks badly).
_TEL_REST = re.compile(
    rf"(\+[0-9\-.()]+|[0-9A-Fa-f*#\-.()]+)((?:;[A-Za-z0-9-]+(?:=[{_PARAM_CLASS}]+)?)*)"
)
_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")

# RFC 3261 §25.1 absoluteURI = scheme ":" ( hier-part / opaque-part ), kept opaque. The
# class is uric (reserved / unreserved / escaped) plus "[" "]" for IPv6 literals (RFC 2732).
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_ABSOLUTE_REST = re.compile(rf"[{_UNRESERVED};/?:@&=+$,%\[\]]+")

_MAX_PORT = 65535

# Bounded memo tables (cleared when full, so hostile input cannot grow them): validated
# host -> lower-cased host, and SIP URI text -> parsed fields. A proxy sees the same
# hosts and many of the same URIs (Request-URI, Route, From/To) in message after message.
_HOST_CACHE: dict[str, str] = {}
_HOST_CACHE_LIMIT = 1024
_URI_CACHE: dict[str, tuple] = {}  # type: ignore[type-arg]
_URI_CACHE_LIMIT = 4096
# Longer texts are parsed but not remembered, which bounds the tables at a few MB.
_MEMO_MAX_TEXT = 256

# What serialization leaves unescaped, per component (the classes above without "%").
_USER_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                       "-_.!~*'()&=+$,;?/")
_PASSWORD_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                           "-_.!~*'()&=+$,")
_PARAM_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "-_.!~*'()[]/:&+$")
_HNV_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                      "-_.!~*'()[]/?:+$")


def _bad(what: str, text: str, why: str) -> SipParseError:
    # Only a bounded repr of the received text goes to the log detail.
    return SipParseError(f"Bad {what}", 400, f"{why}: {text[:120]!r}")


def unescape(text: str) -> str:
    """Resolve ``%HH`` escapes (RFC 3261 §19.1.2); bytes that are not UTF-8 survive as
    surrogates (surrogateescape), so ``escape(unescape(s))`` loses nothing."""
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def escape(text: str, safe: frozenset[str] = _PARAM_SAFE) -> str:
    """Escape every character of ``text`` not in ``safe`` as ``%HH`` of its UTF-8 bytes
    (surrogateescape'd bytes become their original byte).

    :raises LocalProtocolError: for a lone surrogate that stands for no byte.
    """
    if safe.issuperset(text):
        return text
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"text cannot be encoded for a URI: {text!r}") from None
    out = []
    for b in data:
        c = chr(b)
        out.append(c if b < 0x80 and c in safe else f"%{b:02X}")
    return "".join(out)


def _parse_port(port_text: str, what: str, text: str) -> int:
    if len(port_text) > 5:
        port_text = port_text.lstrip("0") or "0"
        if len(port_text) > 5:
            raise _bad(what, text, "port out of range")
    port = int(port_text)
    if port > _MAX_PORT:  # RFC 3261 §25.1 port = 1*DIGIT; a TCP/UDP port is 16 bits
        raise _bad(what, text, "port out of range")
    return port


def _check_ipv6_reference(host: str, what: str, text: str) -> None:
    """RFC 5954 §4.1 / RFC 5118 §4.10: the bracketed text must be an IPv6 address."""
    try:
        ipaddress.IPv6Address(host[1:-1])
    except ValueError:
        raise _bad(what, text, "bad IPv6 reference") from None


def _split_uri_params(params_text: str, text: str) -> dict[str, str | None]:
    """``;a=b;c`` -> {"a": "b", "c": None}; names unescaped and lower-cased, values
    unescaped; the first of a repeated name wins. The characters were checked by the
    caller's expression; here the structure: uri-parameter = pname [ "=" pvalue ] with
    pname and pvalue 1*paramchar (§25.1)."""
    params: dict[str, str | None] = {}
    for item in params_text[1:].split(";"):
        name, eq, value = item.partition("=")
        if not name or (eq and (not value or "=" in value)):
            raise _bad("URI", text, "bad parameter")
        if "%" in item:
            name = unescape(name)
            value = unescape(value)
        name = name.lower()
        if name not in params:
            params[name] = value if eq else None
    return params


def _format_uri_params(params: Mapping[str, str | None]) -> str:
    parts = []
    for name, value in params.items():
        parts.append(";" + escape(name, _PARAM_SAFE))
        if value is not None:
            parts.append("=" + escape(value, _PARAM_SAFE))
    return "".join(parts)


_new = object.__new__


class SipUri:
    """A ``sip:`` or ``sips:`` URI (RFC 3261 §19.1).

    Treat instances as values: build a changed copy with :meth:`replace`. ``str()``
    gives the received text while the fields still match it, else a fresh
    serialization (so an in-place change of a field is not lost either).
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "raw",
                 "_snapshot")

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None]
    headers: dict[str, str]
    raw: str

    def __init__(
        self,
        host: str,
        user: str | None = None,
        *,
        scheme: str = "sip",
        password: str | None = None,
        port: int | None = None,
        params: Mapping[str, str | None] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Build a URI from parts (unescaped); raises LocalProtocolError on bad parts."""
        scheme = scheme.lower()
        if scheme not in ("sip", "sips"):
            raise LocalProtocolError(f"SipUri scheme must be sip or sips, not {scheme!r}")
        if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
            raise LocalProtocolError(f"not a valid SIP URI host: {host!r}")
        if host[0] == "[":
            try:
                ipaddress.IPv6Address(host[1:-1])
            except ValueError:
                raise LocalProtocolError(f"not a valid IPv6 reference: {host!r}") from None
        if port is not None and (type(port) is not int or not 0 <= port <= _MAX_PORT):
            raise LocalProtocolError(f"port must be an int in 0..65535, not {port!r}")
        if password is not None and user is None:
            raise LocalProtocolError("a password needs a user")
        if user == "":
            raise LocalProtocolError("a user part cannot be empty (use None)")
        if params and any(not name or value == "" for name, value in params.items()):
            raise LocalProtocolError("URI parameter names and values cannot be empty")
        if headers and not all(headers):
            raise LocalProtocolError("URI header names cannot be empty")
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host.lower()
        self.port = port
        self.params = dict(params) if params else {}
        self.headers = dict(headers) if headers else {}
        self.raw = self._serialize()
        self._snapshot = (self.scheme, self.user, self.password, self.host, self.port,
                          dict(self.params), dict(self.headers))

    # -- views ---------------------------------------------------------------------------

    @property
    def transport(self) -> str:
        """The ``transport`` parameter lower-cased; absent: "udp" for sip, "tcp" for sips
        (RFC 3261 §19.1.2 default; sips always runs over TLS, i.e. over TCP)."""
        t = self.params.get("transport")
        if t:
            return t.lower()
        return "tcp" if self.scheme == "sips" else "udp"

    @property
    def lr(self) -> bool:
        """True if the URI carries the loose-routing ``lr`` parameter (RFC 3261 §19.1.1)."""
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter (lower-cased host), or None."""
        m = self.params.get("maddr")
        return m.lower() if m else None

    @property
    def user_param(self) -> str | None:
        """The ``user`` URI parameter lower-cased ("phone", "ip" …), or None."""
        u = self.params.get("user")
        return u.lower() if u else None

    @property
    def method_param(self) -> str | None:
        """The ``method`` URI parameter (case kept: methods are case-sensitive), or None."""
        return self.params.get("method")

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` parameter (0-255), or None when absent or not a valid ttl."""
        t = self.params.get("ttl")
        if t and len(t) <= 3 and t.isascii() and t.isdigit() and int(t) <= 255:
            return int(t)
        return None

    @property
    def host_is_ip(self) -> bool:
        """True for an IPv4 address or an IPv6 reference, False for a host name."""
        h = self.host
        return h[0] == "[" or _IPV4_RE.fullmatch(h) is not None

    @property
    def host_bare(self) -> str:
        """The host without IPv6 brackets, for socket calls."""
        h = self.host
        return h[1:-1] if h[0] == "[" else h

    @property
    def hostport(self) -> str:
        """``host`` or ``host:port`` as written in a URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def secure(self) -> bool:
        """True for a ``sips:`` URI."""
        return self.scheme == "sips"

    # -- copies and text -------------------------------------------------------------------

    def replace(self, **changes: object) -> SipUri:
        """A copy with some fields changed (scheme, user, password, host, port, params,
        headers); raises LocalProtocolError for unknown fields or bad values."""
        fields = {
            "scheme": self.scheme, "user": self.user, "password": self.password,
            "host": self.host, "port": self.port, "params": self.params,
            "headers": self.headers,
        }
        for name, value in changes.items():
            if name not in fields:
                raise LocalProtocolError(f"SipUri has no field {name!r}")
            fields[name] = value
        return SipUri(**fields)  # type: ignore[arg-type]

    def _fields(self) -> tuple[object, ...]:
        return (self.scheme, self.user, self.password, self.host, self.port,
                self.params, self.headers)

    def _serialize(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(escape(self.user, _USER_SAFE))
            if self.password is not None:
                parts.append(":" + escape(self.password, _PASSWORD_SAFE))
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts.append(f":{self.port}")
        if self.params:
            parts.append(_format_uri_params(self.params))
        if self.headers:
            parts.append("?" + "&".join(
                escape(k, _HNV_SAFE) + "=" + escape(v, _HNV_SAFE)
                for k, v in self.headers.items()))
        return "".join(parts)

    def __str__(self) -> str:
        snap = self._snapshot
        if snap is None:
            # Parsed URIs take their snapshot lazily: parsing stays cheap and only str()
            # pays for proving that ``raw`` still says what the fields say.
            raw = self.raw
            snap = _URI_CACHE.get(raw) or _parse_sip_fields(raw, self.scheme,
                                                            raw.index(":") + 1)
            self._snapshot = snap
        if snap == self._fields():
            return self.raw
        return self._serialize()

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        # Only fields that uri_equal always compares, so equal URIs hash alike.
        return hash((self.scheme, self.user, self.password, _host_key(self.host), self.port))


class TelUri:
    """A ``tel:`` URI (RFC 3966). ``number`` is as written, visual separators kept."""

    __slots__ = ("number", "is_global", "params", "raw")

    number: str
    is_global: bool
    params: dict[str, str | None]
    raw: str

    def __init__(self, number: str, params: Mapping[str, str | None] | None = None) -> None:
        """Build from a number ("+1-212-555-0100" or a local number) and parameters."""
        m = _TEL_REST.fullmatch(number) if isinstance(number, str) else None
        if m is None or m.group(2) or not _has_tel_digit(number):
            raise LocalProtocolError(f"not a valid telephone number: {number!r}")
        self.number = number
        self.is_global = number[0] == "+"
        self.params = dict(params) if params else {}
        self.raw = "tel:" + number + _format_uri_params(self.params)

    @property
    def digits(self) -> str:
        """The number without visual separators (RFC 3966 §5.1.1), "+" kept."""
        return self.number.translate(_VISUAL_SEPARATORS)

    @property
    def phone_context(self) -> str | None:
        """The ``phone-context`` parameter (RFC 3966 §5.1.5), or None."""
        return self.params.get("phone-context")

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"TelUri({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelUri):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash(self.digits.lower())


class AbsoluteUri:
    """Any other URI scheme (``http:``, ``urn:``, ``im:`` …), kept as opaque text."""

    __slots__ = ("scheme", "raw")

    scheme: str
    raw: str

    def __init__(self, raw: str) -> None:
        """Build from text such as "urn:service:sos"; raises LocalProtocolError if bad."""
        try:
            uri = parse_uri(raw)
        except SipParseError:
            raise LocalProtocolError(f"not a valid URI: {raw!r}") from None
        if not isinstance(uri, AbsoluteUri):
            raise LocalProtocolError(f"{raw!r} is a {type(uri).__name__}, not opaque")
        self.scheme = uri.scheme
        self.raw = raw

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"AbsoluteUri({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AbsoluteUri):
            return NotImplemented
        return uri_equal(self, other)

    def __hash__(self) -> int:
        return hash((self.scheme, self.raw[len(self.scheme):]))


Uri = SipUri | TelUri | AbsoluteUri


# --- parsing ----------------------------------------------------------------------------


def parse_uri(text: str) -> SipUri | TelUri | AbsoluteUri:
    """Parse a URI as it appears in a Request-URI or inside ``<...>``.

    ``sip:``/``sips:`` give a :class:`SipUri`, ``tel:`` a :class:`TelUri`, any other
    well-formed scheme an opaque :class:`AbsoluteUri`. Whitespace anywhere is an error
    (callers strip the LWS around header values).

    :raises SipParseError: ("Bad URI", 400) for anything the RFC 3261 §25.1 grammar (or
        RFC 3966 for tel) does not produce, including a port above 65535 and an IPv6
        reference that is not an IPv6 address (RFC 5118 §4.10).
    """
    colon = text.find(":")
    if colon <= 0:
        raise _bad("URI", text, "no scheme")
    scheme = text[:colon]
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(text, scheme, colon + 1)
    lowered = scheme.lower()
    if lowered == "sip" or lowered == "sips":
        return _parse_sip(text, lowered, colon + 1)
    if lowered == "tel":
        return _parse_tel(text, colon + 1)
    if _SCHEME_RE.fullmatch(scheme) is None or _ABSOLUTE_REST.fullmatch(text, colon + 1) is None:
        raise _bad("URI", text, "not a URI")
    if "%" in text and _BAD_ESCAPE.search(text):
        raise _bad("URI", text, "bad escape")
    uri = _new(AbsoluteUri)
    uri.scheme = lowered
    uri.raw = text
    return uri


def _parse_sip(text: str, scheme: str, pos: int) -> SipUri:
    hit = _URI_CACHE.get(text)
    if hit is None:
        hit = _parse_sip_fields(text, scheme, pos)
        if len(text) <= _MEMO_MAX_TEXT:
            if len(_URI_CACHE) >= _URI_CACHE_LIMIT:
                _URI_CACHE.clear()
            _URI_CACHE[text] = hit
    uri = _new(SipUri)
    uri.scheme, uri.user, uri.password, uri.host, uri.port, params, headers = hit
    # The cached dicts are never handed out: every URI gets its own copies.
    uri.params = params.copy() if params else {}
    uri.headers = headers.copy() if headers else {}
    uri.raw = text
    uri._snapshot = None
    return uri


def _parse_sip_fields(text: str, scheme: str, pos: int) -> tuple[
        str, str | None, str | None, str, int | None, dict[str, str | None], dict[str, str]]:
    if "@" in text:
        m = _SIP_WITH_USERINFO.fullmatch(text, pos)
        if m is None:
            raise _bad("URI", text, "not a SIP URI")
        user, password, host, port_text, params_text, headers_text = m.groups()
    else:
        m = _SIP_WITHOUT_USERINFO.fullmatch(text, pos)
        if m is None:
            raise _bad("URI", text, "not a SIP URI")
        host, port_text, params_text, headers_text = m.groups()
        user = password = None
    if "%" in text:
        if _BAD_ESCAPE.search(text, pos):
            raise _bad("URI", text, "bad escape")
        if user is not None:
            user = unescape(user)
            if password is not None:
                password = unescape(password)
    lowered = _HOST_CACHE.get(host)
    if lowered is None:
        lowered = _check_host(host, "URI", text)
    if port_text is None:
        port = None
    elif len(port_text) <= 5 and (port := int(port_text)) <= _MAX_PORT:
        pass
    else:
        port = _parse_port(port_text, "URI", text)
    params = _split_uri_params(params_text, text) if params_text else {}
    headers: dict[str, str] = {}
    if headers_text is not None:
        for item in headers_text.split("&"):
            name, _, value = item.partition("=")
            headers[unescape(name)] = unescape(value)
    return scheme, user, password, lowered, port, params, headers


def _check_host(host: str, what: str, text: str) -> str:
    """Validate a host (§25.1 host, RFC 5954 IPv6) and return it lower-cased; remembers
    good hosts, since a server sees the same few over and over."""
    if host[0] == "[":
        _check_ipv6_reference(host, what, text)
    elif _HOST_RE.fullmatch(host) is None:
        raise _bad(what, text, "bad host")
    lowered = host.lower()
    if len(host) <= _MEMO_MAX_TEXT:
        if len(_HOST_CACHE) >= _HOST_CACHE_LIMIT:
            _HOST_CACHE.clear()
        _HOST_CACHE[host] = lowered
    return lowered


def _has_tel_digit(number: str) -> bool:
    """RFC 3966 §3: a global number needs a DIGIT, a local one a HEXDIG, "*" or "#"."""
    if number[0] == "+":
        return any(c.isdigit() for c in number)
    return bool(number.strip("-.()"))


def _parse_tel(text: str, pos: int) -> TelUri:
    m = _TEL_REST.fullmatch(text, pos)
    if m is None:
        raise _bad("URI", text, "not a tel URI")
    number, params_text = m.groups()
    if not _has_tel_digit(number):
        raise _bad("URI", text, "no digits")
    if "%" in text and _BAD_ESCAPE.search(text, pos):
        raise _bad("URI", text, "bad escape")
    uri = _new(TelUri)
    uri.number = number
    uri.is_global = number[0] == "+"
    uri.params = _split_uri_params(params_text, text) if params_text else {}
    uri.raw = text
    return uri


# --- comparison (RFC 3261 §19.1.4) ------------------------------------------------------

# §19.1.4: "user, ttl, method, maddr and transport" parameters present in one URI must be
# present in the other.
_PARAMS_THAT_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


def _host_key(host: str) -> str:
    if host[0] == "[":
        # RFC 5954 §4: IPv6 references compare as addresses, not as text.
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host
    return host


def uri_equal(a: object, b: object) -> bool:
    """URI equality per RFC 3261 §19.1.4 (for tel URIs RFC 3966 §4, opaque URIs as text
    with the scheme case-insensitive).

    SIP/SIPS: same scheme; userinfo compared case-sensitively, host case-insensitively
    (IPv6 as addresses), ports equal (an absent port does not equal 5060); parameters in
    both URIs compare case-insensitively; user, ttl, method, maddr and transport must
    appear in both or neither; other parameters in only one URI are ignored; headers
    must match exactly (names case-insensitive).
    """
    if isinstance(a, SipUri) and isinstance(b, SipUri):
        if (a.scheme != b.scheme or a.user != b.user or a.password != b.password
                or a.port != b.port):
            return False
        if a.host != b.host and _host_key(a.host) != _host_key(b.host):
            return False
        pa, pb = a.params, b.params
        for name, value in pa.items():
            if name in pb:
                other = pb[name]
                if (value is None) != (other is None):
                    return False
                if value is not None and value.lower() != other.lower():  # type: ignore[union-attr]
                    return False
            elif name in _PARAMS_THAT_MUST_MATCH:
                return False
        for name in _PARAMS_THAT_MUST_MATCH:
            if name in pb and name not in pa:
                return False
        ha = {k.lower(): v for k, v in a.headers.items()}
        hb = {k.lower(): v for k, v in b.headers.items()}
        return ha == hb
    if isinstance(a, TelUri) and isinstance(b, TelUri):
        # RFC 3966 §4: numbers compare digit by digit ignoring visual separators,
        # parameters compare as a set, names and values case-insensitively.
        if a.digits.lower() != b.digits.lower():
            return False
        pa = {k: (v.lower() if v is not None else None) for k, v in a.params.items()}
        pb = {k: (v.lower() if v is not None else None) for k, v in b.params.items()}
        return pa == pb
    if isinstance(a, AbsoluteUri) and isinstance(b, AbsoluteUri):
        return a.scheme == b.scheme and a.raw[len(a.scheme):] == b.raw[len(b.scheme):]
    return False
