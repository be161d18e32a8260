"""Message model: parsing, lazy access, edits, serialization (RFC 3261 §7, §18.3, §20)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.message import (
    MAX_HEADER_FIELDS,
    Request,
    Response,
    parse_message,
    salvage_response,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"X-Custom:   kept   as is  \r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKabc, SIP/2.0/UDP pc33.example.com"
    b";branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_request_line_and_headers():
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    assert (req.method, req.ruri, req.version) == ("INVITE", "sip:bob@biloxi.example.com", "SIP/2.0")
    assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert req.cseq.seq == 314159 and req.cseq.method == "INVITE"
    assert req.max_forwards == 70
    assert req.content_length == 4
    assert req.body == b"v=0\n"
    assert req.from_.tag == "1928301774"
    assert req.to.tag is None
    assert req.top_via.branch == "z9hG4bK776asdhds"
    # Header values lose surrounding LWS but keep their inside as written.
    assert req.header("x-custom") == "kept   as is"
    assert req.header_names()[0] == "Via"


def test_untouched_message_serializes_to_identical_bytes():
    for data in (INVITE, RESPONSE):
        assert parse_message(data).to_bytes() == data


def test_names_are_case_insensitive_and_compact_forms_match():
    data = INVITE.replace(b"Call-ID:", b"i:").replace(b"Via:", b"VIA:").replace(b"From:", b"f :")
    req = parse_message(data)
    assert req.header("Call-ID") == req.header("i") == "a84b4c76e66710@pc33.atlanta.example.com"
    assert req.header("via") is not None and req.header("v") == req.header("Via")
    assert req.from_.tag == "1928301774"


def test_folded_header_is_unfolded():
    data = INVITE.replace(b"Subject-Placeholder", b"").replace(
        b"X-Custom:   kept   as is  \r\n", b"Subject: I know you're there,\r\n   pick up!\r\n")
    req = parse_message(data)
    assert req.header("subject") == "I know you're there, pick up!"
    assert req.to_bytes() == data


def test_repeated_and_multi_value_headers():
    res = parse_message(RESPONSE)
    assert isinstance(res, Response)
    assert res.status == 180 and res.reason == "Ringing"
    assert [v.host for v in res.vias] == ["proxy.example.com", "pc33.example.com"]
    assert res.vias[1].received == "192.0.2.1"


def test_leading_crlf_ignored_and_trailing_datagram_bytes_not_part_of_message():
    req = parse_message(b"\r\n\r\n" + INVITE + b"GARBAGE")
    assert req.body == b"v=0\n"
    assert req.to_bytes() == INVITE


def test_datagram_without_content_length_body_runs_to_end():
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    req = parse_message(data + b"more")
    assert req.body == b"v=0\nmore"


def test_stream_message_requires_content_length():
    data = INVITE.replace(b"Content-Length: 4\r\n", b"")
    with pytest.raises(SipParseError) as e:
        parse_message(data, datagram=False)
    assert e.value.status_hint == 400


def test_content_length_larger_than_datagram_is_400():
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: 400")
    with pytest.raises(SipParseError) as e:
        parse_message(data)
    assert e.value.status_hint == 400


def test_bad_version_is_505_for_requests_and_drop_for_responses():
    with pytest.raises(SipParseError) as e:
        parse_message(INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1))
    assert e.value.status_hint == 505
    with pytest.raises(SipParseError) as e:
        parse_message(RESPONSE.replace(b"SIP/2.0 180", b"SIP/7.0 180"))
    assert e.value.status_hint is None


@pytest.mark.parametrize("line", [
    b"INVITE  sip:bob@example.com SIP/2.0",  # two SP
    b"INVITE sip:bob@example.com; lr SIP/2.0",  # LWS in the URI
    b"INVITE sip:bob@example.com",  # no version
    b"INV(TE sip:bob@example.com SIP/2.0",  # not a token
])
def test_bad_request_lines(line):
    with pytest.raises(SipParseError) as e:
        parse_message(INVITE.replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", line))
    assert e.value.status_hint == 400


@pytest.mark.parametrize("code", [b"4294967301", b"99", b"700", b"2x0"])
def test_bad_status_codes(code):
    with pytest.raises(SipParseError) as e:
        parse_message(RESPONSE.replace(b"180", code, 1))
    assert e.value.status_hint is None


def test_header_line_without_colon_is_400():
    with pytest.raises(SipParseError) as e:
        parse_message(INVITE.replace(b"X-Custom:", b"X-Custom"))
    assert e.value.status_hint == 400


def test_too_many_header_lines_is_513():
    extra = b"".join(b"Via: SIP/2.0/UDP h%d.example.com;branch=z9hG4bK%d\r\n" % (i, i)
                     for i in range(MAX_HEADER_FIELDS + 1))
    with pytest.raises(SipParseError) as e:
        parse_message(INVITE.replace(b"Max-Forwards", extra + b"Max-Forwards"))
    assert e.value.status_hint == 513


def test_edits_forwarding_shape():
    req = parse_message(INVITE)
    req.insert_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")
    req.set_header("Max-Forwards", "69")
    req.set_ruri("sip:bob@10.0.0.2")
    out = req.to_bytes()
    assert out.startswith(b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew\r\n"
                          b"Via: SIP/2.0/UDP pc33")
    assert b"Max-Forwards: 69\r\n" in out and b"Max-Forwards: 70" not in out
    # Untouched lines leave byte for byte.
    assert b"X-Custom:   kept   as is  \r\n" in out
    assert out.endswith(b"\r\n\r\nv=0\n")
    # Readers see the edits at once.
    assert [v.branch for v in req.vias] == ["z9hG4bKnew", "z9hG4bK776asdhds"]
    assert req.max_forwards == 69
    again = parse_message(out)
    assert again.top_via.host == "10.0.0.1" and again.ruri == "sip:bob@10.0.0.2"


def test_insert_via_twice_puts_the_newest_on_top():
    req = parse_message(INVITE)
    req.insert_via("SIP/2.0/UDP a.example.com;branch=z9hG4bK1")
    req.insert_via("SIP/2.0/UDP b.example.com;branch=z9hG4bK2")
    assert [v.host for v in parse_message(req.to_bytes()).vias] == [
        "b.example.com", "a.example.com", "pc33.atlanta.example.com"]


def test_remove_top_via_of_a_multi_value_line():
    res = parse_message(RESPONSE)
    assert res.remove_top_via().startswith("SIP/2.0/UDP proxy.example.com")
    out = parse_message(res.to_bytes())
    assert [v.host for v in out.vias] == ["pc33.example.com"]
    assert out.vias[0].received == "192.0.2.1"


def test_remove_add_and_set_headers():
    req = parse_message(INVITE)
    assert req.remove_header("x-custom") == 1
    assert req.remove_header("x-custom") == 0
    req.add_header("X-Added", "1")
    req.set_header("X-Added", "2")
    req.prepend_header("X-First", "yes")
    out = parse_message(req.to_bytes())
    assert out.header("x-custom") is None
    assert out.header_all("x-added") == ["2"]
    assert out.header_names()[0] == "X-First"
    assert out.body == b"v=0\n"


def test_set_body_updates_content_length():
    req = parse_message(INVITE)
    req.set_body(b"hello world", "text/plain")
    out = parse_message(req.to_bytes())
    assert out.body == b"hello world" and out.content_length == 11
    assert out.content_type == "text/plain"


def test_edit_values_cannot_inject_lines():
    req = parse_message(INVITE)
    with pytest.raises(LocalProtocolError):
        req.add_header("X-Evil", "a\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(LocalProtocolError):
        req.add_header("Bad Name", "x")


def test_make_response_copies_the_right_headers_and_adds_a_to_tag():
    req = parse_message(INVITE)
    res = parse_message(req.make_response(404, to_tag="abc", headers=[("X-Why", "nobody")]))
    assert isinstance(res, Response) and res.status == 404 and res.reason == "Not Found"
    assert res.to.tag == "abc"
    assert res.from_.tag == "1928301774"
    assert res.call_id == req.call_id and res.cseq.seq == req.cseq.seq
    assert [v.branch for v in res.vias] == ["z9hG4bK776asdhds"]
    assert res.header("x-why") == "nobody"
    assert res.header("contact") is None and res.content_length == 0
    # 100 Trying never gets a To tag (§8.2.6.2).
    assert parse_message(req.make_response(100, to_tag="abc")).to.tag is None


def test_salvage_response_for_unparseable_request():
    bad = INVITE.replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    out = salvage_response(bad, 505, "Version Not Supported", to_tag="t1")
    res = parse_message(out)
    assert res.status == 505 and res.to.tag == "t1" and res.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    # Never for ACK, responses, or without the five headers.
    assert salvage_response(bad.replace(b"INVITE sip", b"ACK sip", 1), 400, "Bad", to_tag="x") is None
    assert salvage_response(RESPONSE, 400, "Bad", to_tag="x") is None
    assert salvage_response(b"INVITE sip:a@b SIP/2.0\r\n\r\n", 400, "Bad", to_tag="x") is None


def test_lf_only_message_is_accepted_liberally():
    data = INVITE.replace(b"\r\n", b"\n")
    req = parse_message(data)
    assert req.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert req.body == b"v=0\n"
    req.insert_via("SIP/2.0/UDP x.example.com;branch=z9hG4bK9")
    assert parse_message(req.to_bytes()).top_via.host == "x.example.com"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_raise_only_the_parse_error(data):
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    # Whatever parsed re-serializes to what was kept of it.
    assert parse_message(msg.to_bytes()).to_bytes() == msg.to_bytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([
    b"Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKx\r\n",
    b"X-A: 1\r\n", b"Subject: a,\r\n b\r\n", b"v: SIP/2.0/TCP [::1]:5060;branch=z9hG4bKy\r\n",
    b"Route: <sip:p.example.com;lr>\r\n", b"i: abc\r\n",
]), max_size=8), st.binary(max_size=30))
def test_parse_serialize_round_trip(extra, body):
    data = (b"OPTIONS sip:a@example.com SIP/2.0\r\n" + b"".join(extra)
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    msg = parse_message(data)
    assert msg.to_bytes() == data
    again = parse_message(msg.to_bytes())
    assert again.header_names() == msg.header_names()
    assert [again.header_all(n) for n in again.header_names()] == [
        msg.header_all(n) for n in msg.header_names()]
    assert again.body == body


def test_copy_is_independent_of_the_original():
    # A stateful proxy edits one copy per branch (RFC 3261 §16.6 step 1).
    m = parse_message(b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                      b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n"
                      b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    m.source = "somewhere"
    c = m.copy()
    c.set_ruri("sip:z@q")
    c.insert_via("SIP/2.0/UDP me;branch=z9hG4bKx")
    c.set_header("Max-Forwards", "69")
    assert (m.ruri, m.top_via.branch, m.max_forwards) == ("sip:a@b", "z9hG4bK1", 70)
    assert (c.ruri, c.top_via.branch, c.max_forwards) == ("sip:z@q", "z9hG4bKx", 69)
    assert c.source == "somewhere"
    assert m.to_bytes() == m.raw
