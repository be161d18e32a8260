# SPDX-License-Identifier: Apache-2.0
"""Digest authentication (siprouter.modules.auth): every result kind, stale and forged
nonces, nonce-count and one-time-nonce replay checks, the identity check, the digest uri
check, RFC 2069 credentials, the password / ha1 / ha1b modes and use_domain, a database
that is down, and one round trip through the real proxy core.

The client side is computed with siprouter.sip.digest, whose hashes are pinned to the
RFC test vectors in tests/sip/test_digest.py. Database behaviour runs on every backend
(the suite-wide ``storage`` fixture); nonce and replay logic on a SQLite file.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from db_backends import database_server
from db_servers import (
    MariadbServer,
    PostgresServer,
)

from siprouter.modules.auth import Auth, AuthResult
from siprouter.proxy.actions import Reply
from siprouter.script.api import Request
from siprouter.script.testing import ScriptTester, make_request
from siprouter.sip.digest import compute_ha1, compute_response
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.headers import parse_challenge
from siprouter.sip.message import parse_message
from siprouter.storage import Storage, open_storage

SECRET = b"0123456789abcdef0123456789abcdef"
DOMAIN = "example.com"
UNAUTHORIZED, PROXY_AUTH_REQUIRED, BAD_REQUEST, FORBIDDEN, SERVER_ERROR = 401, 407, 400, 403, 500


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def subscriber(user: str, domain: str, password: str, *, plain: bool = True) -> dict[str, str]:
    return {"username": user, "domain": domain, "password": password if plain else "",
            "ha1": compute_ha1(user, domain, password),
            "ha1b": compute_ha1(f"{user}@{domain}", domain, password)}


def request(method: str = "REGISTER", ruri: str = f"sip:{DOMAIN}", *, user: str = "alice",
            to_user: str | None = None, from_user: str | None = None,
            headers: list[tuple[str, str]] = ()) -> Request:
    """A request as received, parsed into the script's Request class."""
    to = f"<sip:{to_user or user}@{DOMAIN}>" if method == "REGISTER" else f"<{ruri}>"
    text = make_request(method, ruri, from_=f"sip:{from_user or user}@{DOMAIN}", to=to,
                        headers=list(headers))
    req = parse_message(text.encode(), request_cls=Request)
    assert isinstance(req, Request)
    return req


def challenge_params(req: Request) -> list[dict[str, str]]:
    """The challenges of the answer the module gave ``req``."""
    out = req.outcome
    assert isinstance(out, Reply)
    return [parse_challenge(v).params for n, v in out.headers
            if n in ("WWW-Authenticate", "Proxy-Authenticate")]


def answer(ch: dict[str, str], *, user: str = "alice", password: str = "secret",
           method: str = "REGISTER", uri: str = f"sip:{DOMAIN}", nc: int | None = 1,
           cnonce: str = "0a4f113b", qop: str | None = "auth", algorithm: str | None = None,
           extra: str = "") -> str:
    """Credentials a client computes for challenge ``ch`` (qop None: RFC 2069 style)."""
    realm, nonce = ch["realm"], ch["nonce"]
    alg = algorithm or ch.get("algorithm", "MD5")
    ha1 = compute_ha1(user, realm, password, alg.removesuffix("-sess"))
    if qop is None:
        response = compute_response(ha1, nonce, method, uri, algorithm=alg,
                                    cnonce=cnonce if alg.endswith("-sess") else None)
        tail = ""
    else:
        nc_text = f"{nc:08x}"
        response = compute_response(ha1, nonce, method, uri, algorithm=alg, qop=qop,
                                    nc=nc_text, cnonce=cnonce)
        tail = f', qop={qop}, nc={nc_text}, cnonce="{cnonce}"'
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm={alg}{tail}{extra}')


async def first_challenge(auth: Auth, method: str = "REGISTER", **kw) -> dict[str, str]:
    """Send a request without credentials; return the challenge it got."""
    req = request(method, **kw)
    result = await auth.auth_check(req)
    assert not result and result.status in (UNAUTHORIZED, PROXY_AUTH_REQUIRED)
    auth.challenge(req, result)
    return challenge_params(req)[0]


