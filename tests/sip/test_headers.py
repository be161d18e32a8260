# SPDX-License-Identifier: Apache-2.0
"""Header grammar: RFC 3261 §7.3, §20, §25.1; RFC 3581; RFC 5118; RFC 4475 values.

Values marked with a file name are copied from the RFC 4475 / RFC 5118 torture messages
(folded lines kept as CRLF + whitespace, as a header value can still carry them).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import (
    COMPACT_FORMS,
    Challenge,
    ContactStar,
    Credentials,
    CSeq,
    NameAddr,
    Via,
    _parse_name_addr_full,
    _parse_via_full,
    canonical_key,
    format_params,
    parse_auth,
    parse_challenge,
    parse_contact_list,
    parse_cseq,
    parse_name_addr,
    parse_name_addr_list,
    parse_params,
    parse_uint,
    parse_via,
    quote_string,
    split_values,
)
from siprouter.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri, uri_equal


def raises_bad(reason: str, fn, *args, **kwargs) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason
    assert info.value.status_hint == 400
    return info.value


# --- names -------------------------------------------------------------------------------


class TestNames:
    @pytest.mark.parametrize("short,long", sorted(COMPACT_FORMS.items()))
    def test_compact_forms(self, short, long):
        assert canonical_key(short) == long
        assert canonical_key(short.upper()) == long
        assert canonical_key(long) == long

    def test_compact_form_table_rfc3261_7_3_3_and_later(self):
        assert COMPACT_FORMS == {
            "i": "call-id", "m": "contact", "e": "content-encoding", "l": "content-length",
            "c": "content-type", "f": "from", "s": "subject", "k": "supported", "t": "to",
            "v": "via", "o": "event", "u": "allow-events", "r": "refer-to",
            "b": "referred-by", "x": "session-expires", "y": "identity",
        }

    @pytest.mark.parametrize("name", ["Via", "VIA", "via", "ViA", "vIa", "v", "V"])
    def test_case_insensitive_rfc4475_longreq(self, name):
        assert canonical_key(name) == "via"

    def test_other_names(self):
        assert canonical_key("Max-Forwards") == "max-forwards"
        assert canonical_key("MaX-fOrWaRdS") == "max-forwards"  # wsinv
        assert canonical_key("X-Custom") == "x-custom"
        # esc02.dat: "C%6Fntact" is an extension header, not Contact (no escapes in names)
        assert canonical_key("C%6Fntact") == "c%6fntact"


# --- lists -------------------------------------------------------------------------------


class TestSplitValues:
    def test_plain(self):
        assert split_values("a, b ,c") == ["a", "b", "c"]

    def test_lws_and_folding_stripped(self):
        # semiuri.dat Accept
        value = ("application/sdp, application/pkcs7-mime,\r\n        multipart/mixed, "
                 "multipart/signed,\r\n        message/sip, message/sipfrag")
        assert split_values(value) == [
            "application/sdp", "application/pkcs7-mime", "multipart/mixed",
            "multipart/signed", "message/sip", "message/sipfrag"]

    def test_commas_in_quotes_and_angle_brackets(self):
        value = '"Watson, Thomas" <sip:a@b>, <sip:c,d@e;x=1>;p="1,2", <sip:f@g>'
        assert split_values(value) == [
            '"Watson, Thomas" <sip:a@b>', '<sip:c,d@e;x=1>;p="1,2"', "<sip:f@g>"]

    def test_quoted_pair_does_not_end_the_quote(self):
        assert split_values(r'"a\",b" <sip:x@y>, <sip:z@w>') == [
            r'"a\",b" <sip:x@y>', "<sip:z@w>"]
        assert split_values(r'a="x\\", b=c') == [r'a="x\\"', "b=c"]

    def test_empty_items_dropped(self):
        assert split_values(" , a,, b , ") == ["a", "b"]
        assert split_values("") == []

    def test_unterminated_quote_keeps_rest_together(self):
        assert split_values('"a, b') == ['"a, b']


class TestParams:
    def test_basic(self):
        assert parse_params(";a=b;C;d=E") == {"a": "b", "c": None, "d": "E"}
        assert parse_params("") == {}

    def test_lws_around_semi_and_equal(self):
        assert parse_params(" ;  a = b ;\r\n c ") == {"a": "b", "c": None}

    def test_quoted_values(self):
        assert parse_params(';a="x y";b="q\\"p\\\\"') == {"a": "x y", "b": 'q"p\\'}

    def test_host_values(self):
        assert parse_params(";received=[2001:db8::1];maddr=10.0.0.1") == {
            "received": "[2001:db8::1]", "maddr": "10.0.0.1"}

    def test_first_wins(self):
        assert parse_params(";tag=a;TAG=b") == {"tag": "a"}

    @pytest.mark.parametrize("text", [
        ";", ";;", ";=x", ";a=", ";a==b", ";a=b=c", "a=b", ";a b", ';a="b', ";a=<b>", ";a=b,c",
    ])
    def test_bad(self, text):
        raises_bad("Bad Parameter", parse_params, text)

    def test_format(self):
        assert format_params({"a": "b", "lr": None, "x": "two words", "e": "",
                              "r": "[::1]"}) == ';a=b;lr;x="two words";e="";r=[::1]'
        assert format_params({"q": 'a"b\\c'}) == ';q="a\\"b\\\\c"'

    def test_quote_string(self):
        assert quote_string("a b") == '"a b"'
        assert quote_string('a"b\\c\x07\td') == '"a\\"b\\\\c\\\x07\td"'
        for text in ("a\r\nb", "a\rb", "a\nb"):
            with pytest.raises(LocalProtocolError):
                quote_string(text)


# --- Via -----------------------------------------------------------------------------------


class TestVia:
    def test_common(self):
        (v,) = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport")
        assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "UDP", "10.0.0.1", 5060)
        assert v.params == {"branch": "z9hG4bK776asdhds", "rport": None}
        assert v.branch == "z9hG4bK776asdhds" and v.has_magic_cookie
        assert v.rport == "" and v.received is None and v.maddr is None and v.ttl is None
        assert v.raw == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport"
        assert v.sent_by == "10.0.0.1:5060"

    def test_rport_states_rfc3581(self):
        assert parse_via("SIP/2.0/UDP h;branch=z9hG4bKx")[0].rport is None
        assert parse_via("SIP/2.0/UDP h;rport;branch=z9hG4bKx")[0].rport == ""
        assert parse_via("SIP/2.0/UDP h;rport=5061;branch=z9hG4bKx")[0].rport == "5061"

    def test_received_maddr_ttl(self):
        (v,) = parse_via("SIP/2.0/UDP h;branch=z9hG4bKx;received=192.0.2.5;maddr=MC.Example.com"
                         ";ttl=16")
        assert v.received == "192.0.2.5" and v.maddr == "mc.example.com" and v.ttl == 16
        assert v.received_bare == "192.0.2.5"
        assert parse_via("SIP/2.0/UDP h")[0].received_bare is None

    def test_no_magic_cookie(self):
        # badbranch.dat: the magic cookie alone is still a token (and a cookie prefix)
        assert parse_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK")[0].has_magic_cookie
        assert not parse_via("SIP/2.0/UDP iftgw.example.com")[0].has_magic_cookie  # inv2543
        assert parse_via("SIP/2.0/UDP iftgw.example.com")[0].branch is None

    def test_host_lowercased_transport_uppercased(self):
        (v,) = parse_via("SIP/2.0/tcp Host.Example.COM;branch=z9hG4bKx")
        assert v.transport == "TCP" and v.host == "host.example.com"

    @pytest.mark.parametrize("transport", ["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "TLS-SCTP",
                                           "UNKNOWN"])
    def test_transports_rfc4475_transports(self, transport):
        assert parse_via(f"SIP/2.0/{transport} t4.example.com;branch=z9hG4bKa")[0].transport \
            == transport

    def test_other_protocol_version_parses_rfc4475_badvers(self):
        # The 505 for SIP/7.0 is the start line's business; the Via grammar allows it.
        assert parse_via("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw")[0].protocol == "SIP/7.0"

    def test_lws_everywhere_rfc4475_wsinv(self):
        (v,) = parse_via("SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw")
        assert (v.protocol, v.transport, v.host, v.branch) == (
            "SIP/2.0", "UDP", "192.0.2.2", "390skdjuw")

    def test_two_vias_with_lws_rfc4475_wsinv(self):
        value = ("SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8  ,"
                 "\r\n SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239")
        a, b = parse_via(value)
        assert (a.transport, a.host, a.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
        assert (b.transport, b.host, b.branch) == ("UDP", "192.168.255.111", "z9hG4bK30239")

    def test_lws_around_colon(self):
        # sent-by = host [ COLON port ]; COLON = SWS ":" SWS
        assert parse_via("SIP/2.0/UDP h : 5070 ;branch=z9hG4bKx")[0].port == 5070

    def test_protocol_name_normalised(self):
        assert parse_via("sip/2.0/udp h")[0].protocol == "SIP/2.0"

    def test_ipv6_sent_by_rfc5118(self):
        (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111")
        assert v.host == "[2001:db8::9:1]" and v.port == 6050 and v.host_bare == "2001:db8::9:1"
        (v,) = parse_via("SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19")
        assert v.host == "[::ffff:192.0.2.10]"

    def test_received_ipv6_without_brackets_rfc5118_4_5(self):
        (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
        assert v.received == "2001:db8::9:255" and v.branch == "z9hG4bKas3"
        assert v.received_bare == "2001:db8::9:255"

    def test_received_ipv6_with_brackets_rfc5118_4_5(self):
        (v,) = parse_via("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];"
                         "branch=z9hG4bKas3-111")
        assert v.received == "[2001:db8::9:255]"
        assert v.received_bare == "2001:db8::9:255"

    def test_received_ipv4_on_ipv6_sent_by_rfc5118_mult_ip_in_header(self):
        (v,) = parse_via("SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200")
        assert v.received == "192.0.2.200"

    def test_quoted_extension_param(self):
        (v,) = parse_via('SIP/2.0/UDP h;branch=z9hG4bKx;x="a, b"')
        assert v.params["x"] == "a, b"

    def test_many_vias_on_one_line(self):
        vias = parse_via(", ".join(f"SIP/2.0/TCP sip{i}.example.com" for i in range(33)))
        assert [v.host for v in vias] == [f"sip{i}.example.com" for i in range(33)]

    @pytest.mark.parametrize("value", [
        "SIP/2.0/UDP 192.0.2.15;;,;,,",  # badinv01.dat
        "SIP/2.0/UDP h;branch=z9hG4bKx,",
        ", SIP/2.0/UDP h",
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 UDP h",
        "SIP/2.0/UDPh",
        "SIP/2.0/UDP h:",
        "SIP/2.0/UDP h:65536",
        "SIP/2.0/UDP h:" + "1" * 5000,
        "SIP/2.0/UDP h junk",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h;branch",
        'SIP/2.0/UDP h;branch="z9hG4bK x"',
        "SIP/2.0/UDP h;branch=a:b",
        "SIP/2.0/UDP h;ttl=256",
        "SIP/2.0/UDP h;ttl=",
        "SIP/2.0/UDP h;ttl=x",
        "SIP/2.0/UDP h;maddr=a..b",
        "SIP/2.0/UDP h;maddr",
        "SIP/2.0/UDP h;received=host.example.com",
        "SIP/2.0/UDP h;received=2001:db8:::1",
        "SIP/2.0/UDP h;received=[192.0.2.1]",
        "SIP/2.0/UDP h;received=256.0.0.1",
        "SIP/2.0/UDP h;received",
        "SIP/2.0/UDP h;rport=x",
        "SIP/2.0/UDP h;rport=65536",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/UDP [2001:db8:::1]",
        "SIP/2.0/UDP a..b",
    ])
    def test_bad(self, value):
        raises_bad("Bad Via", parse_via, value)

    def test_build_and_print(self):
        v = Via("udp", "[2001:DB8::1]", 5060, {"branch": "z9hG4bK1", "rport": None})
        assert str(v) == "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport"
        assert v.raw == str(v)
        (back,) = parse_via(str(v))
        assert (back.transport, back.host, back.port, back.params) == (
            v.transport, v.host, v.port, v.params)
        with pytest.raises(LocalProtocolError):
            Via("UDP", "bad host")
        with pytest.raises(LocalProtocolError):
            Via("UDP", "h", 70000)
        with pytest.raises(LocalProtocolError):
            Via("UDP", "h", params={"ttl": "300"})
        with pytest.raises(LocalProtocolError):
            Via("UDP", "h", params={"received": "not-an-address"})


# --- name-addr ---------------------------------------------------------------------------


class TestNameAddr:
    def test_common(self):
        na = parse_name_addr('"Bob" <sip:bob@example.com>;tag=a73kszlfl')
        assert na.display_name == "Bob"
        assert isinstance(na.uri, SipUri) and na.uri.user == "bob"
        assert na.params == {"tag": "a73kszlfl"} and na.tag == "a73kszlfl"
        assert na.raw == '"Bob" <sip:bob@example.com>;tag=a73kszlfl'

    def test_no_display_name(self):
        na = parse_name_addr("<sip:fluffy@example.com>;tag=2fb0dcc9")  # mpart01.dat
        assert na.display_name is None and na.tag == "2fb0dcc9"

    def test_empty_quoted_display_name(self):
        assert parse_name_addr('"" <sip:a@b>').display_name == ""

    def test_addr_spec(self):
        na = parse_name_addr("sip:caller@example.net;tag=2234923")
        assert na.display_name is None and na.uri.host == "example.net" and na.tag == "2234923"

    def test_addr_spec_params_belong_to_header_rfc3261_20_10(self):
        # inv2543.dat To: without <>, user=phone is a header parameter
        na = parse_name_addr("sip:+16505552222@ss1.example.net;user=phone")
        assert na.params == {"user": "phone"} and na.uri.params == {}
        # ... and with <> it is a URI parameter
        na = parse_name_addr("<sip:+13035551111@ift.client.example.net;user=phone>")
        assert na.params == {} and na.uri.params == {"user": "phone"}

    def test_contact_param_placement_rfc4475_cparam01_cparam02(self):
        (c1,) = parse_contact_list("sip:+19725552222@gw1.example.net;unknownparam")
        assert c1.params == {"unknownparam": None} and c1.uri.params == {}
        (c2,) = parse_contact_list("<sip:+19725552222@gw1.example.net;unknownparam>")
        assert c2.params == {} and c2.uri.params == {"unknownparam": None}

    def test_addr_spec_with_headers_must_be_bracketed_rfc4475_regbadct(self):
        raises_bad("Bad Contact", parse_contact_list,
                   "sip:user@example.com?Route=%3Csip:sip.example.com%3E")

    def test_bracketed_headers_are_fine_rfc4475_regescrt(self):
        (c,) = parse_contact_list("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>")
        assert c.uri.headers == {"Route": "<sip:sip.example.com>"}

    def test_lws_before_params_rfc4475_wsinv_to(self):
        na = parse_name_addr("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
        assert na.uri.host == "chair-dnrc.example.com" and na.tag == "1918181833n"

    def test_quoted_pairs_and_folding_rfc4475_wsinv_from(self):
        na = parse_name_addr('"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
                             "  ;\r\n  tag = 98asjd8")
        assert na.display_name == 'J Rosenberg \\"'
        assert na.tag == "98asjd8"

    def test_quoted_pairs_of_controls_rfc4475_intmeth_to(self):
        na = parse_name_addr('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" '
                             "<sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>")
        assert na.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
        assert na.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"

    def test_token_display_name_and_utf8_param_rfc4475_intmeth_from(self):
        na = parse_name_addr("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;"
                             "fromParam''~+*_!.-%=\"работающий\";tag=_token~1'+`*%!-.")
        assert na.display_name == "token1~` token2'+_ token3*%!.-"
        assert na.params == {"fromparam''~+*_!.-%": "работающий", "tag": "_token~1'+`*%!-."}

    def test_no_lws_before_laquot_rfc4475_lwsdisp(self):
        na = parse_name_addr("caller<sip:caller@example.com>;tag=323")
        assert na.display_name == "caller" and na.tag == "323"

    def test_escaped_uri_rfc4475_esc01(self):
        assert parse_name_addr("<sip:I%20have%20spaces@example.net>;tag=938").uri.user == \
            "I have spaces"
        assert parse_name_addr("sip:%75se%72@example.com").uri.user == "user"

    def test_long_values_rfc4475_longreq(self):
        value = ('"I have a user name of ' + "extreme" * 10 + ' proportion"<sip:user@example.com'
                 ":6000;unknownparam1=very" + "long" * 20 + "value>")
        na = parse_name_addr(value)
        assert na.display_name.startswith("I have a user name of extremeextreme")
        assert na.uri.port == 6000

    def test_other_schemes_rfc4475_unksm2(self):
        assert isinstance(parse_name_addr("isbn:2983792873").uri, AbsoluteUri)
        na = parse_name_addr("<http://www.example.com>;tag=3234233")
        assert isinstance(na.uri, AbsoluteUri) and na.tag == "3234233"
        assert isinstance(parse_name_addr("<tel:+1-201-555-0123>").uri, TelUri)

    def test_ipv6_rfc5118(self):
        na = parse_name_addr('"T. desk phone" <sip:ted@[::ffff:192.0.2.2]>')
        assert na.uri.host == "[::ffff:192.0.2.2]"
        raises_bad("Bad Address", parse_name_addr, "sip:user@[2001:db8:::192.0.2.1]")

    def test_quoted_param_containing_angle_bracket(self):
        na = parse_name_addr('sip:a@b;x="<y>"')
        assert na.display_name is None and na.params == {"x": "<y>"}

    @pytest.mark.parametrize("value", [
        '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec.dat
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # baddn.dat
        '"Mr. J. User <sip:j.user@example.com>',  # quotbal.dat
        "alan@jasomi.com",  # test.dat: no scheme
        "",
        "   ",
        "<sip:a@b",
        "<>",
        "<sip:a@b>>",
        "<sip:a@b> junk",
        '"a" junk <sip:a@b>',
    ])
    def test_bad(self, value):
        raises_bad("Bad Address", parse_name_addr, value)

    def test_reason_names_the_header(self):
        raises_bad("Bad From", parse_name_addr, "Bell, Alexander <sip:a@b>", what="From")

    def test_bad_params(self):
        raises_bad("Bad Contact", parse_contact_list, '"Joe" <sip:joe@example.org>;;;;')  # badinv01
        raises_bad("Bad Address", parse_name_addr, "<sip:a@b>;tag=")
        raises_bad("Bad Address", parse_name_addr, "<sip:a@b>;tag=a b")

    def test_valueless_param(self):
        assert parse_name_addr("<sip:a@b>;tag").params == {"tag": None}

    def test_build_and_print(self):
        na = NameAddr(parse_uri("sip:bob@example.com"), 'Bob "B"', {"tag": "x"})
        assert str(na) == '"Bob \\"B\\"" <sip:bob@example.com>;tag=x'
        back = parse_name_addr(str(na))
        assert back.display_name == 'Bob "B"' and back.tag == "x"
        assert str(NameAddr(parse_uri("sip:a@b"))) == "<sip:a@b>"


class TestLists:
    def test_route_list(self):
        routes = parse_name_addr_list("<sip:p1.example.com;lr>, <sip:p2.example.com;lr>,"
                                      "\r\n <sip:p3.example.com;lr>;x=\"a,b\"")
        assert [r.uri.host for r in routes] == ["p1.example.com", "p2.example.com",
                                                "p3.example.com"]
        assert all(r.uri.lr for r in routes)

    def test_route_rfc4475_wsinv(self):
        (r,) = parse_name_addr_list(
            "<sip:services.example.com;lr;unknownwith=value;unknown-no-value>")
        assert r.uri.lr and r.uri.params["unknownwith"] == "value"

    def test_comma_inside_uri_and_display_name(self):
        items = parse_name_addr_list('"Watson, Thomas" <sip:a,b@example.org>, <sip:c@d>')
        assert items[0].display_name == "Watson, Thomas" and items[0].uri.user == "a,b"
        assert items[1].uri.user == "c"

    def test_empty_element(self):
        raises_bad("Bad Address", parse_name_addr_list, "<sip:a@b>,,<sip:c@d>")
        raises_bad("Bad Address", parse_name_addr_list, "<sip:a@b>,")


class TestContact:
    def test_star(self):
        assert parse_contact_list("*") == [ContactStar()]
        assert parse_contact_list(" * ") == [ContactStar()]
        assert str(ContactStar()) == "*"

    def test_star_with_others_is_bad(self):
        raises_bad("Bad Contact", parse_contact_list, "*, <sip:a@b>")
        raises_bad("Bad Contact", parse_contact_list, "*;expires=0")

    def test_params_rfc4475_wsinv(self):
        (c,) = parse_contact_list('"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
                                  "      newvalue ;\r\n  secondparam ; q = 0.33")
        assert c.display_name == 'Quoted string ""'
        assert c.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
        assert c.q == 0.33

    def test_folded_value_rfc4475_esc01(self):
        (c,) = parse_contact_list(
            "\r\n  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>")
        assert c.uri.user == "caller" and c.uri.params == {"lr": None, "name": "value%41"}

    def test_several(self):
        cs = parse_contact_list('<sip:a@h1>;q=0.7;expires=3600, "B" <sip:b@h2>;q=1.0')
        assert [(c.uri.user, c.q, c.expires) for c in cs] == [("a", 0.7, 3600), ("b", 1.0, None)]

    @pytest.mark.parametrize("q,expected", [("0", 0.0), ("0.", 0.0), ("0.5", 0.5), ("0.123", 0.123),
                                             ("1", 1.0), ("1.000", 1.0)])
    def test_qvalues(self, q, expected):
        assert parse_contact_list(f"<sip:a@b>;q={q}")[0].q == expected

    @pytest.mark.parametrize("q", ["1.5", "2", "0.1234", "1.001", "-0.1", ".5", "x", ""])
    def test_bad_qvalues(self, q):
        raises_bad("Bad Contact", parse_contact_list, f"<sip:a@b>;q={q}" if q else "<sip:a@b>;q")

    def test_expires(self):
        assert parse_contact_list("<sip:a@b>;expires=0")[0].expires == 0
        assert parse_contact_list("<sip:a@b>;expires=4294967295")[0].expires == 2**32 - 1
        raises_bad("Bad Contact", parse_contact_list, "<sip:a@b>;expires=soon")

    def test_overlarge_expires_reads_as_absent_rfc4475_scalar02(self):
        (c,) = parse_contact_list("<sip:user@host129.example.com>\r\n  ;expires=280297596632815")
        assert c.params["expires"] == "280297596632815"
        assert c.expires is None

    def test_escaped_nul_rfc4475_escnull(self):
        assert parse_contact_list("<sip:%00@host5.example.com>")[0].uri.user == "\x00"


# --- CSeq and numbers -------------------------------------------------------------------


class TestCSeq:
    def test_common(self):
        c = parse_cseq("314159 INVITE")
        assert (c.seq, c.method) == (314159, "INVITE")
        assert str(c) == "314159 INVITE" and c == CSeq(314159, "INVITE")

    def test_lws_and_leading_zeros_rfc4475_wsinv(self):
        assert parse_cseq("0009\r\n  INVITE") == CSeq(9, "INVITE")

    def test_method_is_case_sensitive_token_rfc4475_intmeth(self):
        assert parse_cseq("139122385 !interesting-Method0123456789_*+`.%indeed'~").method == \
            "!interesting-Method0123456789_*+`.%indeed'~"
        assert parse_cseq("1 invite").method == "invite"

    def test_bounds_rfc3261_8_1_1_5(self):
        assert parse_cseq("0 ACK").seq == 0
        assert parse_cseq("2147483647 BYE").seq == 2**31 - 1
        assert parse_cseq("00000000000000002147483647 BYE").seq == 2**31 - 1
        raises_bad("Bad CSeq", parse_cseq, "2147483648 BYE")
        raises_bad("Bad CSeq", parse_cseq, "4294967296 BYE")

    @pytest.mark.parametrize("value", [
        "36893488147419103232 REGISTER",  # scalar02.dat
        "9292394834772304023312 OPTIONS",  # scalarlg.dat
        "1" * 5000 + " INVITE",
        "", "INVITE", "1", "1 ", "-1 INVITE", "1 IN VITE", "1 INV<ITE", "١ INVITE", "1INVITE",
        "0x10 INVITE",
    ])
    def test_bad(self, value):
        raises_bad("Bad CSeq", parse_cseq, value)

    def test_build_checks(self):
        with pytest.raises(LocalProtocolError):
            CSeq(2**31, "INVITE")
        with pytest.raises(LocalProtocolError):
            CSeq(1, "IN VITE")


class TestUint:
    def test_values(self):
        assert parse_uint("70", "Max-Forwards") == 70
        assert parse_uint("0068", "Max-Forwards") == 68  # wsinv.dat
        assert parse_uint(" 150 ", "Content-Length") == 150
        assert parse_uint("4294967295", "Expires") == 2**32 - 1
        assert parse_uint("000000000000000000004294967295", "Expires") == 2**32 - 1

    def test_maximum(self):
        assert parse_uint("255", "Max-Forwards", maximum=255) == 255
        raises_bad("Bad Max-Forwards", parse_uint, "256", "Max-Forwards", maximum=255)
        raises_bad("Bad Expires", parse_uint, "4294967296", "Expires")

    @pytest.mark.parametrize("value", [
        "-999",  # ncl.dat
        "1" + "0" * 100,  # scalar02.dat Expires
        "9" * 5000,  # no ValueError from int()
        "", " ", "1 2", "1.5", "0x10", "+1", "١٢", "²",
    ])
    def test_bad(self, value):
        raises_bad("Bad Content-Length", parse_uint, value, "Content-Length")


# --- auth ----------------------------------------------------------------------------------


class TestAuth:
    def test_digest_credentials(self):
        c = parse_auth('Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f6'
                       '00bfb0c093", uri="sip:bob@biloxi.com", qop=auth, nc=00000001, '
                       'cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
                       'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
        assert isinstance(c, Credentials) and c.scheme == "Digest" and c.is_digest
        assert c.params["username"] == "bob" and c.params["uri"] == "sip:bob@biloxi.com"
        assert c.params["qop"] == "auth" and c.params["nc"] == "00000001"
        assert len(c.params) == 9

    def test_names_lowercased_quotes_resolved_lws(self):
        c = parse_auth('Digest\r\n  UserName = "a \\"b\\" \\\\ c" ,\r\n Realm=x')
        assert c.params == {"username": 'a "b" \\ c', "realm": "x"}

    def test_unknown_scheme_rfc4475_regaut01(self):
        c = parse_auth("NoOneKnowsThisScheme opaque-data=here")
        assert c.scheme == "NoOneKnowsThisScheme" and not c.is_digest
        assert c.params == {"opaque-data": "here"}

    def test_challenge(self):
        ch = parse_challenge('Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth",'
                             ' nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, '
                             "algorithm=MD5")
        assert isinstance(ch, Challenge)
        assert ch.params["opaque"] == "" and ch.params["stale"] == "FALSE"

    def test_comma_inside_quotes(self):
        assert parse_auth('Digest realm="a, b", nonce="x"').params["realm"] == "a, b"

    @pytest.mark.parametrize("value", [
        "", "Digest", "Digest ", 'Digest username="bob",', 'Digest a=b,,c=d', "Digest a=b c=d",
        "Digest a", 'Digest a="b', "Digest a=<b>", "Digest =b", 'Digest realm="x", realm="y"',
        'Digest response="1", RESPONSE="2"',
    ])
    def test_bad(self, value):
        raises_bad("Bad Authorization", parse_auth, value)

    def test_reason_names_the_header(self):
        raises_bad("Bad Proxy-Authenticate", parse_challenge, "Digest", what="Proxy-Authenticate")

    def test_print_and_parse_back(self):
        c = Credentials("Digest", {"username": "bob", "algorithm": "MD5", "nc": "00000001",
                                   "uri": "sip:a@b"})
        assert str(c) == 'Digest username="bob", algorithm=MD5, nc=00000001, uri="sip:a@b"'
        assert parse_auth(str(c)).params == c.params


# --- torture files --------------------------------------------------------------------------

_REPO = Path(__file__).resolve().parents[2]
TORTURE_DIR = Path(os.environ.get("SIPROUTER_TORTURE_DIR",
                                  _REPO / "tests" / "data" / "sip-torture"))

# Header values in the RFC 4475 / RFC 5118 files that the grammar must reject, with the
# reason: everything else in those files that these functions read must parse.
EXPECTED_BAD = {
    ("badaspec.dat", "To"): "Bad Address",  # RFC 4475 §3.1.2.14: spaces inside <>
    ("baddn.dat", "From"): "Bad Address",  # §3.1.2.15: unquoted "," in a display name
    ("baddn.dat", "To"): "Bad Address",
    ("badinv01.dat", "Via"): "Bad Via",  # §3.1.2.1: ";;,;,,"
    ("badinv01.dat", "Contact"): "Bad Contact",  # ";;;;"
    ("quotbal.dat", "To"): "Bad Address",  # §3.1.2.6: unterminated quoted string
    ("regbadct.dat", "Contact"): "Bad Contact",  # §3.1.2.13: "?" outside <>
    ("scalar02.dat", "CSeq"): "Bad CSeq",  # §3.1.2.4: CSeq >= 2**31
    ("scalar02.dat", "Expires"): "Bad Expires",  # above 2**32-1
    ("scalarlg.dat", "CSeq"): "Bad CSeq",  # §3.1.2.5
    ("ncl.dat", "Content-Length"): "Bad Content-Length",  # §3.1.2.3: negative
    ("test.dat", "TO"): "Bad Address",  # not in the RFC text: no URI scheme
    ("test.dat", "From"): "Bad Address",
    ("ipv6-bug-abnf-3-colons.dat", "To"): "Bad Address",  # RFC 5118 §4.10
}


def _header_fields(path: Path) -> list[tuple[str, str]]:
    data = path.read_bytes().replace(b"\r\n", b"\n")
    head = data.split(b"\n\n", 1)[0].decode("utf-8", "surrogateescape")
    fields: list[list[str]] = []
    for line in head.split("\n")[1:]:
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += "\r\n" + line  # keep folding: values may carry it
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append([name.strip(" \t"), value])
    return [(name, value.strip(" \t\r\n")) for name, value in fields]


READERS = {
    "via": parse_via,
    "from": lambda v: parse_name_addr(v, "Address"),
    "to": lambda v: parse_name_addr(v, "Address"),
    "contact": parse_contact_list,
    "route": parse_name_addr_list,
    "record-route": parse_name_addr_list,
    "cseq": parse_cseq,
    "max-forwards": lambda v: parse_uint(v, "Max-Forwards"),
    "content-length": lambda v: parse_uint(v, "Content-Length"),
    "expires": lambda v: parse_uint(v, "Expires"),
    "authorization": parse_auth,
}

TORTURE_FILES = sorted([*TORTURE_DIR.glob("rfc4475/*.dat"), *TORTURE_DIR.glob("rfc5118/wire/*.dat")])


@pytest.mark.skipif(not TORTURE_FILES, reason=f"torture messages not found at {TORTURE_DIR}")
@pytest.mark.parametrize("path", TORTURE_FILES, ids=lambda p: p.name)
def test_torture_header_values(path):
    seen = 0
    for name, value in _header_fields(path):
        reader = READERS.get(canonical_key(name))
        if reader is None:
            continue
        seen += 1
        reason = EXPECTED_BAD.get((path.name, name))
        if reason is None:
            reader(value)
        else:
            raises_bad(reason, reader, value)
    assert seen > 0


def test_expected_bad_names_real_files():
    if not TORTURE_FILES:
        pytest.skip("torture messages not found")
    names = {p.name for p in TORTURE_FILES}
    assert {f for f, _ in EXPECTED_BAD} <= names


# --- fast paths agree with the full grammar ----------------------------------------------


@pytest.mark.parametrize("value", [
    "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport",
    "SIP/2.0/TCP Host.Example.com;branch=z9hG4bKx;received=192.0.2.1;ttl=3",
    "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKx;rport=1234;maddr=h",
    "SIP/2.0/WSS h;x;branch=z9hG4bKx",
])
def test_via_fast_path_matches_full_grammar(value):
    (fast,) = parse_via(value)
    full = _parse_via_full(value, value)
    assert (fast.protocol, fast.transport, fast.host, fast.port, fast.params, fast.raw) == (
        full.protocol, full.transport, full.host, full.port, full.params, full.raw)


@pytest.mark.parametrize("value", [
    '"Bob" <sip:bob@example.com>;tag=a73kszlfl',
    '"Bob"<sip:bob@example.com>;tag=a73kszlfl;x',
    "<sip:bob@example.com;transport=tcp>;expires=60;q=0.5",
    "sip:bob@example.com;tag=1",
    "sip:bob@example.com",
    '"" <tel:+1234>',
])
def test_name_addr_fast_path_matches_full_grammar(value):
    fast = parse_name_addr(value)
    full = _parse_name_addr_full(value, "Address")
    assert (fast.display_name, str(fast.uri), fast.params, fast.raw) == (
        full.display_name, str(full.uri), full.params, full.raw)


# --- hostile input --------------------------------------------------------------------------


@pytest.mark.parametrize("fn,value", [
    (parse_via, "SIP/2.0/UDP h" + ";a=b" * 20000 + ";"),
    (parse_via, "SIP/2.0/UDP h, " * 5000 + ","),
    (parse_name_addr, '"' + "\\a" * 20000),
    (parse_name_addr, "a " * 20000 + "<"),
    (parse_name_addr_list, '"a",' * 20000 + '"'),
    (parse_auth, "Digest " + 'a="b", ' * 5000 + "c"),
    (parse_cseq, "1 " + "A" * 50000 + " B"),
    (parse_params, ";a" * 30000 + '="'),
], ids=lambda x: x.__name__ if callable(x) else f"{x[:12]!r}...")
def test_long_hostile_input_is_rejected_quickly(fn, value):
    start = time.perf_counter()
    with pytest.raises(SipParseError):
        fn(value)
    assert time.perf_counter() - start < 1.0


# --- property tests ----------------------------------------------------------------------

SIP_ALPHABET = "SIP/2.0UDPTCPsip:@;=?&%[]<>\"\\,.+-_!~*'() \t\r\n0123456789abcdefz9hG4bK"
any_text = st.one_of(st.text(max_size=80), st.text(alphabet=SIP_ALPHABET, max_size=80))

PARSERS = [
    parse_via, parse_name_addr, parse_name_addr_list, parse_contact_list, parse_cseq,
    lambda v: parse_uint(v, "Expires"), parse_auth, parse_challenge, parse_params,
]


@pytest.mark.parametrize("parse", PARSERS)
@given(text=any_text)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow,
                                                   HealthCheck.function_scoped_fixture])
def test_random_text_raises_only_the_parse_error(parse, text):
    try:
        parse(text)
    except SipParseError as exc:
        assert exc.reason.startswith("Bad ")
        assert exc.status_hint == 400


@given(st.lists(any_text, max_size=4).map(", ".join))
def test_split_values_never_raises(text):
    items = split_values(text)
    assert all(item and item == item.strip(" \t\r\n") for item in items)


# Whatever a quoted-string can carry: anything but CR and LF (controls go as quoted-pairs).
QUOTABLE = st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n")
tokens = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
lower_tokens = tokens.map(str.lower)
params_strategy = st.dictionaries(
    lower_tokens,
    st.none() | tokens | st.text(QUOTABLE, max_size=10),
    max_size=4)


@given(params_strategy)
def test_params_round_trip(params):
    assert parse_params(format_params(params)) == params


hosts = st.one_of(
    st.from_regex(r"[a-z](?:[a-z0-9-]{0,6}[a-z0-9])?(?:\.[a-z]{1,5}){0,2}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)


@given(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "X-NEW"]), hosts,
       st.none() | st.integers(0, 65535),
       st.dictionaries(lower_tokens.filter(lambda n: n not in
                                           {"branch", "rport", "ttl", "maddr", "received"}),
                       st.none() | tokens, max_size=3),
       tokens)
def test_via_round_trip(transport, host, port, params, branch):
    params = {"branch": "z9hG4bK" + branch, **params}
    via = Via(transport, host, port, params)
    (back,) = parse_via(str(via))
    assert (back.protocol, back.transport, back.host, back.port, back.params) == (
        via.protocol, via.transport, via.host, via.port, via.params)
    (full,) = [_parse_via_full(str(via), str(via))]
    assert (full.transport, full.host, full.port, full.params) == (
        back.transport, back.host, back.port, back.params)


display_names = st.none() | st.text(QUOTABLE, max_size=12)
uris = st.builds(lambda user, host: parse_uri(f"sip:{user}@{host}"),
                 st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), hosts)


@given(display_names, uris, params_strategy)
def test_name_addr_round_trip(display, uri, params):
    na = NameAddr(uri, display, params)
    back = parse_name_addr(str(na))
    assert back.display_name == display
    assert uri_equal(back.uri, uri) and str(back.uri) == str(uri)
    assert back.params == params
    (listed,) = parse_name_addr_list(str(na))
    assert listed.params == params


@given(st.lists(st.tuples(display_names, uris), min_size=1, max_size=4))
def test_name_addr_list_round_trip(items):
    value = ", ".join(str(NameAddr(uri, display)) for display, uri in items)
    back = parse_name_addr_list(value)
    assert [(b.display_name, str(b.uri)) for b in back] == [(d, str(u)) for d, u in items]


@given(st.integers(0, 2**31 - 1), tokens)
def test_cseq_round_trip(seq, method):
    assert parse_cseq(str(CSeq(seq, method))) == CSeq(seq, method)


@given(st.sampled_from(["Digest", "Basic", "X-Scheme"]),
       st.dictionaries(lower_tokens, tokens | st.text(
           QUOTABLE, max_size=10), min_size=1,
           max_size=5))
def test_auth_round_trip(scheme, params):
    assert parse_auth(str(Credentials(scheme, params))).params == params
