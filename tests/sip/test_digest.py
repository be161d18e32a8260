# SPDX-License-Identifier: Apache-2.0
"""Digest credentials, challenges and hashes (siprouter.sip.digest): the RFC 7616 §3.9.1
and RFC 2617 §3.5 examples, RFC 2069 responses, -sess, auth-int and malformed values."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprouter.sip.digest import (
    ALGORITHMS,
    _fast_params,
    compute_ha1,
    compute_response,
    format_challenge,
    is_digest,
    parse_credentials,
)
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import parse_auth, parse_challenge, quote_string

# RFC 7616 §3.9.1: the same request with MD5 and with SHA-256.
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_REALM = "http-auth@example.org"


def rfc7616_authorization(algorithm: str, response: str) -> str:
    return (f'Digest username="Mufasa", realm="{RFC7616_REALM}", uri="/dir/index.html", '
            f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", nc=00000001, '
            f'cnonce="{RFC7616_CNONCE}", qop=auth, response="{response}", '
            f'opaque="{RFC7616_OPAQUE}"')


MD5_RESPONSE = "8ca523f5e9506fed4657c9700eebdbec"
SHA256_RESPONSE = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


class TestRfcVectors:
    def test_rfc7616_md5(self):
        c = parse_credentials(rfc7616_authorization("MD5", MD5_RESPONSE))
        ha1 = compute_ha1("Mufasa", RFC7616_REALM, "Circle of Life")
        assert c.expected_response(ha1, "GET") == MD5_RESPONSE
        assert c.matches(ha1, "GET")
        assert not c.matches(compute_ha1("Mufasa", RFC7616_REALM, "Circle of life"), "GET")

    def test_rfc7616_sha256(self):
        c = parse_credentials(rfc7616_authorization("SHA-256", SHA256_RESPONSE))
        assert c.algorithm == "SHA-256"
        ha1 = compute_ha1("Mufasa", RFC7616_REALM, "Circle of Life", "SHA-256")
        assert c.matches(ha1, "GET")
        assert not c.matches(ha1, "POST")

    def test_rfc2617_example(self):
        # RFC 2617 §3.5 (note the capital O in the password there).
        c = parse_credentials(
            'Digest username="Mufasa", realm="testrealm@host.com", '
            'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
            'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
            'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
        ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
        assert ha1 == hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
        assert c.matches(ha1, "GET")
        assert c.nc_value == 1 and c.cnonce == "0a4f113b" and c.qop == "auth"
        assert c.opaque == "5ccc069c403ebaf9f0171e9517f40e41"

    def test_rfc2069_without_qop(self):
        # response = MD5(HA1:nonce:MD5(method:uri)), computed here independently.
        ha1 = compute_ha1("bob", "biloxi.com", "zanzibar")
        ha2 = hashlib.md5(b"REGISTER:sip:biloxi.com").hexdigest()
        expected = hashlib.md5(f"{ha1}:abc123:{ha2}".encode()).hexdigest()
        assert compute_response(ha1, "abc123", "REGISTER", "sip:biloxi.com") == expected
        c = parse_credentials(f'Digest username="bob", realm="biloxi.com", nonce="abc123", '
                              f'uri="sip:biloxi.com", response="{expected}"')
        assert c.qop is None and c.nc is None and c.nc_value is None
        assert c.algorithm == "MD5"  # absent: MD5 (RFC 7616 §3.4)
        assert c.matches(ha1, "REGISTER")

    def test_md5_sess(self):
        ha1 = compute_ha1("bob", "biloxi.com", "zanzibar")
        sess = hashlib.md5(f"{ha1}:n1:c1".encode()).hexdigest()
        ha2 = hashlib.md5(b"INVITE:sip:bob@biloxi.com").hexdigest()
        expected = hashlib.md5(f"{sess}:n1:00000002:c1:auth:{ha2}".encode()).hexdigest()
        got = compute_response(ha1, "n1", "INVITE", "sip:bob@biloxi.com", algorithm="md5-SESS",
                               qop="auth", nc="00000002", cnonce="c1")
        assert got == expected

    def test_auth_int_hashes_the_body(self):
        ha1 = compute_ha1("bob", "biloxi.com", "zanzibar")
        body = b"v=0\r\n"
        ha2 = hashlib.md5(b"INVITE:sip:x@y:" + hashlib.md5(body).hexdigest().encode()).hexdigest()
        expected = hashlib.md5(f"{ha1}:n:00000001:c:auth-int:{ha2}".encode()).hexdigest()
        assert compute_response(ha1, "n", "INVITE", "sip:x@y", qop="auth-int",
                                nc="00000001", cnonce="c", body=body) == expected
        assert compute_response(ha1, "n", "INVITE", "sip:x@y", qop="auth-int",
                                nc="00000001", cnonce="c", body=b"") != expected

    def test_utf8_username(self):
        assert compute_ha1("jörg", "r", "p") == hashlib.md5("jörg:r:p".encode()).hexdigest()

    def test_unknown_algorithm_never_matches(self):
        c = parse_credentials('Digest username="a", realm="r", nonce="n", uri="sip:r", '
                              'response="zz", algorithm=SHA-1')
        assert c.algorithm == "SHA-1" and not c.known_algorithm
        assert not c.matches("0" * 32, "REGISTER")

    def test_api_misuse(self):
        with pytest.raises(LocalProtocolError):
            compute_ha1("a", "b", "c", "SHA-1")
        with pytest.raises(LocalProtocolError):
            compute_response("0" * 32, "n", "GET", "/", qop="auth")  # no nc/cnonce
        with pytest.raises(LocalProtocolError):
            compute_response("0" * 32, "n", "GET", "/", qop="auth-conf", nc="1", cnonce="c")

    def test_algorithm_names(self):
        assert ALGORITHMS["md5"] == "MD5" and ALGORITHMS["sha-256-sess"] == "SHA-256-sess"


class TestParse:
    def test_case_insensitive_names_and_escapes(self):
        c = parse_credentials('digest USERNAME="a\\"b", Realm="r", NONCE="n", URI="sip:r", '
                              'Response="0123456789ABCDEF0123456789abcdef", QOP=Auth, '
                              'NC=0000000A, CNonce="x"')
        assert c.username == 'a"b' and c.realm == "r" and c.uri == "sip:r"
        assert c.response == "0123456789abcdef0123456789abcdef"  # lower-cased
        assert c.qop == "auth" and c.nc == "0000000A" and c.nc_value == 10

    def test_quoted_qop_and_algorithm_accepted(self):
        c = parse_credentials('Digest username="a", realm="r", nonce="n", uri="sip:r", '
                              f'response="{"0" * 64}", algorithm="sha-256", qop="auth", '
                              'nc=00000001, cnonce="c"')
        assert c.algorithm == "SHA-256" and c.qop == "auth"

    def test_username_star(self):
        # RFC 7616 §3.9.2 style extended notation.
        c = parse_credentials("Digest username*=UTF-8''J%C3%A4s%C3%B8n%20Doe, realm=\"r\", "
                              f'nonce="n", uri="sip:r", response="{"0" * 32}"')
        assert c.username == "Jäsøn Doe"

    def test_userhash_flag(self):
        c = parse_credentials('Digest username="h", realm="r", nonce="n", uri="sip:r", '
                              f'response="{"0" * 32}", userhash=TRUE')
        assert c.userhash

    def test_is_digest(self):
        assert is_digest('Digest username="a"') and is_digest('  dIgEsT\tusername="a"')
        assert not is_digest("Basic QWxhZGRpbjpvcGVu") and not is_digest("Digestx a=b")

    @pytest.mark.parametrize("value", [
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        'Basic realm="x"',
        'Digest realm="r", nonce="n", uri="sip:r", response="' + "0" * 32 + '"',  # no username
        'Digest username="a", nonce="n", uri="sip:r", response="' + "0" * 32 + '"',  # no realm
        'Digest username="a", realm="r", uri="sip:r", response="' + "0" * 32 + '"',  # no nonce
        'Digest username="a", realm="r", nonce="n", response="' + "0" * 32 + '"',  # no uri
        'Digest username="a", realm="r", nonce="n", uri="sip:r"',  # no response
        'Digest username="a", realm="r", nonce="n", uri="", response="' + "0" * 32 + '"',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="abc"',  # short
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "g" * 32 + '"',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32
        + '", algorithm=SHA-256',  # MD5 length for SHA-256
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32
        + '", qop=auth, nc=00000001',  # no cnonce
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32
        + '", qop=auth, cnonce="c"',  # no nc
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32
        + '", qop=auth, cnonce="c", nc=1',  # nc not 8 digits
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32
        + '", qop=auth, cnonce="c", nc=0000000g',
        'Digest username="a", username*=UTF-8\'\'a, realm="r", nonce="n", uri="sip:r", '
        'response="' + "0" * 32 + '"',
        "Digest username*=ISO-8859-1''a, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\""
        + "0" * 32 + '"',
        "Digest username*=UTF-8''%FF, realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\""
        + "0" * 32 + '"',
        'Digest username="a", username="b", realm="r", nonce="n", uri="sip:r", response="'
        + "0" * 32 + '"',  # repeated (RFC 7235 §2.1)
        'Digest username="a, realm="r"',  # unterminated quote
        "Digest",
        "",
    ])
    def test_malformed_is_400(self, value):
        with pytest.raises(SipParseError) as info:
            parse_credentials(value, "Proxy-Authorization")
        assert info.value.status_hint == 400
        assert info.value.reason == "Bad Proxy-Authorization"


class TestFastPath:
    """parse_credentials cuts the common shape with one regular expression and leaves
    everything else to headers.parse_auth: both must agree wherever the fast one answers."""

    @pytest.mark.parametrize("value", [
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="x"',
        'Digest username="a",realm="r",nonce="n"',
        'digest  username = "a" ,\trealm=r , nc=00000001',
        'DIGEST UserName="a", Opaque=""',
        'Digest realm="a, b", nonce="n"',  # comma inside quotes
        'Digest realm="a \\"b\\"", nonce="n"',  # quoted-pair
        'Digest realm="é", nonce="n"',  # UTF-8 in a quoted string
        'Digest uri="sip:a;transport=udp?x=y", nonce="n"',
        'Digest a=b,',  # trailing comma: an error
        'Digest a=b c=d',
        'Digest a=b, a=c',  # repeated: an error
        'Digest a="b',
        "Digest a=",
        "Digest =b",
        "Digest ,a=b",
        'Digest a="x\x01y"',
        "Basic a=b",
    ])
    def test_agrees_with_the_full_grammar(self, value):
        fast = _fast_params(value)
        try:
            full = parse_auth(value).params
        except SipParseError:
            full = None
        if fast is not None:
            assert fast == full

    def test_common_shape_takes_the_fast_path(self):
        assert _fast_params(rfc7616_authorization("MD5", MD5_RESPONSE)) is not None

    @given(st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
                min_size=1, max_size=8),
        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
                max_size=12),
        min_size=1, max_size=6),
        st.sampled_from([",", ", ", " ,", " , ", ",\t"]))
    def test_round_trip(self, params, separator):
        lowered = {}
        for name, value in params.items():
            lowered.setdefault(name.lower(), (name, value))
        text = "Digest " + separator.join(f"{name}={quote_string(value)}"
                                          for name, value in lowered.values())
        expected = {key: value for key, (_, value) in lowered.items()}
        assert parse_auth(text).params == expected
        fast = _fast_params(text)
        assert fast is None or fast == expected


class TestChallenge:
    def test_format_and_parse_back(self):
        text = format_challenge("biloxi.com", "abc", opaque="o", stale=True)
        assert text == ('Digest realm="biloxi.com", nonce="abc", opaque="o", algorithm=MD5, '
                        'qop="auth", stale=true')
        ch = parse_challenge(text)
        assert ch.params == {"realm": "biloxi.com", "nonce": "abc", "opaque": "o",
                             "algorithm": "MD5", "qop": "auth", "stale": "true"}

    def test_rfc2069_style_and_sha256(self):
        text = format_challenge('a "b"', "n", algorithm="sha-256", qop=None)
        assert text == 'Digest realm="a \\"b\\"", nonce="n", algorithm=SHA-256'
        assert parse_challenge(text).params["realm"] == 'a "b"'

    def test_bad_input(self):
        with pytest.raises(LocalProtocolError):
            format_challenge("r\r\nX: y", "n")
        with pytest.raises(LocalProtocolError):
            format_challenge("r", "n", algorithm="SHA-1")