async def authorize(auth: Auth, credentials: str, method: str = "REGISTER", **kw) -> AuthResult:
    header = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
    return await auth.auth_check(request(method, headers=[(header, credentials)], **kw))


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
async def sqlite_db(tmp_path: Path):
    """A SQLite subscriber table with alice@example.com / secret."""
    db = open_storage(f"sqlite:///{tmp_path / 'auth.sqlite'}")
    await db.open()
    await db.ensure_tables(["subscriber"])
    await db.insert("subscriber", subscriber("alice", DOMAIN, "secret"))
    yield db
    await db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(sqlite_db: Storage, clock: Clock) -> Auth:
    return Auth(sqlite_db, secret=SECRET, clock=clock)


# --- on every database backend ----------------------------------------------------------------


async def test_register_challenge_and_answer(storage: Storage, clock: Clock):
    await storage.insert("subscriber", subscriber("alice", DOMAIN, "secret"))
    auth = Auth(storage, secret=SECRET, clock=clock)
    req = request()
    result = await auth.www_authorize(req)
    assert not result and result.status == UNAUTHORIZED and not result.stale
    assert result.reason == "no credentials" and result.username is None
    auth.challenge(req, result)
    assert req.outcome.status == UNAUTHORIZED
    [ch] = challenge_params(req)
    assert ch["realm"] == DOMAIN and ch["algorithm"] == "MD5" and ch["qop"] == "auth"
    assert "stale" not in ch and len(ch["nonce"]) == 40

    result = await authorize(auth, answer(ch))
    assert result and result.status is None
    assert (result.username, result.realm) == ("alice", DOMAIN)


async def test_unknown_user_and_wrong_password_get_the_same_answer(storage: Storage,
                                                                   clock: Clock):
    await storage.insert("subscriber", subscriber("alice", DOMAIN, "secret"))
    auth = Auth(storage, secret=SECRET, clock=clock)
    ch = await first_challenge(auth)
    wrong = await authorize(auth, answer(ch, password="guess"))
    unknown = await authorize(auth, answer(ch, user="mallory", password="guess"),
                              user="mallory")
    for result in (wrong, unknown):
        assert not result and result.status == UNAUTHORIZED and not result.stale
    assert (wrong.reason, unknown.reason) == ("wrong password", "unknown user")
    answers = []
    for result in (wrong, unknown):
        req = request()
        auth.challenge(req, result)
        [params] = challenge_params(req)
        answers.append((req.outcome.status, req.outcome.reason, sorted(params),
                        {k: v for k, v in params.items() if k != "nonce"}))
    assert answers[0] == answers[1]


async def test_ha1_and_ha1b_columns(storage: Storage, clock: Clock):
    await storage.insert("subscriber", subscriber("alice", DOMAIN, "secret", plain=False))
    auth = Auth(storage, secret=SECRET, clock=clock, calculate_ha1=False)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    assert not await authorize(auth, answer(ch, nc=2, password="other"))
    # A username written user@domain is checked against ha1b (as Kamailio's auth_db).
    ok = await authorize(auth, answer(ch, user=f"alice@{DOMAIN}", nc=3))
    assert ok and ok.username == f"alice@{DOMAIN}"
    # calculate_ha1 on a row without a plain password: never authenticates.
    plain = Auth(storage, secret=SECRET, clock=clock)
    ch = await first_challenge(plain)
    assert not await authorize(plain, answer(ch))


