# SPDX-License-Identifier: Apache-2.0
"""Cut a byte stream (TCP, later TLS) into SIP messages. Pure: no I/O.

How this works
--------------
RFC 3261 §18.3: on a stream transport the end of a message is found from its
Content-Length header, which is therefore mandatory there. The framer keeps the
bytes it has not yet handed out and, per ``feed``, loops over three steps:

1. Between messages, skip CRLFs (§7.5: "implementations processing SIP messages
   over stream-oriented transports MUST ignore any CRLF appearing before the start
   line"). A double CRLF there is the RFC 5626 §3.5.1 keep-alive *ping*; it comes
   out as the ``PING`` marker so the transport can answer the single-CRLF *pong*.
   A lone CRLF (a pong, when we are the client) is ignored.
2. Find the end of the header section: the first empty line. Line ends are CRLF,
   but a bare LF is tolerated like the parser does, so the empty line is the first
   ``\\n\\r\\n`` or ``\\n\\n``. The search resumes where the previous one stopped,
   so feeding a message byte by byte stays linear.
3. Read Content-Length (long or compact ``l`` form, any case, whitespace before
   the colon allowed by HCOLON) from the header section and wait for that many body
   bytes. Each complete message is returned as ``bytes`` starting at its start line.

Limits: a header section, or header section plus announced body, above
``max_message_size`` raises ``SipParseError("Message Too Large", 513)`` as soon as
it is known, without waiting for the bytes. After any error the framer is spent:
the connection is to be closed once the caller has answered (if it can).

The framer does not validate the start line or any other header; the parser
(``parse_message(data, datagram=False)``) does that on each framed message.
"""

from __future__ import annotations

from .errors import SipParseError

__all__ = ["StreamFramer", "KeepAlive", "PING", "DEFAULT_MAX_MESSAGE_SIZE"]

# Largest message accepted on a stream. 65535 is the largest UDP payload (RFC 3261
# §18.1.1 sizes messages against it) and Kamailio's BUF_SIZE default; a stream peer
# gets the same ceiling so a message never stops being forwardable over UDP because
# of its size alone.
DEFAULT_MAX_MESSAGE_SIZE = 65535

# Digits accepted in a Content-Length value before the value is "too large" anyway
# (10 digits already exceed any sane limit; this bounds int() work on garbage).
_MAX_CONTENT_LENGTH_DIGITS = 10

_CRLF = b"\r\n"
_PING_BYTES = b"\r\n\r\n"


