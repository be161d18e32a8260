# SPDX-License-Identifier: Apache-2.0
"""The default script as shipped (authentication on), through the testing kit: the
registrar and auth modules on an in-memory database, as ``siprouter run`` gives them.

Issue 5: REGISTER for our domains must authenticate, then is saved; requests to local
users are looked up; requests from local users must authenticate; a request neither
from nor to a local domain is refused 403; no user in the R-URI: 484."""

from __future__ import annotations

import re

import pytest

from siprouter.script.testing import ScriptTester, make_request
from siprouter.sip.digest import compute_ha1, compute_response
from siprouter.transport.types import Target

LISTEN = ("udp:127.0.0.1:5060",)
USERS = {"alice@example.com": "alice-secret", "bob@example.com": "bob-secret"}
BOB_PHONE = "sip:bob@192.0.2.20:5062"


@pytest.fixture
def server(script_tester) -> ScriptTester:
    return script_tester(None, domains=["example.com"], listen=LISTEN, hostname="sip.test",
                         users=USERS, next_hop="sip:10.0.0.1:5060")


def _credentials(challenge: str, user: str, password: str, method: str, uri: str,
                 *, nc: int = 1) -> str:
    """Answer a Digest challenge the way a phone does (qop=auth when offered)."""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.partition(" ")[2]))
    realm, nonce = params["realm"], params["nonce"]
    ha1 = compute_ha1(user, realm, password)
    if params.get("qop"):
        cnonce, nc_text = "0a4f113b", f"{nc:08x}"
        response = compute_response(ha1, nonce, method, uri, qop="auth", nc=nc_text,
                                    cnonce=cnonce)
        return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{response}", qop=auth, nc={nc_text}, cnonce="{cnonce}", '
                f"algorithm=MD5")
    response = compute_response(ha1, nonce, method, uri)
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"')


async def _register(server: ScriptTester, user: str, password: str, contact: str,
                    *, source: str = "udp:192.0.2.20:5062"):
    aor = f"sip:{user}@example.com"
    first = await server.request(make_request(
        "REGISTER", "sip:example.com", from_=aor, to=f"<{aor}>",
        via_host=source.split(":", 1)[1], headers={"Contact": f"<{contact}>"}),
        source=source)
    assert first.replied == 401
    auth = _credentials(first.reply.header("WWW-Authenticate"), user, password, "REGISTER",
                        "sip:example.com")
    return await server.request(make_request(
        "REGISTER", "sip:example.com", from_=aor, to=f"<{aor}>", cseq=2,
        via_host=source.split(":", 1)[1],
        headers={"Contact": f"<{contact}>", "Authorization": auth}), source=source)


async def test_register_is_challenged_then_saved(server):
    out = await _register(server, "bob", "bob-secret", BOB_PHONE)
    assert out.replied == 200
    assert BOB_PHONE in out.reply.header("Contact")


async def test_register_with_a_wrong_password_is_challenged_again(server):
    out = await _register(server, "bob", "not-bobs", BOB_PHONE)
    assert out.replied == 401
    assert out.reply.header("WWW-Authenticate").startswith("Digest ")


async def test_unknown_user_gets_the_same_answer_as_a_wrong_password(server):
    out = await _register(server, "mallory", "guess", "sip:mallory@192.0.2.66")
    assert out.replied == 401


async def test_registering_someone_else_is_forbidden(server):
    # alice's credentials for bob's AOR: the authenticated user must be the To user.
    aor = "sip:bob@example.com"
    first = await server.request(make_request("REGISTER", "sip:example.com", from_=aor,
                                              to=f"<{aor}>"))
    auth = _credentials(first.reply.header("WWW-Authenticate"), "alice", "alice-secret",
                        "REGISTER", "sip:example.com")
    out = await server.request(make_request("REGISTER", "sip:example.com", from_=aor,
                                            to=f"<{aor}>", cseq=2,
                                            headers={"Authorization": auth}))
    assert out.replied == 403


async def test_local_user_must_authenticate_to_call(server):
    out = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            from_="sip:alice@example.com"))
    assert out.replied == 407
    assert out.reply.header("Proxy-Authenticate").startswith("Digest ")


async def test_registered_user_is_called_after_authentication(server):
    assert (await _register(server, "bob", "bob-secret", BOB_PHONE)).replied == 200
    first = await server.request(make_request("INVITE", "sip:bob@example.com",
                                              from_="sip:alice@example.com"))
    auth = _credentials(first.reply.header("Proxy-Authenticate"), "alice", "alice-secret",
                        "INVITE", "sip:bob@example.com")
    out = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            from_="sip:alice@example.com", cseq=2,
                                            headers={"Proxy-Authorization": auth}))
    assert out.forwarded.ruri == BOB_PHONE
    assert out.forwarded_to == Target("udp", "192.0.2.20", 5062)
    assert not out.forwarded.has_header("Proxy-Authorization")  # consumed
    assert out.forwarded.has_header("Record-Route")


async def test_call_from_outside_to_a_local_user_needs_no_credentials(server):
    assert (await _register(server, "bob", "bob-secret", BOB_PHONE)).replied == 200
    out = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            from_="sip:carol@elsewhere.example"))
    assert out.forwarded.ruri == BOB_PHONE


async def test_unregistered_local_user_gets_404(server):
    out = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            from_="sip:carol@elsewhere.example"))
    assert (out.replied, out.reason) == (404, "Not Found")


async def test_no_user_in_the_request_uri_gets_484(server):
    out = await server.request(make_request("MESSAGE", "sip:example.com",
                                            from_="sip:carol@elsewhere.example"))
    assert (out.replied, out.reason) == (484, "Address Incomplete")


async def test_neither_from_nor_to_us_is_not_relayed_even_with_a_next_hop(server):
    out = await server.request(make_request("INVITE", "sip:dave@elsewhere.example",
                                            from_="sip:carol@elsewhere.example"))
    assert (out.replied, out.reason) == (403, "Not relaying")
    assert out.forwarded is None


async def test_registration_expired_gets_480(server):
    out = await _register(server, "bob", "bob-secret", BOB_PHONE)
    assert out.replied == 200
    # Every contact of the AOR expired but not yet purged by the timer: 480.
    location = server.modules["location"]
    for binding in location.get_cached("bob") or ():
        binding.expires = 1
    res = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            from_="sip:carol@elsewhere.example"))
    assert (res.replied, res.reason) == (480, "Temporarily Unavailable")
