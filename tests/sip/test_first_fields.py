# SPDX-License-Identifier: Apache-2.0
"""The first-field index (``Message.first_fields``) against a plain scan of the lines,
after parsing and after every kind of edit, so header lookups through it can never
disagree with what the message says."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.sip.headers import parse_via
from siprouter.sip.message import parse_message

RAW = (
    b"INVITE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK1\r\n"
    b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK2\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Route: <sip:r1.example.com;lr>, <sip:r2.example.com;lr>\r\n"
    b"Route: <sip:r3.example.com;lr>\r\n"
    b"X-Custom-Header: one\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def scanned(msg) -> dict[str, str]:
    """key -> value of the first live line, by walking every line."""
    out: dict[str, str] = {}
    for f in msg.fields:
        if f[2] is not None and f[0] not in out:
            out[f[0]] = f[2]
    return out


def indexed(msg) -> dict[str, str]:
    return {k: f[2] for k, f in msg.first_fields().items()}


EDITS = [
    lambda m: m.insert_via("SIP/2.0/UDP proxy.example.com;branch=z9hG4bKnew"),
    lambda m: m.remove_top_via(),
    lambda m: m.remove_first_value("Route"),
    lambda m: m.remove_header("Route"),
    lambda m: m.set_header("Max-Forwards", "69"),
    lambda m: m.set_header("Via", "SIP/2.0/UDP only.example.com;branch=z9hG4bKonly"),
    lambda m: m.insert_header_first("Record-Route", "<sip:proxy.example.com;lr>"),
    lambda m: m.prepend_header("X-First", "1"),
    lambda m: m.add_header("Route", "<sip:last.example.com;lr>"),
    lambda m: m.remove_header("X-Custom-Header"),
    lambda m: m.set_body(b"v=0\r\n", "application/sdp"),
]


def test_received_message_index_is_the_first_line_of_each_name():
    msg = parse_message(RAW)
    assert indexed(msg) == scanned(msg)
    assert msg.header("via") == "SIP/2.0/UDP p1.example.com;branch=z9hG4bK1"
    assert msg.header("route") == "<sip:r1.example.com;lr>, <sip:r2.example.com;lr>"
    assert msg.has_repeated_keys()


def test_message_without_repeated_names():
    msg = parse_message(RAW.replace(b"v: SIP/2.0/UDP a.example.com;branch=z9hG4bK2\r\n", b"")
                        .replace(b"Route: <sip:r3.example.com;lr>\r\n", b""))
    assert not msg.has_repeated_keys()
    assert indexed(msg) == scanned(msg)


def test_unknown_header_names_take_the_line_by_line_scan():
    msg = parse_message(RAW.replace(b"X-Custom-Header", b"X-Never-Seen-Before-1a2b"))
    assert msg.header("X-Never-Seen-Before-1a2b") == "one"
    assert indexed(msg) == scanned(msg)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(EDITS))), max_size=8),
       st.sampled_from([None, 0, 2, 4]))
def test_index_follows_every_edit_and_copy(edit_ids, copy_after):
    msg = parse_message(RAW)
    before_copy = None
    for i, e in enumerate(edit_ids):
        if copy_after == i:
            source, before_copy = msg, scanned(msg)
            msg = msg.copy()
        EDITS[e](msg)
        assert indexed(msg) == scanned(msg)
        for key, value in scanned(msg).items():
            assert msg.header(key) == value
            assert msg.header_all(key) == [f[2] for f in msg.fields
                                           if f[0] == key and f[2] is not None]
        assert [str(v.host) for v in msg.vias] == [
            v.host for f in msg.fields if f[0] == "via" and f[2] is not None
            for v in parse_via(f[2])]
    if before_copy is not None:
        # The message copied from is untouched by the copy's edits, index included.
        assert scanned(source) == before_copy
        assert indexed(source) == before_copy