class KeepAlive:
    """Marker for an RFC 5626 §3.5.1 keep-alive ping (a double CRLF between messages).

    Use the module-level ``PING`` instance; compare with ``is``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "PING"


PING = KeepAlive()


class StreamFramer:
    """Incremental RFC 3261 §18.3 framer for one stream connection.

    :param max_message_size: largest header section, or header section plus body,
        accepted (bytes).
    """

    __slots__ = ("max_message_size", "_buf", "_scan", "_body_start", "_msg_end", "error",
                 "_partial")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        # Bytes not handed out yet; the current message, if any, starts at index 0
        # once the leading CRLFs have been skipped.
        self._buf = bytearray()
        # Index in _buf where the next search for the empty line resumes.
        self._scan = 0
        # Set once the header section of the current message is complete.
        self._body_start = -1
        self._msg_end = -1
        #: The error that made the framer unusable, or None.
        self.error: SipParseError | None = None
        self._partial = b""

    @property
    def buffered(self) -> bytes:
        """Bytes received but not yet framed; after an error, the start of the failed
        message (bounded by the size limit plus one received chunk). The transport
        passes it to its stream-error hook so a reply can be built from it."""
        if self.error is not None:
            return self._partial
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add received bytes; return the messages (and ``PING`` markers) completed.

        When the stream turns out to be bad after some messages in the same call were
        complete, those messages are returned, ``error`` is set at once and the next
        call raises it.

        :raises SipParseError: "Missing Content-Length" (400), "Bad Content-Length"
            (400) or "Message Too Large" (513); a spent framer raises its stored
            error again on every call.
        """
        if self.error is not None:
            raise self.error
        out: list[bytes | KeepAlive] = []
        buf = self._buf
        if buf:
            buf += data
            src: bytes | bytearray = buf
        else:
            # Fast path: nothing pending, work on the received bytes directly; a
            # segment that holds exactly one message is returned without a copy.
            src = data
        pos = 0
        end = len(src)
        try:
            while pos < end:
                if self._body_start < 0:
                    if src[pos] in b"\r\n":
                        # §7.5 / RFC 5626 §3.5.1: CRLFs before a start line.
                        if src.startswith(_PING_BYTES, pos):
                            out.append(PING)
                            pos += 4
                            continue
                        if src.startswith(_CRLF, pos):
                            rest = src[pos:pos + 4]
                            if _PING_BYTES.startswith(rest):
                                break  # could still become a ping; wait for bytes
                            pos += 2
                            continue
                        if src[pos] == 10:  # bare LF, tolerated like the parser does
                            pos += 1
                            continue
                        if end - pos == 1:
                            break  # lone CR: wait for its LF
                        # CR followed by something else: not a line end; let the
                        # header search below treat it as (bad) message text.
                    if not self._find_header_end(src, pos, end):
                        break
                if pos + self._msg_end > end:
                    break
                msg_end = pos + self._msg_end
                out.append(bytes(src[pos:msg_end]) if src is buf else src[pos:msg_end])
                pos = msg_end
                self._body_start = -1
                self._msg_end = -1
                self._scan = 0
        except SipParseError as exc:
            self.error = exc
            self._partial = bytes(src[pos:pos + self.max_message_size])
            self._buf = bytearray()
            if out:
                return out
            raise
        # Keep what is left; _scan and the offsets are relative to the message start.
        if src is buf:
            del buf[:pos]
        elif pos < end:
            self._buf = bytearray(src[pos:])
        return out

    def _find_header_end(self, src: bytes | bytearray, pos: int, end: int) -> bool:
        """Locate the empty line of the message starting at ``pos`` and its
        Content-Length; set ``_body_start``/``_msg_end`` (relative to ``pos``)."""
        scan = pos + self._scan
        i = src.find(b"\n\r\n", scan)
        j = src.find(b"\n\n", scan, i + 2 if i >= 0 else end)
        if j >= 0:
            body_start = j + 2
        elif i >= 0:
            body_start = i + 3
        else:
            if end - pos > self.max_message_size:
                raise SipParseError("Message Too Large", 513,
                                    f"no end of header section in {end - pos} bytes")
            # Resume where the pattern could still start (it is 3 bytes long).
            self._scan = max(0, end - pos - 2)
            return False
        head_len = body_start - pos
        if head_len > self.max_message_size:
            raise SipParseError("Message Too Large", 513,
                                f"header section of {head_len} bytes")
        length = _content_length(bytes(src[pos:body_start]).lower())
        if head_len + length > self.max_message_size:
            raise SipParseError("Message Too Large", 513,
                                f"{head_len} header bytes + Content-Length {length}")
        self._body_start = head_len
        self._msg_end = head_len + length
        return True


def _content_length(head: bytes) -> int:
    """Content-Length of a lower-cased header section (start line included).

    RFC 3261 §18.3: required on streams. §20.14 / §7.3.3: long or compact ("l")
    name; HCOLON allows spaces/tabs before the colon; the value may be folded onto
    a continuation line. Repeated lines must agree.
    """
    value: int | None = None
    for name in (b"\ncontent-length", b"\nl"):
        i = head.find(name)
        while i >= 0:
            k = i + len(name)
            n = len(head)
            while k < n and head[k] in b" \t":
                k += 1
            if k < n and head[k] == 58:  # ":"
                v = _header_value(head, k + 1)
                if not v.isdigit():
                    raise SipParseError("Bad Content-Length", 400, f"value {v[:20]!r}")
                if len(v) > _MAX_CONTENT_LENGTH_DIGITS:
                    raise SipParseError("Message Too Large", 513, f"Content-Length {v[:20]!r}")
                found = int(v)
                if value is not None and found != value:
                    raise SipParseError("Bad Content-Length", 400,
                                        f"conflicting values {value} and {found}")
                value = found
            i = head.find(name, i + 1)
    if value is None:
        raise SipParseError("Missing Content-Length", 400, "required on stream transports")
    return value


def _header_value(head: bytes, start: int) -> bytes:
    """Value from ``start`` to the end of its (possibly folded) line, stripped."""
    end = head.find(b"\n", start)
    while end >= 0 and head[end + 1:end + 2] in (b" ", b"\t"):
        end = head.find(b"\n", end + 1)
    if end < 0:
        end = len(head)
    return head[start:end].strip()