async def test_use_domain(storage: Storage, clock: Clock):
    await storage.insert_many("subscriber", [subscriber("alice", DOMAIN, "secret"),
                                             subscriber("alice", "other.org", "other")])
    strict = Auth(storage, secret=SECRET, clock=clock, use_domain=True)
    ch = await first_challenge(strict)
    assert await strict.www_authorize(request(headers=[("Authorization", answer(ch))]))
    other = dict(ch, realm="other.org")
    req = request(headers=[("Authorization", answer(other, password="other", nc=2))])
    assert await strict.www_authorize(req, realm="other.org")
    req = request(headers=[("Authorization", answer(other, password="secret", nc=3))])
    assert not await strict.www_authorize(req, realm="other.org")
    # Realm with no subscriber row of that domain: unknown with use_domain ...
    nowhere = dict(ch, realm="nowhere.net")
    req = request(headers=[("Authorization", answer(nowhere, nc=4))])
    result = await strict.www_authorize(req, realm="nowhere.net")
    assert not result and result.reason == "unknown user"
    # ... while without it the username alone finds a row (the realm's domain first).
    loose = Auth(storage, secret=SECRET, clock=clock, use_domain=False)
    ch = await first_challenge(loose)
    assert await loose.www_authorize(request(headers=[("Authorization", answer(ch))]))
    other = dict(ch, realm="other.org")
    req = request(headers=[("Authorization", answer(other, password="other", nc=2))])
    assert await loose.www_authorize(req, realm="other.org")


async def test_password_change_counts_at_once(storage: Storage, clock: Clock):
    await storage.insert("subscriber", subscriber("alice", DOMAIN, "secret"))
    auth = Auth(storage, secret=SECRET, clock=clock)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    await storage.update("subscriber", subscriber("alice", DOMAIN, "changed"),
                         {"username": "alice", "domain": DOMAIN})
    assert not await authorize(auth, answer(ch, nc=2))
    assert await authorize(auth, answer(ch, nc=3, password="changed"))


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def own_server(request) -> Iterator[PostgresServer | MariadbServer]:
    """A database server of this module's own, which a test stops and starts."""
    with database_server(request.param) as server:
        yield server


async def test_database_outage_is_a_500_result(own_server, clock: Clock):
    db = open_storage(own_server.create_database("auth_outage"), retry_interval=0.1,
                      connect_timeout=2)
    await db.open()
    try:
        await db.ensure_tables(["subscriber"])
        await db.insert("subscriber", subscriber("alice", DOMAIN, "secret"))
        auth = Auth(db, secret=SECRET, clock=clock)
        ch = await first_challenge(auth)
        assert await authorize(auth, answer(ch, nc=1))
        await asyncio.to_thread(own_server.stop)
        req = request(headers=[("Authorization", answer(ch, nc=2))])
        result = await asyncio.wait_for(auth.auth_check(req), 10)
        assert not result and result.status == SERVER_ERROR
        assert result.reason == "subscriber table unavailable"
        auth.challenge(req, result)
        assert req.outcome.status == SERVER_ERROR and not challenge_params(req)
        await asyncio.to_thread(own_server.start)
        # The backend reconnects by itself; the nc the failed attempt carried is unused.
        deadline = asyncio.get_running_loop().time() + 30
        while not (result := await authorize(auth, answer(ch, nc=2))):
            assert result.status == SERVER_ERROR
            assert asyncio.get_running_loop().time() < deadline, "no reconnection"
            await asyncio.sleep(0.1)
    finally:
        await db.close()


# --- nonces -----------------------------------------------------------------------------------


async def test_expired_nonce_with_a_right_digest_is_stale(auth: Auth, clock: Clock):
    ch = await first_challenge(auth)
    clock.now += 301
    req = request(headers=[("Authorization", answer(ch))])
    result = await auth.www_authorize(req)
    assert not result and result.status == UNAUTHORIZED and result.stale
    auth.challenge(req, result)
    [fresh] = challenge_params(req)
    assert fresh["stale"] == "true" and fresh["nonce"] != ch["nonce"]
    assert await authorize(auth, answer(fresh))


async def test_expired_nonce_with_a_wrong_digest_is_not_stale(auth: Auth, clock: Clock):
    # RFC 7616 §3.3: stale only "with a valid digest for that nonce".
    ch = await first_challenge(auth)
    clock.now += 301
    result = await authorize(auth, answer(ch, password="guess"))
    assert not result and not result.stale and result.reason == "wrong password"


async def test_nonce_is_good_until_it_expires(auth: Auth, clock: Clock):
    ch = await first_challenge(auth)
    clock.now += 300
    assert await authorize(auth, answer(ch))


