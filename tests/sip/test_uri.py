# SPDX-License-Identifier: Apache-2.0
"""SIP, SIPS, tel and opaque URIs: RFC 3261 §19.1 / §25.1, RFC 3966, RFC 5118, RFC 5954.

The torture cases quote values from RFC 4475 §3 and RFC 5118 §4 (file names given).
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.uri import (
    AbsoluteUri,
    SipUri,
    TelUri,
    escape,
    parse_uri,
    unescape,
    uri_equal,
)

BAD_URI = "Bad URI"


def bad(text: str) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.reason == BAD_URI
    assert info.value.status_hint == 400
    return info.value


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


class TestSipUriParts:
    def test_common_uri(self):
        u = sip("sip:bob@example.com:5060;transport=udp")
        assert (u.scheme, u.user, u.password, u.host, u.port) == (
            "sip", "bob", None, "example.com", 5060)
        assert u.params == {"transport": "udp"}
        assert u.headers == {}
        assert u.raw == "sip:bob@example.com:5060;transport=udp"

    def test_scheme_and_host_are_lowercased_user_is_not(self):
        u = sip("SIPS:Alice@AtLanTa.CoM")
        assert u.scheme == "sips"
        assert u.host == "atlanta.com"
        assert u.user == "Alice"
        assert u.secure

    def test_no_userinfo(self):
        u = sip("sip:10.0.0.1:5060;lr")
        assert u.user is None and u.password is None
        assert u.host == "10.0.0.1" and u.port == 5060 and u.lr

    def test_password(self):
        u = sip("sip:alice:secretword@atlanta.com;transport=tcp")
        assert u.user == "alice" and u.password == "secretword"

    def test_empty_password_is_allowed(self):
        # password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
        assert sip("sip:alice:@atlanta.com").password == ""

    def test_telephone_subscriber_in_user(self):
        u = sip("sip:+1-212-555-1212:1234@gateway.com;user=phone")
        assert u.user == "+1-212-555-1212" and u.password == "1234"
        assert u.user_param == "phone"

    def test_semicolon_in_user_part_rfc4475_semiuri(self):
        # RFC 4475 §3.1.1.9 semiuri.dat: the user part is "user;par=u@example.net".
        u = sip("sip:user;par=u%40example.net@example.com")
        assert u.user == "user;par=u@example.net"
        assert u.host == "example.com"
        assert u.params == {}

    def test_unusual_user_and_password_rfc4475_intmeth(self):
        # RFC 4475 §3.1.1.2 intmeth.dat Request-URI.
        text = ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo"
                "~d_too.(doesn't-it)@example.com")
        u = sip(text)
        assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        assert u.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
        assert u.host == "example.com"
        assert str(u) == text

    def test_long_values_rfc4475_longreq(self):
        text = ("sip:user@example.com:6000;unknownparam1=very" + "long" * 20 + "value;"
                "longparamname" + "name" * 25 + "=shortvalue;very" + "long" * 25 +
                "ParameterNameWithNoValue")
        u = sip(text)
        assert u.port == 6000
        assert u.params["longparamname" + "name" * 25] == "shortvalue"
        assert u.params["very" + "long" * 25 + "parameternamewithnovalue"] is None


class TestEscapes:
    """§19.1.2 / §19.1.4: escapes are resolved where the grammar allows them."""

    def test_escaped_user_rfc4475_esc01_request_uri(self):
        # esc01.dat: the user part is "sips:user@example.com", the host example.net.
        u = sip("sip:sips%3Auser%40example.com@example.net")
        assert u.user == "sips:user@example.com"
        assert u.host == "example.net"

    def test_escaped_unreserved_equals_plain_rfc4475_esc01_to(self):
        u = sip("sip:%75se%72@example.com")
        assert u.user == "user"
        assert uri_equal(u, sip("sip:user@example.com"))

    def test_escaped_param_names_and_values_rfc4475_esc01_contact(self):
        # "%6C%72" is "lr"; "n%61me=v%61lue%25%34%31" is name=value%41 (one level only).
        u = sip("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31")
        assert u.user == "caller"
        assert u.lr
        assert u.params == {"lr": None, "name": "value%41"}

    def test_escaped_nul_rfc4475_escnull(self):
        assert sip("sip:null-%00-null@example.com").user == "null-\x00-null"
        assert sip("sip:%00%00@host5.example.com").user == "\x00\x00"

    def test_escaped_spaces(self):
        assert sip("sip:I%20have%20spaces@example.net").user == "I have spaces"

    def test_escaped_header_rfc4475_escruri(self):
        u = sip("sip:user@example.com?Route=%3Csip:example.com%3E")
        assert u.headers == {"Route": "<sip:example.com>"}
        assert u.params == {}

    def test_non_utf8_escape_survives(self):
        u = sip("sip:%FF%FE@example.com")
        assert escape(u.user, frozenset()) == "%FF%FE"
        assert sip(str(u.replace(port=1))).user == u.user

    @pytest.mark.parametrize("text", [
        "sip:%zz@example.com",
        "sip:a%4@example.com",
        "sip:a@example.com;x=%",
        "sip:a@example.com?h=%g1",
    ])
    def test_bad_escape(self, text):
        bad(text)

    def test_escape_unescape(self):
        assert escape("a b;c") == "a%20b%3Bc"
        assert unescape("a%20b%3Bc") == "a b;c"
        assert unescape(escape("é\udcff%")) == "é\udcff%"
        with pytest.raises(LocalProtocolError):
            escape("\ud800")


class TestHosts:
    @pytest.mark.parametrize("host", [
        "example.com", "example.com.", "a", "a-b.example.com", "1and1.com", "x1",
        "host_1.example.com",  # liberal: "_" inside labels
        "192.0.2.1", "255.255.255.255", "0.0.0.0", "010.000.002.001",
    ])
    def test_good_hosts(self, host):
        assert sip(f"sip:u@{host}").host == host.lower()

    @pytest.mark.parametrize("host", [
        "a..b", "-a.com", "a-.com", ".a.com", "256.1.1.1", "1.2.3", "1.2.3.4.5",
        "example.123", "ex ample.com", "exa!mple.com", "",
    ])
    def test_bad_hosts(self, host):
        # §25.1: labels are alphanum with inner "-"; the last label starts with a letter,
        # so an all-digit name must be an IPv4 address (octets 0-255, RFC 3986 §3.2.2).
        bad(f"sip:u@{host}")

    def test_host_is_ip_and_host_bare(self):
        assert sip("sip:10.0.0.1").host_is_ip
        assert not sip("sip:example.com").host_is_ip
        v6 = sip("sip:[2001:db8::10]:5070")
        assert v6.host_is_ip and v6.host == "[2001:db8::10]" and v6.host_bare == "2001:db8::10"
        assert sip("sip:example.com").host_bare == "example.com"
        assert v6.hostport == "[2001:db8::10]:5070"


class TestIPv6:
    """RFC 5118 §4 and RFC 5954 §4.1."""

    def test_valid_reference_rfc5118_ipv6_good(self):
        u = sip("sip:[2001:db8::10]")
        assert u.host == "[2001:db8::10]" and u.port is None

    def test_port_ambiguous_rfc5118_4_3(self):
        # "[2001:db8::10:5070]" is an IPv6 address, not an address and a port.
        u = sip("sip:[2001:db8::10:5070]")
        assert u.host == "[2001:db8::10:5070]" and u.port is None

    def test_port_unambiguous_rfc5118_4_4(self):
        u = sip("sip:[2001:db8::10]:5070")
        assert u.host == "[2001:db8::10]" and u.port == 5070

    def test_no_brackets_rfc5118_4_2_ipv6_bad(self):
        bad("sip:2001:db8::10")

    def test_three_colons_rfc5118_4_10(self):
        bad("sip:user@[2001:db8:::192.0.2.1]")

    def test_two_colons_with_ipv4_tail_rfc5118_4_10(self):
        assert sip("sip:user@[2001:db8::192.0.2.1]").host == "[2001:db8::192.0.2.1]"

    def test_ipv4_mapped_rfc5118_4_9(self):
        assert sip("sip:ted@[::ffff:192.0.2.2]").host_bare == "::ffff:192.0.2.2"

    def test_case_lowered(self):
        assert sip("sip:[2001:DB8::A]").host == "[2001:db8::a]"

    @pytest.mark.parametrize("text", [
        "sip:[]", "sip:[2001:db8::10", "sip:2001:db8::10]", "sip:[2001:db8::10%eth0]",
        "sip:[1:2:3:4:5:6:7:8:9]", "sip:[12345::1]", "sip:[::1]]",
    ])
    def test_bad_references(self, text):
        bad(text)

    def test_ipv6_compares_as_address_rfc5954(self):
        assert uri_equal(sip("sip:[2001:db8::10]"), sip("sip:[2001:DB8:0:0::10]"))


class TestPorts:
    @pytest.mark.parametrize("text,port", [
        ("sip:h:0", 0), ("sip:h:65535", 65535), ("sip:h:05060", 5060),
        ("sip:h:000000000005060", 5060),
    ])
    def test_ports(self, text, port):
        assert sip(text).port == port

    @pytest.mark.parametrize("text", [
        "sip:h:65536", "sip:h:99999999999999999999999", "sip:h:", "sip:h:-1", "sip:h:5o60",
        "sip:h:" + "9" * 5000,  # no ValueError from int() on a 5000-digit string
    ])
    def test_bad_ports(self, text):
        bad(text)


class TestParameters:
    def test_defaults_and_views(self):
        u = sip("sip:alice@atlanta.com")
        assert u.transport == "udp" and not u.lr and u.maddr is None and u.ttl is None
        assert u.user_param is None and u.method_param is None
        assert sip("sips:alice@atlanta.com").transport == "tcp"

    def test_views(self):
        u = sip("sip:a@h;TRANSPORT=TCP;maddr=239.255.255.1;ttl=15;user=IP;method=REGISTER;lr")
        assert u.transport == "tcp"
        assert u.maddr == "239.255.255.1"
        assert u.ttl == 15
        assert u.user_param == "ip"
        assert u.method_param == "REGISTER"
        assert u.lr

    def test_lr_with_value_counts(self):
        assert sip("sip:p.example.com;lr=on").lr

    def test_names_lowercased_values_kept(self):
        assert sip("sip:h;Foo=BaR").params == {"foo": "BaR"}

    def test_unknown_params_kept_rfc4475_wsinv_route(self):
        u = sip("sip:services.example.com;lr;unknownwith=value;unknown-no-value")
        assert u.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}

    def test_first_of_repeated_name_wins(self):
        assert sip("sip:h;a=1;A=2").params == {"a": "1"}

    def test_param_chars(self):
        # paramchar includes "[" "]" "/" ":" "&" "+" "$"
        assert sip("sip:h;x=[a]/b:c&d+e$f").params == {"x": "[a]/b:c&d+e$f"}

    @pytest.mark.parametrize("text", [
        "sip:h;", "sip:h;;lr", "sip:h;=x", "sip:h;a=", "sip:h;a=b=c", "sip:h;a b",
        "sip:h;a=<b>", 'sip:h;a="b"',
        "sip:user@example.com; lr",  # RFC 4475 lwsruri: no LWS inside a URI
    ])
    def test_bad_params(self, text):
        bad(text)

    def test_headers(self):
        u = sip("sip:alice@atlanta.com?subject=project%20x&priority=urgent&empty=")
        assert u.headers == {"subject": "project x", "priority": "urgent", "empty": ""}

    @pytest.mark.parametrize("text", [
        "sip:a@h?", "sip:a@h?x", "sip:a@h?=v", "sip:a@h?a=b&", "sip:a@h?a=b&&c=d",
        "sip:a@h?a=b?c;d",
    ])
    def test_bad_headers(self, text):
        bad(text)


class TestRejected:
    @pytest.mark.parametrize("text", [
        "", "sip", "sip:", ":x", "sip:@example.com", "sip:a@", "sip:a@b@c",
        " sip:a@example.com", "sip:a@example.com ", "sip:a b@example.com",
        "<sip:user@example.com>",  # RFC 4475 ltgtruri: no <> in a Request-URI
        "sip:a@example.com\r\n", "sip:\x00@example.com", "sip:bob@exämple.com",
    ])
    def test_not_uris(self, text):
        bad(text)

    def test_detail_is_bounded(self):
        err = bad("sip:" + "x" * 10000 + "@@")
        assert len(err.detail) < 300


class TestTelUri:
    def test_global_number(self):
        u = parse_uri("tel:+1-201-555-0123;ext=1234")
        assert isinstance(u, TelUri)
        assert u.number == "+1-201-555-0123" and u.is_global
        assert u.digits == "+12015550123"
        assert u.params == {"ext": "1234"}

    def test_local_number_with_context(self):
        u = parse_uri("tel:7042;phone-context=example.com")
        assert isinstance(u, TelUri)
        assert not u.is_global and u.phone_context == "example.com"

    def test_local_hex_star_hash(self):
        assert parse_uri("tel:*21#;phone-context=+1").number == "*21#"

    def test_scheme_case(self):
        assert isinstance(parse_uri("TEL:+1234"), TelUri)

    @pytest.mark.parametrize("text", [
        "tel:", "tel:+", "tel:+-.()", "tel:--", "tel:+1 234", "tel:+12;", "tel:+12;a b",
        "tel:+1x2",
    ])
    def test_bad(self, text):
        bad(text)

    def test_equality_ignores_visual_separators_rfc3966_4(self):
        assert uri_equal(parse_uri("tel:+1-201-555-0123"), parse_uri("tel:+1(201)5550123"))
        assert not uri_equal(parse_uri("tel:+12015550123"), parse_uri("tel:+12015550124"))

    def test_build(self):
        u = TelUri("+1-201-555-0123", {"ext": "1"})
        assert str(u) == "tel:+1-201-555-0123;ext=1"
        for number in ("not a number", "+12;ext=1", "+", "--"):
            with pytest.raises(LocalProtocolError):
                TelUri(number)


class TestAbsoluteUri:
    @pytest.mark.parametrize("text,scheme", [
        ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme"),  # unkscm
        ("soap.beep://192.0.2.103:3002", "soap.beep"),  # novelsc
        ("http://www.example.com", "http"),  # unksm2
        ("isbn:2983792873", "isbn"),
        ("name:John_Smith", "name"),
        ("urn:service:sos", "urn"),
        ("im:alice@example.com", "im"),
    ])
    def test_kept_opaque(self, text, scheme):
        u = parse_uri(text)
        assert isinstance(u, AbsoluteUri)
        assert u.scheme == scheme and u.raw == text and str(u) == text

    @pytest.mark.parametrize("text", [
        "foo:", "1foo:bar", "fo o:bar", "foo:a b", "foo:<x>", 'foo:"x"', "foo:%x1",
    ])
    def test_bad(self, text):
        bad(text)

    def test_build(self):
        assert AbsoluteUri("urn:service:sos").scheme == "urn"
        with pytest.raises(LocalProtocolError):
            AbsoluteUri("sip:a@b")

    def test_equality(self):
        assert uri_equal(parse_uri("HTTP://x"), parse_uri("http://x"))
        assert not uri_equal(parse_uri("http://x"), parse_uri("http://y"))


class TestEquality:
    """RFC 3261 §19.1.4, including its own examples."""

    @pytest.mark.parametrize("a,b", [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
        ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
         "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
        ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
         "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
    ])
    def test_equivalent(self, a, b):
        assert uri_equal(sip(a), sip(b))
        assert sip(a) == sip(b)
        assert hash(sip(a)) == hash(sip(b))

    @pytest.mark.parametrize("a,b", [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        ("sip:a@h", "sips:a@h"),
        ("sip:a:x@h", "sip:a:y@h"),
        ("sip:h;lr", "sip:h;lr=on"),
        ("sip:h;maddr=1.2.3.4", "sip:h"),
    ])
    def test_different(self, a, b):
        assert not uri_equal(sip(a), sip(b))
        assert not uri_equal(sip(b), sip(a))

    def test_different_kinds(self):
        assert not uri_equal(sip("sip:+1234@h"), parse_uri("tel:+1234"))
        assert sip("sip:a@h") != "sip:a@h"


class TestTextAndCopies:
    def test_str_is_raw_while_unchanged(self):
        text = "sip:%61lice@AtLanTa.CoM;Transport=TCP"
        u = sip(text)
        assert str(u) == text
        assert str(u) == text  # the snapshot is reused

    def test_str_follows_in_place_changes(self):
        u = sip("sip:alice@atlanta.com;transport=tcp")
        u.params["lr"] = None
        assert str(u) == "sip:alice@atlanta.com;transport=tcp;lr"
        u.port = 5061
        assert str(u) == "sip:alice@atlanta.com:5061;transport=tcp;lr"
        assert u.raw == "sip:alice@atlanta.com;transport=tcp"

    def test_parsing_twice_gives_independent_objects(self):
        a = sip("sip:alice@atlanta.com;transport=tcp")
        a.params["x"] = "1"
        b = sip("sip:alice@atlanta.com;transport=tcp")
        assert b.params == {"transport": "tcp"}

    def test_replace_escapes_what_it_must(self):
        u = sip("sip:alice@atlanta.com").replace(
            user="a@b c", password="p:w", port=5061, params={"x": "a;b", "lr": None},
            headers={"Subject": "x y&z"})
        assert str(u) == "sip:a%40b%20c:p%3Aw@atlanta.com:5061;x=a%3Bb;lr?Subject=x%20y%26z"
        back = sip(str(u))
        assert (back.user, back.password, back.params, back.headers) == (
            "a@b c", "p:w", {"x": "a;b", "lr": None}, {"Subject": "x y&z"})

    def test_replace_keeps_original(self):
        u = sip("sip:alice@atlanta.com")
        v = u.replace(host="biloxi.com")
        assert u.host == "atlanta.com" and v.host == "biloxi.com"
        assert str(v) == "sip:alice@biloxi.com"

    @pytest.mark.parametrize("changes", [
        {"port": 70000}, {"port": "5060"}, {"host": "a b"}, {"host": "[1::2::3]"},
        {"scheme": "tel"}, {"colour": "red"},
    ])
    def test_replace_rejects_bad_values(self, changes):
        with pytest.raises(LocalProtocolError):
            sip("sip:alice@atlanta.com").replace(**changes)

    def test_build(self):
        u = SipUri("Example.COM", "bob", port=5060, params={"transport": "tcp"})
        assert str(u) == "sip:bob@example.com:5060;transport=tcp"
        assert repr(u) == "SipUri('sip:bob@example.com:5060;transport=tcp')"
        for kwargs in ({"password": "x"}, {"user": ""}, {"params": {"": "x"}},
                       {"params": {"x": ""}}, {"headers": {"": "x"}}):
            with pytest.raises(LocalProtocolError):
                SipUri("h", **kwargs)


class TestMemo:
    def test_memo_stays_bounded(self):
        from siprouter.sip import uri as uri_module

        for i in range(uri_module._URI_CACHE_LIMIT + 10):
            parse_uri(f"sip:user{i}@h{i}.example.com")
        assert len(uri_module._URI_CACHE) <= uri_module._URI_CACHE_LIMIT
        assert len(uri_module._HOST_CACHE) <= uri_module._HOST_CACHE_LIMIT

    def test_long_texts_are_not_remembered(self):
        from siprouter.sip import uri as uri_module

        text = "sip:" + "u" * 300 + "@" + "h" * 300 + ".example.com"
        assert sip(text).host == "h" * 300 + ".example.com"
        assert text not in uri_module._URI_CACHE
        assert "h" * 300 + ".example.com" not in uri_module._HOST_CACHE

    def test_memo_hit_gives_same_result_as_miss(self):
        text = "sip:%61lice@AtLanTa.CoM:5061;Transport=TCP;lr?h=%20x"
        first, second = sip(text), sip(text)
        assert first is not second and first.params is not second.params
        assert (first.user, first.host, first.port, first.params, first.headers) == (
            second.user, second.host, second.port, second.params, second.headers)


class TestNoCatastrophicBacktracking:
    @pytest.mark.parametrize("text", [
        "sip:" + "a-" * 20000 + "!",
        "sip:" + "a." * 20000 + "-",
        "sip:" + "a@" * 20000,
        "sip:" + ";" * 20000 + "@",
        "sip:a@b" + ";a=b" * 10000 + ";",
        "sip:a@b?" + "a=b&" * 10000,
        "tel:+" + "1-" * 20000 + "x",
        "x:" + "%" * 20000,
    ], ids=lambda x: f"{x[:12]!r}...")
    def test_long_hostile_input_is_rejected_quickly(self, text):
        start = time.perf_counter()
        bad(text)
        assert time.perf_counter() - start < 1.0


# --- property tests ----------------------------------------------------------------------

SIP_ALPHABET = "sipSIPtel:@;=?&%[]<>\"\\,/.+-_!~*'()$ \t\r\n0123456789abcdefABCDEF"
any_text = st.one_of(st.text(max_size=80), st.text(alphabet=SIP_ALPHABET, max_size=80))


@given(any_text)
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_random_text_raises_only_the_parse_error(text):
    try:
        uri = parse_uri(text)
    except SipParseError as exc:
        assert exc.reason == BAD_URI
        return
    # Whatever parses, prints back as it came.
    assert str(uri) == text


@given(st.text(alphabet=SIP_ALPHABET, max_size=60).map(lambda s: "sip:" + s))
@settings(max_examples=500)
def test_random_sip_text_raises_only_the_parse_error(text):
    try:
        uri = parse_uri(text)
    except SipParseError:
        return
    assert str(uri) == text
    assert uri_equal(uri, parse_uri(str(uri)))


_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_toplabel = st.from_regex(r"[a-z](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.builds(lambda labels, top: ".".join([*labels, top]),
                      st.lists(_label, max_size=3), _toplabel)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
uri_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
param_names = uri_text.filter(lambda s: s.lower() == s)
sip_uris = st.builds(
    lambda scheme, user, password, host, port, params, headers: SipUri(
        host, user, scheme=scheme, password=password if user is not None else None,
        port=port, params=params, headers=headers),
    st.sampled_from(["sip", "sips"]),
    st.none() | uri_text,
    st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
    hosts,
    st.none() | st.integers(0, 65535),
    st.dictionaries(param_names, st.none() | uri_text, max_size=3),
    st.dictionaries(uri_text, st.text(st.characters(blacklist_categories=("Cs",)),
                                      max_size=8), max_size=2),
)


@given(sip_uris)
@settings(max_examples=300)
def test_generated_uris_round_trip(uri):
    text = str(uri)
    back = parse_uri(text)
    assert isinstance(back, SipUri)
    assert (back.scheme, back.user, back.password, back.host, back.port, back.params,
            back.headers) == (uri.scheme, uri.user, uri.password, uri.host, uri.port,
                              uri.params, uri.headers)
    assert str(back) == text
    assert uri_equal(back, uri) and hash(back) == hash(uri)


tel_numbers = st.one_of(
    st.from_regex(r"\+[0-9()\-.]{0,4}[0-9][0-9()\-.]{0,8}", fullmatch=True),
    st.from_regex(r"[0-9A-F*#]{1,8}", fullmatch=True),
)


@given(tel_numbers, st.dictionaries(st.from_regex(r"[a-z0-9-]{1,6}", fullmatch=True),
                                    st.none() | uri_text, max_size=3))
def test_generated_tel_uris_round_trip(number, params):
    uri = TelUri(number, params)
    back = parse_uri(str(uri))
    assert isinstance(back, TelUri)
    assert (back.number, back.params) == (number, params)
