# SPDX-License-Identifier: Apache-2.0
"""SIP messages: parsing from bytes, lazy header access, and edits (RFC 3261 §7, §18.3, §20).

How this works
--------------
``parse_message`` does the least work that lets every later stage run:

1. It skips CRLFs before the start line (§7.5), finds the empty line that ends the header
   section (CRLF or, liberally, bare LF line endings) and decodes the header section once
   as UTF-8 with ``surrogateescape`` (so any byte sequence round-trips exactly).
2. It parses the start line, then walks the header lines once, unfolding continuation
   lines (§7.3.1) and recording for each line a field: canonical key, name as written,
   value, and the line's offsets in the header text. Header *values* are not parsed here.
3. It finds the body: by Content-Length when present; on a datagram without one, the rest
   of the datagram (§18.3). Bytes after the body of a datagram are not part of the message.

Typed accessors (``vias``, ``from_``, ``cseq``, ``uri`` …) parse a header the first time
they are read and memoize the result.

Edits never rebuild the message. A field that is replaced or removed keeps its original
offsets and gets replacement text; an added field carries its own text and sits in the
field list where it goes. ``to_bytes`` copies the untouched stretches of the received
header text between edited fields in one slice each, so headers nobody touched leave
byte for byte as they came. An untouched message serializes to the received bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    canonical_key,
    parse_contact_list,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_uint,
    parse_via,
    split_values,
)
from siprouter.sip.uri import parse_uri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MAX_HEADER_FIELDS",
    "Message",
    "Request",
    "Response",
    "parse_message",
    "reason_phrase",
    "salvage_response",
]

# RFC 3261 §18.1.1 caps what fits in a UDP datagram at 65,535 bytes; no SIP message on a
# stream may be larger either (the same cap Kamailio uses for its receive buffer, BUF_SIZE).
MAX_MESSAGE_SIZE = 65535
# A message with more header lines than this is refused 513 before we spend time on it.
# Real messages have 10-30; 10,000 Via lines is an attack (see the garbage test).
MAX_HEADER_FIELDS = 256

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_KNOWN_METHODS = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER PRACK SUBSCRIBE NOTIFY PUBLISH INFO REFER "
    "MESSAGE UPDATE".split()
)

# Header name as written -> canonical key. Bounded so random header names cannot grow it.
_KEY_CACHE: dict[str, str] = {}
_KEY_CACHE_LIMIT = 1024


def _key(name: str) -> str:
    """Canonical key of a header name as written: lowercase long form (RFC 3261 §7.3.3)."""
    key = _KEY_CACHE.get(name)
    if key is not None:
        return key
    if not name or not _TOKEN_CHARS.issuperset(name):
        raise SipParseError("Bad Header Name", 400, f"header name {name[:40]!r}")
    key = canonical_key(name)
    if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
        _KEY_CACHE[name] = key
    return key


def _lookup_key(name: str) -> str:
    """Key for a name given by our own code or a script: never a parse error."""
    key = _KEY_CACHE.get(name)
    if key is not None:
        return key
    if not name or not _TOKEN_CHARS.issuperset(name):
        raise LocalProtocolError(f"not a valid SIP header name: {name!r}")
    key = canonical_key(name)
    if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
        _KEY_CACHE[name] = key
    return key


def _preload_key_cache() -> None:
    """The names real messages use, as they are usually written, in lower case, and in
    compact form, are always in the cache (the bounded part is for the rest)."""
    common = (
        "Via Max-Forwards From To Call-ID Call-Id CSeq Contact Content-Type Content-Length "
        "Content-Encoding Content-Disposition Content-Language Route Record-Route Expires "
        "Min-Expires Allow Supported Require Proxy-Require Unsupported User-Agent Server "
        "Subject Accept Accept-Encoding Accept-Language Authorization Proxy-Authorization "
        "WWW-Authenticate Proxy-Authenticate Event Allow-Events Subscription-State Refer-To "
        "Referred-By Session-Expires Min-SE Path Service-Route Date Timestamp Organization "
        "Priority Reply-To Warning P-Asserted-Identity Privacy Identity RAck RSeq Retry-After "
        "Alert-Info Call-Info Error-Info In-Reply-To MIME-Version Security-Client"
    ).split()
    for name in common:
        key = canonical_key(name)
        _KEY_CACHE[name] = key
        _KEY_CACHE[key] = key
        _KEY_CACHE[name.upper()] = key
    for short in "imelcfsktvourbxy":
        _KEY_CACHE[short] = _KEY_CACHE[short.upper()] = canonical_key(short)


_preload_key_cache()
_KEY_CACHE_LIMIT += len(_KEY_CACHE)


# A header field is a list, for speed (one is made per header line of every message):
#   [key, name, value, line, text]
# key:   canonical lowercase long name ("via" for "v", "Via", "VIA")
# name:  the name as written; value: the unfolded value without surrounding LWS, None
#        once the line is removed
# line:  the received line(s) exactly, without the final "\n" (continuation lines
#        included); None for a line added by an edit
# text:  None for an unedited received line, else what is emitted in its place
#        (without the final "\n"; "" for a removed line)
_KEY, _NAME, _VALUE, _LINE, _TEXT = range(5)


_COPIERS: dict[type, Any] = {}


def _copier(cls: type) -> Any:
    """A function copying every ``__slots__`` attribute of ``cls`` (and its bases) from
    one instance to another, written out attribute by attribute (for ``Message.copy``,
    on the stateful proxy's hot path: a loop of getattr/setattr costs several times
    more). An attribute that is not set is left unset."""
    fn = _COPIERS.get(cls)
    if fn is None:
        names: list[str] = []
        for klass in cls.__mro__:
            for name in getattr(klass, "__slots__", ()):
                if name not in names and name != "__weakref__":
                    names.append(name)
        lines = ["def copy_slots(src, dst):"]
        for name in names:
            lines += ["    try:", f"        dst.{name} = src.{name}",
                      "    except AttributeError:", "        pass"]
        namespace: dict[str, Any] = {}
        exec("\n".join(lines), namespace)  # noqa: S102 - generated from slot names only
        fn = _COPIERS[cls] = namespace["copy_slots"]
    return fn


class Message:
    """What requests and responses share: header fields, body and edits.

    Not built directly: use :func:`parse_message` (or ``Request.make_response``).
    """

    __slots__ = ("raw", "body", "fields", "source", "_start_line", "_head_bytes",
                 "_body_off", "_memo", "_edited", "_sl_text", "__weakref__")

    raw: bytes
    body: bytes
    fields: list[list[Any]]
    source: Any

    # -- reading -------------------------------------------------------------------------

    def header(self, name: str) -> str | None:
        """Value of the first line named ``name`` (any case, compact form allowed), or None."""
        key = _lookup_key(name)
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                return f[_VALUE]
        return None

    def header_all(self, name: str) -> list[str]:
        """Values of every line named ``name``, in order."""
        key = _lookup_key(name)
        return [f[_VALUE] for f in self.fields if f[_KEY] == key and f[_VALUE] is not None]

    def has_header(self, name: str) -> bool:
        key = _lookup_key(name)
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                return True
        return False

    def header_names(self) -> list[str]:
        """Header names as written, one per line, in order."""
        return [f[_NAME] for f in self.fields if f[_VALUE] is not None]

    def _required(self, key: str, what: str) -> str:
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                return f[_VALUE]
        raise SipParseError(f"Missing {what}", 400)

    @property
    def vias(self) -> list[Via]:
        """Every Via value, topmost first (RFC 3261 §20.42). Raises SipParseError."""
        memo = self._memo
        vias = memo.get("via")
        if vias is None:
            vias = []
            for f in self.fields:
                if f[_KEY] == "via" and f[_VALUE] is not None:
                    vias.extend(parse_via(f[_VALUE]))
            memo["via"] = vias
        return vias

    @property
    def top_via(self) -> Via | None:
        memo = self._memo
        top = memo.get("top_via")
        if top is None:
            for f in self.fields:
                if f[_KEY] == "via" and f[_VALUE] is not None:
                    top = parse_via(f[_VALUE])[0]
                    break
            else:
                return None
            memo["top_via"] = top
        return top

    @property
    def from_(self) -> NameAddr:
        v = self._memo.get("from")
        if v is None:
            v = self._memo["from"] = parse_name_addr(self._required("from", "From"), "From")
        return v

    @property
    def to(self) -> NameAddr:
        v = self._memo.get("to")
        if v is None:
            v = self._memo["to"] = parse_name_addr(self._required("to", "To"), "To")
        return v

    @property
    def call_id(self) -> str:
        return self._required("call-id", "Call-ID")

    @property
    def cseq(self) -> CSeq:
        v = self._memo.get("cseq")
        if v is None:
            v = self._memo["cseq"] = parse_cseq(self._required("cseq", "CSeq"))
        return v

    def _uint(self, key: str, what: str, maximum: int = 2**32 - 1) -> int | None:
        memo = self._memo
        if key in memo:
            return memo[key]
        value = None
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                value = parse_uint(f[_VALUE], what, maximum)
                break
        memo[key] = value
        return value

    @property
    def max_forwards(self) -> int | None:
        # §20.22: "an integer in the range 0-255".
        return self._uint("max-forwards", "Max-Forwards", 255)

    @property
    def content_length(self) -> int | None:
        return self._uint("content-length", "Content-Length")

    @property
    def expires(self) -> int | None:
        return self._uint("expires", "Expires")

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    @property
    def contacts(self) -> list:
        v = self._memo.get("contact")
        if v is None:
            v = []
            for f in self.fields:
                if f[_KEY] == "contact" and f[_VALUE] is not None:
                    v.extend(parse_contact_list(f[_VALUE]))
            self._memo["contact"] = v
        return v

    def _name_addrs(self, key: str) -> list[NameAddr]:
        v = self._memo.get(key)
        if v is None:
            v = []
            for f in self.fields:
                if f[_KEY] == key and f[_VALUE] is not None:
                    v.extend(parse_name_addr_list(f[_VALUE], f[_NAME]))
            self._memo[key] = v
        return v

    @property
    def routes(self) -> list[NameAddr]:
        return self._name_addrs("route")

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._name_addrs("record-route")

    # -- edits ---------------------------------------------------------------------------

    def _forget(self, key: str) -> None:
        self._edited = True
        memo = self._memo
        if memo:
            memo.pop(key, None)
            if key == "via":
                memo.pop("top_via", None)

    @staticmethod
    def _line(name: str, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"header {name} value contains a line break")
        return f"{name}: {value}\r"

    def _new_field(self, name: str, value: str) -> list[Any]:
        key = _lookup_key(name)
        value = value.strip()
        return [key, name, value, None, self._line(name, value)]

    def add_header(self, name: str, value: str) -> None:
        """Append a header line at the end of the header section."""
        f = self._new_field(name, value)
        self.fields.append(f)
        self._forget(f[_KEY])

    def prepend_header(self, name: str, value: str) -> None:
        """Insert a header line before the first header line."""
        f = self._new_field(name, value)
        self.fields.insert(0, f)
        self._forget(f[_KEY])

    def insert_via(self, value: str) -> None:
        """Insert a Via value above the topmost one (RFC 3261 §16.6 step 8)."""
        f = self._new_field("Via", value)
        fields = self.fields
        for i, g in enumerate(fields):
            if g[_KEY] == "via":
                fields.insert(i, f)
                break
        else:
            fields.insert(0, f)
        self._forget("via")

    def insert_header_first(self, name: str, value: str) -> None:
        """Insert a line above the first line of the same name, or above every header line
        when there is none (a proxy's Record-Route goes on top, RFC 3261 §16.6 step 4)."""
        f = self._new_field(name, value)
        fields = self.fields
        key = f[_KEY]
        for i, g in enumerate(fields):
            if g[_KEY] == key:
                fields.insert(i, f)
                break
        else:
            fields.insert(0, f)
        self._forget(key)

    def _kill(self, f: list[Any]) -> None:
        f[_VALUE] = None
        f[_TEXT] = ""

    def remove_header(self, name: str) -> int:
        """Remove every line named ``name``; return how many were removed."""
        key = _lookup_key(name)
        n = 0
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                self._kill(f)
                n += 1
        if n:
            self._forget(key)
        return n

    def set_header(self, name: str, value: str) -> None:
        """Make ``value`` the only line named ``name`` (replacing the first, removing the rest)."""
        key = _lookup_key(name)
        first = None
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                if first is None:
                    first = f
                else:
                    self._kill(f)
        if first is None:
            self.add_header(name, value)
            return
        value = value.strip()
        first[_VALUE] = value
        first[_TEXT] = self._line(first[_NAME], value)
        self._forget(key)

    def remove_first_value(self, name: str) -> str | None:
        """Remove the first value of a list header (a whole line, or the first of several
        comma-separated values on it). Returns the removed value, or None if there was none."""
        key = _lookup_key(name)
        for f in self.fields:
            if f[_KEY] == key and f[_VALUE] is not None:
                values = split_values(f[_VALUE]) if "," in f[_VALUE] else [f[_VALUE]]
                if len(values) <= 1:
                    self._kill(f)
                else:
                    rest = ", ".join(values[1:])
                    f[_VALUE] = rest
                    f[_TEXT] = self._line(f[_NAME], rest)
                self._forget(key)
                return values[0] if values else ""
        return None

    def remove_top_via(self) -> str | None:
        """Remove the topmost Via value (RFC 3261 §16.7 step 3)."""
        return self.remove_first_value("via")

    def replace_top_via(self, value: str) -> None:
        """Replace the topmost Via value (for received/rport, RFC 3261 §18.2.1, RFC 3581 §4)."""
        for f in self.fields:
            if f[_KEY] == "via" and f[_VALUE] is not None:
                if "," in f[_VALUE]:
                    values = split_values(f[_VALUE])
                    values[0] = value
                    value = ", ".join(values)
                f[_VALUE] = value
                f[_TEXT] = self._line(f[_NAME], value)
                self._forget("via")
                return
        raise LocalProtocolError("message has no Via to replace")

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body; Content-Length (and Content-Type when given) follow."""
        self.body = body
        self._edited = True
        self.set_header("Content-Length", str(len(body)))
        if content_type is not None:
            self.set_header("Content-Type", content_type)

    def copy(self):
        """An independent copy: edits to either do not show in the other (a stateful proxy
        edits one copy per outgoing branch, RFC 3261 §16.6 step 1). Parsed values are
        shared (they are never mutated); the received bytes are not copied."""
        cls = type(self)
        new = cls.__new__(cls)
        _copier(cls)(self, new)
        new.fields = [f[:] for f in self.fields]
        new._memo = dict(self._memo) if self._memo else {}
        return new

    # -- serializing ---------------------------------------------------------------------

    @property
    def edited(self) -> bool:
        return self._edited

    def to_bytes(self) -> bytes:
        """The message as it goes on the wire: received bytes with the edits applied."""
        if not self._edited:
            return self.raw
        lines = [self._sl_text if self._sl_text is not None else self._start_line]
        lines += [f[_LINE] if f[_TEXT] is None else f[_TEXT]
                  for f in self.fields if f[_VALUE] is not None]
        lines.append("")
        out = "\n".join(lines).encode("utf-8", "surrogateescape")
        # The empty line as received (a datagram whose header section was never closed
        # gets one), then the body.
        blank = self.raw[self._head_bytes : self._body_off] or b"\r\n"
        return out + blank + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    """A SIP request (RFC 3261 §7.1)."""

    __slots__ = ("method", "ruri", "version")

    method: str
    ruri: str
    version: str

    @property
    def uri(self):
        """The Request-URI, parsed (SipUri, TelUri or AbsoluteUri). Raises SipParseError."""
        v = self._memo.get("ruri")
        if v is None:
            v = self._memo["ruri"] = parse_uri(self.ruri)
        return v

    def set_ruri(self, uri: str) -> None:
        """Rewrite the Request-URI (RFC 3261 §16.6 step 2)."""
        uri = str(uri)
        if not uri or any(c in uri for c in " \t\r\n"):
            raise LocalProtocolError(f"not a valid Request-URI: {uri!r}")
        self.ruri = uri
        self._memo.pop("ruri", None)
        self._sl_text = f"{self.method} {uri} {self.version}\r"
        self._edited = True

    @property
    def in_dialog(self) -> bool:
        """True when the To header has a tag (RFC 3261 §12.2)."""
        return self.to.tag is not None

    def make_response(
        self,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> bytes:
        """Build a response to this request (RFC 3261 §8.2.6).

        Via lines, From, Call-ID and CSeq are copied; To too, with ``to_tag`` added when
        it has none and the status is above 100 (§8.2.6.2). Content-Length is set.
        Values are copied as received, so this works on requests whose headers are not
        all well-formed (the 400 for such a request must still reach the sender).
        """
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status {status} is outside 100-699")
        if reason is None:
            reason = reason_phrase(status)
        if any(c in reason for c in "\r\n"):
            raise LocalProtocolError("reason phrase contains a line break")
        lines = [f"SIP/2.0 {status} {reason}\r\n"]
        for f in self.fields:
            if f[_VALUE] is None:
                continue
            key = f[_KEY]
            if key in ("via", "from", "call-id", "cseq"):
                lines.append(f"{f[_NAME]}: {f[_VALUE]}\r\n")
            elif key == "to":
                value = f[_VALUE]
                if to_tag and status > 100 and not _has_tag(value):
                    value = f"{value};tag={to_tag}"
                lines.append(f"{f[_NAME]}: {value}\r\n")
        for name, value in headers:
            lines.append(self._line(name, value) + "\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape") + body

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.ruri}>"


def _has_tag(to_value: str) -> bool:
    """Does a To value carry a tag? Cheap check first; the grammar when in doubt."""
    if "tag" not in to_value.lower():
        return False
    try:
        return parse_name_addr(to_value).tag is not None
    except SipParseError:
        return ";tag=" in to_value.lower()


class Response(Message):
    """A SIP response (RFC 3261 §7.2)."""

    __slots__ = ("status", "reason", "version")

    status: int
    reason: str
    version: str

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def _check_version(version: str) -> str:
    """RFC 3261 §7.1: SIP-Version is "SIP/2.0" (the literal is case-insensitive, §25).
    Another well-formed version is answered 505 (§8.2.2.1 / RFC 4475 §3.1.2.16)."""
    if version == "SIP/2.0":
        return version
    upper = version.upper()
    if upper == "SIP/2.0":
        return "SIP/2.0"
    if upper.startswith("SIP/"):
        major, dot, minor = upper[4:].partition(".")
        if dot and major.isdigit() and minor.isdigit():
            raise SipParseError("Version Not Supported", 505, version[:20])
    raise SipParseError("Bad Request-Line", 400, f"version {version[:20]!r}")


def parse_message(
    data: bytes,
    *,
    datagram: bool = True,
    request_cls: type[Request] = Request,
    response_cls: type[Response] = Response,
) -> Request | Response:
    """Parse one SIP message.

    :param data: the datagram, or one message framed off a stream.
    :param datagram: UDP rules (RFC 3261 §18.3): without Content-Length the body runs to the
        end of the datagram; bytes beyond Content-Length are not part of the message.
    :param request_cls: class to build requests as (the script layer's subclass).
    :raises SipParseError: with ``status_hint`` (None for a response, which is never answered).
    """
    n = len(data)
    if n > MAX_MESSAGE_SIZE:
        raise SipParseError("Message Too Large", 513, f"{n} bytes")
    start = 0
    # §7.5: CRLFs before the start line are ignored.
    while start < n and data[start] in (13, 10):
        start += 1
    if start == n:
        raise SipParseError("Empty Message", None)

    # The header section ends at the first empty line; bare-LF endings accepted liberally.
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if lf >= 0 and (crlf < 0 or lf < crlf):
        head_end, body_start = lf + 1, lf + 2
    elif crlf >= 0:
        head_end, body_start = crlf + 1, crlf + 3
    elif datagram and data.endswith(b"\n"):
        head_end = body_start = n  # header section not closed: accepted on a datagram
    else:
        raise SipParseError("Incomplete Message", 400)

    head = data[start:head_end].decode("utf-8", "surrogateescape")
    sl_end = head.find("\n") + 1
    first = head[: sl_end - 1]
    if first.endswith("\r"):
        first = first[:-1]

    msg: Request | Response
    if first.startswith("SIP/") or first[:4].upper() == "SIP/":
        msg = _parse_status_line(first, response_cls)
    else:
        msg = _parse_request_line(first, request_cls)

    # Header lines (§7.3): name HCOLON value; a line starting with SP or HTAB continues
    # the previous one (§7.3.1). One split, then one pass: this loop runs for every
    # header of every message, so it stays flat.
    lines = head.split("\n")
    del lines[-1]  # head ends with its last line terminator
    if len(lines) > MAX_HEADER_FIELDS + 1:
        raise SipParseError("Too Many Headers", 513, f"{len(lines) - 1} header lines")
    if "\n " in head or "\n\t" in head:
        fields = _scan_folded(lines)
    else:
        # The common case, as one comprehension (measurably cheaper than a loop here):
        # no continuation lines; names as usually written are in the cache.
        get_key = _KEY_CACHE.get
        try:
            fields = [[get_key(name) or _new_key(name, colon), name, value.strip(" \t\r"), line, None]
                      for line in lines[1:] for name, colon, value in (line.partition(":"),)]
        except _Irregular:
            fields = _scan_folded(lines)

    msg.fields = fields
    msg._start_line = lines[0]
    msg._sl_text = None
    msg._memo = {}
    msg._edited = False
    msg.source = None
    head_bytes = head_end - start
    msg._head_bytes = head_bytes
    msg._body_off = body_start - start

    # §18.3 / §20.14: the body is Content-Length bytes long. Two Content-Length lines
    # that disagree leave the length unknown: an invalid value (RFC 4475 §3.3.9 mcl01).
    cl_text = None
    for f in fields:
        if f[_KEY] == "content-length":
            if cl_text is None:
                cl_text = f[_VALUE]
            elif f[_VALUE].lstrip("0") != cl_text.lstrip("0"):
                raise SipParseError("Bad Content-Length", 400, "conflicting Content-Length values")
    cl = None if cl_text is None else parse_uint(cl_text, "Content-Length")
    msg._memo["content-length"] = cl
    if cl is None:
        if not datagram and body_start < n:
            raise SipParseError("Missing Content-Length", 400)
        end = n
    else:
        end = body_start + cl
        if end > n:
            # "If the transport packet ends before the end of the message body, this is
            # considered an error ... the element SHOULD generate a 400" (§18.3).
            raise SipParseError("Bad Content-Length", 400, f"Content-Length {cl}, {n - body_start} bytes of body")
    msg.body = data[body_start:end]
    msg.raw = data if (start == 0 and end == n) else data[start:end]
    return msg


class _Irregular(Exception):
    """A header line the fast scan leaves to ``_scan_folded`` (e.g. LWS before the colon)."""


def _new_key(name: str, colon: str) -> str:
    """Key of a name the cache does not know yet, for the fast scan."""
    if not colon:
        raise SipParseError("Bad Header", 400, f"no colon after {name[:40]!r}")
    if name[-1:] in (" ", "\t"):
        raise _Irregular
    return _key(name)


def _scan_folded(lines: list[str]) -> list[list[Any]]:
    """The header scan for any message: continuation lines (§7.3.1) are joined to the
    line they continue; LWS between a name and its colon is allowed (§7.3.1 HCOLON)."""
    fields: list[list[Any]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if not fields:
                raise SipParseError("Bad Header", 400, "continuation line after the start line")
            prev = fields[-1]
            more = line.strip(" \t\r")
            if more:
                prev[_VALUE] = f"{prev[_VALUE]} {more}"
            prev[_LINE] = f"{prev[_LINE]}\n{line}"
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("Bad Header", 400, f"no colon in {line[:40]!r}")
        name = name.rstrip(" \t")
        fields.append([_key(name), name, value.strip(" \t\r"), line, None])
    return fields


def _parse_request_line(line: str, cls: type[Request]) -> Request:
    # §7.1: Method SP Request-URI SP SIP-Version; exactly one SP between elements
    # (RFC 4475 §3.1.2.7 lwsstart, §3.1.2.9 lwsruri).
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Bad Request-Line", 400, line[:80])
    method, ruri, version = parts
    if method not in _KNOWN_METHODS and (not method or not _TOKEN_CHARS.issuperset(method)):
        raise SipParseError("Bad Request-Line", 400, f"method {method[:40]!r}")
    if not ruri or "\t" in ruri or ":" not in ruri:
        raise SipParseError("Bad Request-URI", 400, ruri[:80])
    req = cls.__new__(cls)
    req.method = method
    req.ruri = ruri
    req.version = _check_version(version)
    return req


def _parse_status_line(line: str, cls: type[Response]) -> Response:
    # §7.2: SIP-Version SP Status-Code SP Reason-Phrase. Responses are never answered, so
    # errors carry no status hint: the caller drops the message.
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if len(code) != 3 or not code.isdigit() or not "100" <= code <= "699":
        raise SipParseError("Bad Status-Line", None, line[:80])
    try:
        version = _check_version(version)
    except SipParseError as e:
        raise SipParseError(e.reason, None, e.detail) from None
    res = cls.__new__(cls)
    res.status = int(code)
    res.reason = reason
    res.version = version
    return res


_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 300: "Multiple Choices",
    301: "Moved Permanently", 302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    423: "Interval Too Brief", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC 3261 §21 reason phrase for a status code (or a class default)."""
    return _REASONS.get(status) or _REASONS.get(status // 100 * 100, "Unknown")


_SALVAGE_KEYS = ("via", "from", "to", "call-id", "cseq")


def salvage_response(data: bytes, status: int, reason: str, *, to_tag: str) -> bytes | None:
    """Build a reply to a request that did not parse, from its Via, From, To, Call-ID and
    CSeq lines copied as received (RFC 3261 §8.2.6.2 asks for those five).

    Returns None when the bytes are not a request (responses are never answered), are an
    ACK (§17: never answered), or lack one of the five headers (the reply could not be
    matched by the client anyway: the message is dropped).
    """
    text = data[:MAX_MESSAGE_SIZE].decode("utf-8", "surrogateescape").lstrip("\r\n")
    head = text.replace("\r\n", "\n")
    head = head.split("\n\n", 1)[0]
    lines = head.split("\n")
    first = lines[0]
    method = first.split(" ", 1)[0]
    if not first or first[:4].upper() == "SIP/" or method == "ACK":
        return None
    # Unfold continuation lines (§7.3.1).
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    picked: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for line in unfolded[: MAX_HEADER_FIELDS]:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not name or not _TOKEN_CHARS.issuperset(name):
            continue
        key = canonical_key(name)
        if key in _SALVAGE_KEYS:
            value = value.strip(" \t\r")
            if key == "to" and status > 100 and not _has_tag(value):
                value = f"{value};tag={to_tag}"
            picked.append((key, name, value))
            seen.add(key)
    if len(seen) != len(_SALVAGE_KEYS):
        return None
    out = [f"SIP/2.0 {status} {reason}\r\n"]
    out.extend(f"{name}: {value}\r\n" for _, name, value in picked)
    out.append("Content-Length: 0\r\n\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")