async def test_nonce_from_the_future_is_stale(sqlite_db: Storage, clock: Clock):
    ahead = Auth(sqlite_db, secret=SECRET, clock=Clock(clock.now + 60))
    ch = await first_challenge(ahead)
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, nonce_count=False)
    result = await authorize(auth, answer(ch))
    assert not result and result.stale


@pytest.mark.parametrize("tamper", [
    lambda n: n[:10] + ("A" if n[10] != "A" else "B") + n[11:],
    lambda n: n[:-1],
    lambda n: n + "A",
    lambda n: "!" * 40,
    lambda n: "",
])
async def test_forged_nonce_gets_a_fresh_challenge(auth: Auth, tamper):
    ch = await first_challenge(auth)
    ch["nonce"] = tamper(ch["nonce"])
    result = await authorize(auth, answer(ch))
    assert not result and result.status == UNAUTHORIZED and not result.stale
    assert result.reason == "nonce not ours"


async def test_nonce_of_another_secret_is_not_ours(auth: Auth, sqlite_db: Storage, clock: Clock):
    other = Auth(sqlite_db, secret=b"another secret, 16+ bytes", clock=clock)
    ch = await first_challenge(other)
    result = await authorize(auth, answer(ch))
    assert not result and result.reason == "nonce not ours"


async def test_cluster_shares_nonces_without_replay_checks(sqlite_db: Storage, clock: Clock):
    a = Auth(sqlite_db, secret=SECRET, clock=clock, nonce_count=False)
    b = Auth(sqlite_db, secret=SECRET, clock=clock, nonce_count=False)
    ch = await first_challenge(a)
    assert await authorize(b, answer(ch))
    # With nonce_count on, only the issuer knows the replay state: stale elsewhere.
    c = Auth(sqlite_db, secret=SECRET, clock=clock)
    result = await authorize(c, answer(ch))
    assert not result and result.stale


# --- replay protection ------------------------------------------------------------------------


async def test_nonce_count_replay_is_stale(auth: Auth):
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    replay = await authorize(auth, answer(ch, nc=1))
    assert not replay and replay.stale and replay.reason == "nc replayed"
    assert await authorize(auth, answer(ch, nc=2))
    assert await authorize(auth, answer(ch, nc=7))  # gaps are fine (lost requests)
    lower = await authorize(auth, answer(ch, nc=5))
    assert not lower and lower.stale
    too_big = await authorize(auth, answer(ch, nc=255))
    assert not too_big and too_big.stale and too_big.reason == "nc too big"


async def test_a_failed_attempt_does_not_use_up_an_nc(auth: Auth):
    ch = await first_challenge(auth)
    assert not await authorize(auth, answer(ch, nc=1, password="guess"))
    assert await authorize(auth, answer(ch, nc=1))


async def test_nonce_count_off_allows_reuse(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, nonce_count=False)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    assert await authorize(auth, answer(ch, nc=1))


async def test_replay_table_overflow_is_stale(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, nc_array_size=4)
    ch = await first_challenge(auth)
    for _ in range(4):
        auth.new_nonce()
    result = await authorize(auth, answer(ch))
    assert not result and result.stale and result.reason == "nonce too old for the replay table"
    ch = await first_challenge(auth)
    for _ in range(3):
        auth.new_nonce()
    assert await authorize(auth, answer(ch))


async def test_one_time_nonce(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, one_time_nonce=True, nonce_count=False)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    again = await authorize(auth, answer(ch, nc=2))
    assert not again and again.stale and again.reason == "one-time nonce reused"


# --- RFC 2069 credentials (no qop) --------------------------------------------------------------


async def test_no_qop_credentials_accepted_until_the_nonce_expires(auth: Auth, clock: Clock):
    # Kamailio's default: without one_time_nonce, no nc means no replay state.
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, qop=None))
    assert await authorize(auth, answer(ch, qop=None))
    clock.now += 301
    assert (await authorize(auth, answer(ch, qop=None))).stale


async def test_no_qop_credentials_once_with_one_time_nonce(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, one_time_nonce=True)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, qop=None))
    again = await authorize(auth, answer(ch, qop=None))
    assert not again and again.stale
    # nonce_count still rules credentials with nc (Kamailio: nc takes precedence).
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, nc=1))
    assert await authorize(auth, answer(ch, nc=2))


