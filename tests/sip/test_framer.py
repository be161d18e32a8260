# SPDX-License-Identifier: Apache-2.0
"""StreamFramer: RFC 3261 §18.3 Content-Length framing, §7.5 CRLF skipping,
RFC 5626 §3.5.1 keep-alive pings, size limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.sip.errors import SipParseError
from siprouter.sip.framer import DEFAULT_MAX_MESSAGE_SIZE, PING, KeepAlive, StreamFramer

BAD_REQUEST = 400
MESSAGE_TOO_LARGE = 513


def message(body: bytes = b"", *, cl_line: str | None = None, extra: str = "") -> bytes:
    """A small request; ``cl_line`` replaces the Content-Length line ("" drops it)."""
    if cl_line is None:
        cl_line = f"Content-Length: {len(body)}\r\n"
    return (
        "OPTIONS sip:bob@example.com SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        "From: <sip:alice@example.com>;tag=1928301774\r\n"
        "To: <sip:bob@example.com>\r\n"
        "Call-ID: a84b4c76e66710\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"{extra}{cl_line}\r\n"
    ).encode() + body


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[bytes | KeepAlive]:
    out: list[bytes | KeepAlive] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


class TestFraming:
    def test_one_message_whole(self) -> None:
        m = message(b"v=0\r\n")
        assert StreamFramer().feed(m) == [m]

    def test_one_message_byte_by_byte(self) -> None:
        m = message(b"v=0\r\n")
        assert feed_all(StreamFramer(), byte_by_byte(m)) == [m]

    def test_several_messages_in_one_segment(self) -> None:
        a, b, c = message(b"a"), message(b""), message(b"ccc")
        assert StreamFramer().feed(a + b + c) == [a, b, c]

    def test_message_split_across_segments_with_the_next_one_started(self) -> None:
        a, b = message(b"hello"), message(b"world!")
        framer = StreamFramer()
        data = a + b
        assert framer.feed(data[:len(a) - 2]) == []
        assert framer.feed(data[len(a) - 2:len(a) + 10]) == [a]
        assert framer.feed(data[len(a) + 10:]) == [b]
        assert framer.buffered == b""

    def test_partial_body_waits(self) -> None:
        m = message(b"0123456789")
        framer = StreamFramer()
        assert framer.feed(m[:-1]) == []
        assert framer.buffered == m[:-1]
        assert framer.feed(m[-1:]) == [m]

    @pytest.mark.parametrize("line", [
        "l: 4\r\n",
        "L: 4\r\n",
        "content-length: 4\r\n",
        "CONTENT-LENGTH:4\r\n",
        "Content-Length   :   4  \r\n",
        "Content-Length\t: 4\r\n",
        "Content-Length:\r\n 4\r\n",  # folded value (LWS, RFC 3261 §7.3.1)
    ])
    def test_content_length_forms(self, line: str) -> None:
        m = message(b"abcd", cl_line=line)
        assert StreamFramer().feed(m + m) == [m, m]

    def test_other_headers_starting_with_l_are_not_content_length(self) -> None:
        m = message(b"xy", extra="Lx: 99\r\nL-Foo: 77\r\nX-Content-Length: 5\r\n")
        assert StreamFramer().feed(m) == [m]

    def test_content_length_text_in_body_is_not_read(self) -> None:
        body = b"\nContent-Length: 999\r\n"
        m = message(body)
        assert StreamFramer().feed(m) == [m]

    def test_repeated_equal_content_length_is_accepted(self) -> None:
        m = message(b"abc", extra="Content-Length: 3\r\n")
        assert StreamFramer().feed(m) == [m]

    def test_bare_lf_line_ends_are_tolerated(self) -> None:
        m = message(b"abc").replace(b"\r\n", b"\n")
        assert feed_all(StreamFramer(), byte_by_byte(m + m)) == [m, m]

    def test_zero_length_body(self) -> None:
        m = message(b"")
        assert feed_all(StreamFramer(), byte_by_byte(m)) == [m]


class TestCrlfAndKeepAlive:
    def test_crlf_before_start_line_is_ignored(self) -> None:
        # RFC 3261 §7.5.
        m = message(b"x")
        assert StreamFramer().feed(b"\r\n" + m) == [m]

    def test_double_crlf_is_a_ping(self) -> None:
        # RFC 5626 §3.5.1.
        assert StreamFramer().feed(b"\r\n\r\n") == [PING]

    def test_ping_between_messages(self) -> None:
        m = message(b"x")
        assert StreamFramer().feed(m + b"\r\n\r\n" + m) == [m, PING, m]

    def test_ping_split_byte_by_byte(self) -> None:
        assert feed_all(StreamFramer(), byte_by_byte(b"\r\n\r\n\r\n\r\n")) == [PING, PING]

    def test_lone_crlf_is_not_a_ping(self) -> None:
        # A single CRLF is a pong (or padding): no output, and the next message frames.
        framer = StreamFramer()
        assert framer.feed(b"\r\n") == []
        m = message(b"")
        assert framer.feed(m) == [m]

    def test_ping_marker(self) -> None:
        assert isinstance(PING, KeepAlive)
        assert repr(PING) == "PING"


class TestErrors:
    def test_missing_content_length(self) -> None:
        with pytest.raises(SipParseError) as info:
            StreamFramer().feed(message(b"", cl_line=""))
        assert info.value.reason == "Missing Content-Length"
        assert info.value.status_hint == BAD_REQUEST

    @pytest.mark.parametrize("value", ["abc", "-1", "+5", "1_0", "5 6", "", "0x10"])
    def test_bad_content_length(self, value: str) -> None:
        with pytest.raises(SipParseError) as info:
            StreamFramer().feed(message(b"", cl_line=f"Content-Length: {value}\r\n"))
        assert info.value.reason == "Bad Content-Length"
        assert info.value.status_hint == BAD_REQUEST

    def test_conflicting_content_lengths(self) -> None:
        # RFC 4475 §3.1.2.7-style: two different lengths make the stream unframeable.
        m = message(b"abc", extra="Content-Length: 4\r\n")
        with pytest.raises(SipParseError) as info:
            StreamFramer().feed(m)
        assert info.value.reason == "Bad Content-Length"

    def test_header_section_too_large_without_waiting_for_the_end(self) -> None:
        framer = StreamFramer(max_message_size=1000)
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\n")
        with pytest.raises(SipParseError) as info:
            for _ in range(100):
                framer.feed(b"X-Filler: " + b"a" * 40 + b"\r\n")
        assert info.value.reason == "Message Too Large"
        assert info.value.status_hint == MESSAGE_TOO_LARGE
        assert framer.buffered.startswith(b"OPTIONS sip:x SIP/2.0\r\n")
        assert len(framer.buffered) <= 1000

    def test_announced_body_too_large_is_rejected_at_once(self) -> None:
        m = message(b"", cl_line="Content-Length: 2000\r\n")
        with pytest.raises(SipParseError) as info:
            StreamFramer(max_message_size=1000).feed(m)
        assert info.value.status_hint == MESSAGE_TOO_LARGE

    def test_huge_content_length_is_too_large(self) -> None:
        m = message(b"", cl_line="Content-Length: 99999999999999999999999\r\n")
        with pytest.raises(SipParseError) as info:
            StreamFramer().feed(m)
        assert info.value.status_hint == MESSAGE_TOO_LARGE

    def test_message_exactly_at_the_limit_is_accepted(self) -> None:
        head = message(b"", cl_line="Content-Length: 0000\r\n")
        size = 300
        body = b"b" * (size - len(head))
        m = message(body, cl_line=f"Content-Length: {len(body):04d}\r\n")
        assert len(m) == size
        assert StreamFramer(max_message_size=size).feed(m) == [m]
        with pytest.raises(SipParseError):
            StreamFramer(max_message_size=size - 1).feed(m)

    def test_good_message_before_the_error_is_returned_then_error_raised(self) -> None:
        good = message(b"ok")
        bad = message(b"", cl_line="")
        framer = StreamFramer()
        assert framer.feed(good + bad) == [good]
        assert framer.error is not None
        assert framer.error.reason == "Missing Content-Length"
        assert framer.buffered == bad
        with pytest.raises(SipParseError):
            framer.feed(b"")

    def test_spent_framer_keeps_raising(self) -> None:
        framer = StreamFramer()
        with pytest.raises(SipParseError):
            framer.feed(message(b"", cl_line=""))
        with pytest.raises(SipParseError):
            framer.feed(message(b"ok"))

    def test_default_limit_constant(self) -> None:
        assert StreamFramer().max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 65535

    def test_byte_by_byte_large_header_section_is_linear(self) -> None:
        # Regression guard: the empty-line search resumes where it stopped, so a
        # 60 KiB header section fed one byte at a time finishes quickly.
        filler = "".join(f"X-F{i}: {'a' * 50}\r\n" for i in range(1000))
        m = message(b"", extra=filler)
        assert len(m) > 50_000
        assert feed_all(StreamFramer(), byte_by_byte(m)) == [m]


# --- property tests -------------------------------------------------------------

bodies = st.binary(max_size=200)
items = st.one_of(
    bodies.map(lambda b: ("msg", message(b))),
    st.just(("ping", b"\r\n\r\n")),
)


@st.composite
def stream_and_cuts(draw: st.DrawFn) -> tuple[list[tuple[str, bytes]], bytes, list[int]]:
    seq = draw(st.lists(items, min_size=1, max_size=8))
    data = b"".join(b for _, b in seq)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=20)))
    return seq, data, cuts


@settings(max_examples=300, deadline=None)
@given(stream_and_cuts())
def test_random_chunking_gives_the_same_messages(case) -> None:
    seq, data, cuts = case
    expected = [PING if kind == "ping" else b for kind, b in seq]
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    assert feed_all(StreamFramer(), chunks) == expected
    assert StreamFramer().feed(data) == expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=10))
def test_random_bytes_raise_only_the_parse_error(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_message_size=500)
    try:
        for chunk in chunks:
            for item in framer.feed(chunk):
                assert item is PING or isinstance(item, bytes)
    except SipParseError as exc:
        assert exc.status_hint in (BAD_REQUEST, MESSAGE_TOO_LARGE)