async def test_no_qop_refused_when_not_accepted(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, accept_no_qop=False)
    ch = await first_challenge(auth)
    result = await authorize(auth, answer(ch, qop=None))
    assert not result and result.status == UNAUTHORIZED and not result.stale
    assert result.reason == "credentials without qop refused"


async def test_rfc2069_challenges_without_qop(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, qop="", accept_no_qop=False)
    ch = await first_challenge(auth)
    assert "qop" not in ch
    assert await authorize(auth, answer(ch, qop=None))  # nothing else was offered


# --- identity, uri, realm, algorithms ----------------------------------------------------------


async def test_identity_register_must_be_the_to_user(auth: Auth):
    ch = await first_challenge(auth)
    req = request(to_user="bob", headers=[("Authorization", answer(ch))])
    result = await auth.auth_check(req)
    assert not result and result.status == FORBIDDEN and result.username == "alice"
    auth.challenge(req, result)
    assert req.outcome.status == FORBIDDEN
    with pytest.raises(LocalProtocolError):
        auth.consume_credentials(req)  # a 403 did not authenticate anything
    # The same credentials without the identity check authenticate alice.
    req = request(to_user="bob", headers=[("Authorization", answer(ch, nc=2))])
    assert await auth.auth_check(req, check_identity=False)


async def test_identity_invite_must_be_the_from_user(auth: Auth):
    ruri = f"sip:bob@{DOMAIN}"
    ch = await first_challenge(auth, "INVITE", ruri=ruri)
    creds = answer(ch, method="INVITE", uri=ruri)
    assert await authorize(auth, creds, "INVITE", ruri=ruri)
    result = await authorize(auth, answer(ch, method="INVITE", uri=ruri, nc=2), "INVITE",
                             ruri=ruri, from_user="carol")
    assert not result and result.status == FORBIDDEN


async def test_identity_with_use_domain_compares_the_domain(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, use_domain=True)
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, user=f"alice@{DOMAIN}"))
    req = request(headers=[("Authorization", answer(ch, nc=2))])
    assert not await auth.auth_check(req, realm="other.org")  # realm has no such subscriber


async def test_proxy_authorize_answers_407(auth: Auth):
    ruri = f"sip:bob@{DOMAIN}"
    req = request("INVITE", ruri)
    result = await auth.proxy_authorize(req)
    assert result.status == PROXY_AUTH_REQUIRED and result.header == "Proxy-Authorization"
    auth.challenge(req, result)
    assert req.outcome.status == PROXY_AUTH_REQUIRED
    assert [n for n, _ in req.outcome.headers] == ["Proxy-Authenticate"]
    # Authorization (not Proxy-) credentials do not count for proxy_authorize.
    ch = challenge_params(req)[0]
    req = request("INVITE", ruri, headers=[("Authorization", answer(ch, method="INVITE",
                                                                     uri=ruri))])
    assert (await auth.proxy_authorize(req)).reason == "no credentials"


@pytest.mark.parametrize("digest_uri, ok", [
    (f"sip:{DOMAIN}", True),
    ("sip:EXAMPLE.COM", True),  # host case-insensitive
    (f"sip:{DOMAIN};transport=udp", True),  # parameters are not compared
    (f"sip:{DOMAIN}:5060", False),  # an absent port is not 5060 (RFC 3261 §19.1.4)
    (f"sips:{DOMAIN}", False),
    ("sip:other.org", False),
    (f"sip:alice@{DOMAIN}", False),
    ("/dir/index.html", False),
    ("not a uri", False),
])
async def test_digest_uri_must_be_the_request_uri(auth: Auth, digest_uri: str, ok: bool):
    ch = await first_challenge(auth)
    result = await authorize(auth, answer(ch, uri=digest_uri))
    if ok:
        assert result
    else:
        assert not result and result.status == BAD_REQUEST
        assert result.reason == "digest uri is not the Request-URI"


async def test_user_part_of_the_uri_is_case_sensitive(auth: Auth):
    ruri = f"sip:Bob@{DOMAIN}"
    ch = await first_challenge(auth, "INVITE", ruri=ruri)
    assert await authorize(auth, answer(ch, method="INVITE", uri=ruri), "INVITE", ruri=ruri)
    result = await authorize(auth, answer(ch, method="INVITE", uri=f"sip:bob@{DOMAIN}", nc=2),
                             "INVITE", ruri=ruri)
    assert result.status == BAD_REQUEST


async def test_digest_uri_without_the_user_is_accepted_as_sipp_sends_it(auth: Auth):
    # SIPp's [authentication] puts the server address in the digest uri of an INVITE.
    ruri = f"sip:bob@{DOMAIN}"
    ch = await first_challenge(auth, "INVITE", ruri=ruri)
    assert await authorize(auth, answer(ch, method="INVITE", uri=f"sip:{DOMAIN}"), "INVITE",
                           ruri=ruri)


async def test_ipv6_hosts_compare_as_addresses(auth: Auth):
    ruri = "sip:[2001:db8::1]"
    ch = await first_challenge(auth, ruri=ruri)
    assert await auth.www_authorize(
        request(ruri=ruri, headers=[("Authorization", answer(ch, uri="sip:[2001:DB8:0::1]"))]),
        realm=DOMAIN)


async def test_malformed_credentials_are_400(auth: Auth):
    req = request(headers=[("Authorization", 'Digest username="alice", realm="example.com"')])
    result = await auth.auth_check(req)
    assert not result and result.status == BAD_REQUEST
    assert result.reason.startswith("malformed credentials")
    auth.challenge(req, result)
    assert req.outcome.status == BAD_REQUEST


@pytest.mark.parametrize("extra, reason", [
    (", userhash=true", "userhash is not supported"),
])
async def test_unsupported_features_are_400(auth: Auth, extra: str, reason: str):
    ch = await first_challenge(auth)
    result = await authorize(auth, answer(ch, extra=extra))
    assert result.status == BAD_REQUEST and result.reason == reason


async def test_unknown_qop_is_400(auth: Auth):
    ch = await first_challenge(auth)
    creds = answer(ch).replace("qop=auth", "qop=auth-conf")
    assert (await authorize(auth, creds)).status == BAD_REQUEST


async def test_auth_int_is_checked_too(auth: Auth):
    ch = await first_challenge(auth)
    assert await authorize(auth, answer(ch, qop="auth-int"))  # REGISTER without a body


async def test_credentials_of_another_realm_or_scheme_are_not_ours(auth: Auth):
    ch = await first_challenge(auth)
    other = answer(dict(ch, realm="other.org"))
    result = await authorize(auth, other)
    assert result.status == UNAUTHORIZED and result.reason == "no credentials"
    basic = await authorize(auth, "Basic YWxpY2U6c2VjcmV0")
    assert basic.status == UNAUTHORIZED and basic.reason == "no credentials"
    # Several lines: the one for our realm is used (RFC 3261 §22.3).
    req = request(headers=[("Authorization", "Basic YWxpY2U6c2VjcmV0"),
                           ("Authorization", other), ("Authorization", answer(ch))])
    assert await auth.auth_check(req)


async def test_algorithm_not_offered_gets_a_challenge(auth: Auth):
    ch = await first_challenge(auth)
    result = await authorize(auth, answer(ch, algorithm="SHA-256"))
    assert result.status == UNAUTHORIZED and result.reason == "algorithm SHA-256 not offered"
    assert await authorize(auth, answer(ch, algorithm="MD5-sess"))


async def test_sha256_offered_first_when_enabled(sqlite_db: Storage, clock: Clock):
    auth = Auth(sqlite_db, secret=SECRET, clock=clock, algorithms=("SHA-256", "MD5"))
    req = request()
    auth.challenge(req, await auth.auth_check(req))
    sha, md5 = challenge_params(req)
    assert (sha["algorithm"], md5["algorithm"]) == ("SHA-256", "MD5")
    assert sha["nonce"] == md5["nonce"]
    assert await authorize(auth, answer(sha, nc=1))
    assert await authorize(auth, answer(md5, nc=2))
    assert await authorize(auth, answer(sha, nc=3, algorithm="SHA-256-sess"))


@pytest.mark.parametrize("kwargs", [
    {"secret": b"short"},
    {"algorithms": ("SHA-1",)},
    {"algorithms": ("MD5-sess",)},
    {"algorithms": ()},
    {"algorithms": "MD5"},
    {"algorithms": ("SHA-256",), "calculate_ha1": False},
    {"qop": "auth-int"},
    {"nonce_expire": 0},
    {"nc_array_size": 1000},
])
def test_bad_parameters(kwargs):
    kwargs.setdefault("secret", SECRET)
    with pytest.raises(LocalProtocolError):
        Auth(None, **kwargs)


# --- consume_credentials, challenges without a result ------------------------------------------


async def test_consume_credentials_removes_only_the_line_used(auth: Auth):
    ruri = f"sip:bob@{DOMAIN}"
    ch = await first_challenge(auth, "INVITE", ruri=ruri)
    downstream = 'Digest username="a", realm="carrier.net", nonce="n", uri="sip:x", response="' \
        + "0" * 32 + '"'
    ours = answer(ch, method="INVITE", uri=ruri)
    req = request("INVITE", ruri, headers=[("Proxy-Authorization", downstream),
                                           ("Proxy-Authorization", ours),
                                           ("Authorization", ours)])
    assert await auth.auth_check(req)
    auth.consume_credentials(req)
    assert req.header_all("Proxy-Authorization") == [downstream]
    assert req.header_all("Authorization") == [ours]
    assert b"carrier.net" in req.to_bytes() and req.to_bytes().count(b"Proxy-Authorization") == 1
    with pytest.raises(LocalProtocolError):
        auth.consume_credentials(req)  # once


async def test_challenge_without_result(auth: Auth):
    reg = request()
    auth.challenge(reg)
    assert reg.outcome.status == UNAUTHORIZED
    assert [n for n, _ in reg.outcome.headers] == ["WWW-Authenticate"]
    inv = request("INVITE", f"sip:bob@{DOMAIN}")
    auth.challenge(inv, realm="realm.example")
    assert inv.outcome.status == PROXY_AUTH_REQUIRED
    assert challenge_params(inv)[0]["realm"] == "realm.example"
    stale = request()
    auth.www_challenge(stale, stale=True)
    assert challenge_params(stale)[0]["stale"] == "true"


# --- through the real proxy core ---------------------------------------------------------------


async def test_round_trip_through_the_core(auth: Auth):
    async def request_route(req, ctx):
        result = await ctx.auth.auth_check(req)
        if not result:
            return ctx.auth.challenge(req, result)
        ctx.auth.consume_credentials(req)
        return req.reply(200, "OK")

    script = types.ModuleType("auth_script")
    script.request_route = request_route
    tester = ScriptTester(script, domains=[DOMAIN], modules={"auth": auth})
    first = make_request("REGISTER", f"sip:{DOMAIN}", from_=f"sip:alice@{DOMAIN}",
                         to=f"<sip:alice@{DOMAIN}>", cseq=1)
    out = await tester.request(first)
    assert out.replied == UNAUTHORIZED
    ch = parse_challenge(out.reply.header("WWW-Authenticate")).params
    second = make_request("REGISTER", f"sip:{DOMAIN}", from_=f"sip:alice@{DOMAIN}",
                          to=f"<sip:alice@{DOMAIN}>", cseq=2,
                          headers=[("Authorization", answer(ch))])
    out = await tester.request(second)
    assert out.replied == 200
    third = make_request("REGISTER", f"sip:{DOMAIN}", from_=f"sip:alice@{DOMAIN}",
                         to=f"<sip:alice@{DOMAIN}>", cseq=3,
                         headers=[("Authorization", answer(ch, password="wrong", nc=2))])
    out = await tester.request(third)
    assert out.replied == UNAUTHORIZED


async def test_without_storage_it_challenges_but_cannot_check(clock: Clock):
    auth = Auth(None, secret=SECRET, clock=clock)
    ch = await first_challenge(auth)
    assert (await auth.auth_check(request())).status == UNAUTHORIZED
    with pytest.raises(LocalProtocolError):
        await authorize(auth, answer(ch))
