# SPDX-License-Identifier: Apache-2.0
"""Digest authentication against the ``subscriber`` table (Kamailio's auth + auth_db).

::

    if not (result := await ctx.auth.auth_check(req)):
        return ctx.auth.challenge(req, result)        # 401/407, or 400/403/500
    ctx.auth.consume_credentials(req)

How this works
--------------
*Nonces* need no database and no per-nonce memory. A nonce is 30 bytes in base64 (40
characters): creation time, expiry time, an index, this instance's id (four big-endian
32-bit numbers) and a 14-byte MAC of those 16 bytes: keyed BLAKE2s (RFC 7693 §2.5, a
MAC by construction; a quarter of HMAC-SHA256's cost in CPython, where HMAC sets up two
OpenSSL contexts per call), keyed with a hash of ``secret``. A nonce whose MAC is wrong
was not made here (or not with this secret): the request gets a fresh challenge. One
whose expiry has passed, or that claims to be made more than ``nonce_auth_max_drift``
seconds in the future, is *stale*: when the digest is right for
it, the challenge says ``stale=true`` and the client retries with the new nonce without
asking its user (RFC 7616 §3.3: stale only "with a valid digest for that nonce"). The
instance id is random per ``Auth`` object; several servers sharing the secret accept
each other's nonces, except for the replay checks below, which only the issuing
instance can make (another instance's nonce is answered stale when they are on).

*Replay protection* (RFC 2617 §4.5, RFC 7616 §3.4 nc; Kamailio's ``nonce_count`` and
``one_time_nonce``) keeps one byte per nonce index in a ring of ``nc_array_size`` bytes
(1 MiB by default, as Kamailio's default ``nc_array_order``): a nonce's byte is zeroed
when it is issued, and holds the highest ``nc`` accepted for it since. With
``nonce_count`` on, credentials with qop must carry an ``nc`` above that (a repeat or a
lower value is a replay) and below 255; credentials without qop (RFC 2069) have no nc
and are checked only when ``one_time_nonce`` is on, which accepts such a nonce once (it
marks the byte 255). ``one_time_nonce`` also applies to qop credentials when
``nonce_count`` is off. A nonce whose index is more than ``nc_array_size`` issues old has
lost its byte to a newer one: it is answered stale, as is a replay (Kamailio answers
both stale too, so an honest client re-authenticates without a prompt). These are
Kamailio's choices: without ``one_time_nonce`` (its default) RFC 2069 credentials can be
replayed until their nonce expires (``nonce_expire``, 300 s).

*Credentials* are checked in this order, the cheap checks first so that garbage never
reaches the database: the Digest credentials for the realm (none: challenge; malformed:
400), an algorithm we offer, qop rules, the nonce's MAC (bad: challenge), the digest
``uri`` against the Request-URI as URIs (RFC 2617 §3.2.2.5: "the resource designated
by the uri directive is the same as the resource specified in the Request-Line; if they
are not, the server SHOULD return a 400"), then one
``Storage.select`` on the subscriber table, the response, the nonce's age and the
replay state. An unknown user costs the same hash work as a wrong password and gets the
same answer, so the answers cannot enumerate users; ``AuthResult.reason`` tells the two
apart for the logs only.

The subscriber row is read on every request (no cache): ``siprouter user passwd``
takes effect at once. ``calculate_ha1`` reads the plain ``password`` column; without it,
``ha1`` (``MD5(user:realm:password)``) or, for a username written ``user@domain``,
``ha1b`` (``MD5(user@domain:realm:password)``), as Kamailio's kamctl stores them.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import secrets
import struct
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from siprouter.proxy.actions import ProxyRequest
from siprouter.sip.digest import (
    ALGORITHMS,
    DigestCredentials,
    compute_ha1,
    format_challenge,
    is_digest,
    parse_credentials,
)
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.uri import SipUri, parse_uri, uri_equal
from siprouter.storage.base import Storage, StorageError

__all__ = ["Auth", "AuthResult", "DEFAULT_NC_ARRAY_SIZE"]

log = logging.getLogger(__name__)

#: Nonce indexes tracked for replay protection (one byte each): Kamailio's default
#: ``nc_array_order`` 20. At 1,000 challenges a second that is 17 minutes of nonces,
#: far more than ``nonce_expire``.
DEFAULT_NC_ARRAY_SIZE = 1 << 20

_WWW = "Authorization"
_PROXY = "Proxy-Authorization"
_NONCE_BODY = struct.Struct(">IIII")  # created, expires, index, instance
_NONCE_MAC_BYTES = 14  # 16 + 14 = 30 bytes = 40 base64 characters, no padding
_NONCE_TEXT_LEN = 40
_NC_USED_UP = 255  # the replay byte of a nonce that may not be used again
_DUMMY_PASSWORD = secrets.token_hex(16)  # hashed for unknown users (same work, same answer)


class AuthResult:
    """What ``www_authorize`` / ``proxy_authorize`` / ``auth_check`` found.

    Truthy only when the request is authenticated. ``status``: None when it is, else
    the answer due: 401 / 407 (challenge; ``stale`` True when the nonce was stale but the
    digest right), 400 (malformed credentials or a digest ``uri`` that is not the
    request's), 403 (``auth_check``: authenticated as someone other than the From / To
    user), 500 (the subscriber table could not be read). ``username`` and ``realm``:
    from the credentials (``username`` None when there were none). ``reason``: for logs
    only, never for the peer. ``header``: the header the credentials were looked for in.
    """

    __slots__ = ("status", "stale", "username", "realm", "reason", "header")

    def __init__(self, status: int | None, reason: str, *, realm: str | None = None,
                 username: str | None = None, stale: bool = False,
                 header: str = _WWW) -> None:
        self.status = status
        self.stale = stale
        self.username = username
        self.realm = realm
        self.reason = reason
        self.header = header

    def __bool__(self) -> bool:
        return self.status is None

    def __repr__(self) -> str:
        stale = ", stale" if self.stale else ""
        return (f"AuthResult({self.status}{stale}, {self.reason!r}, username={self.username!r}, "
                f"realm={self.realm!r})")


class Auth:
    """Digest authentication (RFC 3261 §22, RFC 7616) against ``storage``'s subscriber
    table; see the module docstring.

    :param secret: key of the nonces' MAC; servers that share it accept each other's
        nonces. At least 16 bytes.
    :param nonce_expire: seconds a nonce is good for (Kamailio's ``nonce_expire``).
    :param algorithms: the algorithms challenges offer, most preferred first: "MD5",
        and "SHA-256" (needs ``calculate_ha1``: the ha1 columns hold MD5 only).
    :param qop: "auth" (challenges say ``qop="auth"``) or "" (RFC 2069 challenges).
    :param calculate_ha1: True: the ``password`` column holds the plain password;
        False: use ``ha1`` / ``ha1b``.
    :param use_domain: True: the subscriber row must have ``domain`` equal to the realm
        (or to the domain of a ``user@domain`` username); False: match the username
        only, preferring the row whose domain is the realm.
    :param accept_no_qop: accept RFC 2069 credentials (no qop) even when challenges
        offer qop; False: such credentials get a new challenge.
    :param nonce_count: refuse an ``nc`` not above the last one accepted for the nonce.
    :param one_time_nonce: accept a nonce once when its credentials carry no ``nc`` (or
        when ``nonce_count`` is off). Kamailio's ``one_time_nonce``.
    :param nc_array_size: nonces tracked for the two checks above (a power of two).
    :param nonce_auth_max_drift: seconds a nonce may claim to come from the future
        (clock steps; another server of a cluster).
    :param table: the subscriber table.
    :param clock: wall-clock seconds (tests move it).
    :raises LocalProtocolError: for a bad parameter.
    """

    def __init__(self, storage: Storage | None, *, secret: bytes, nonce_expire: int = 300,
                 algorithms: Sequence[str] = ("MD5",), qop: str = "auth",
                 calculate_ha1: bool = True, use_domain: bool = False,
                 accept_no_qop: bool = True, nonce_count: bool = True,
                 one_time_nonce: bool = False, nc_array_size: int = DEFAULT_NC_ARRAY_SIZE,
                 nonce_auth_max_drift: int = 3, table: str = "subscriber",
                 clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise LocalProtocolError("auth secret must be at least 16 bytes")
        if not isinstance(nonce_expire, int) or nonce_expire <= 0:
            raise LocalProtocolError(f"nonce_expire must be a positive number of seconds, "
                                     f"not {nonce_expire!r}")
        if qop not in ("auth", ""):
            raise LocalProtocolError(f'qop must be "auth" or "", not {qop!r}')
        if isinstance(algorithms, str) or not algorithms:
            raise LocalProtocolError("algorithms must be a non-empty list such as [\"MD5\"]")
        offered = []
        for name in algorithms:
            canonical = ALGORITHMS.get(str(name).lower())
            if canonical is None or canonical.endswith("-sess"):
                raise LocalProtocolError(
                    f"unsupported auth algorithm {name!r}; expected MD5 or SHA-256")
            if canonical != "MD5" and not calculate_ha1:
                raise LocalProtocolError(
                    f"auth algorithm {canonical} needs calculate_ha1 (the plain password): "
                    "the ha1 / ha1b columns hold MD5 hashes")
            offered.append(canonical)
        if nc_array_size <= 0 or nc_array_size & (nc_array_size - 1):
            raise LocalProtocolError(f"nc_array_size must be a power of two, not {nc_array_size!r}")
        self.storage = storage
        self.nonce_expire = nonce_expire
        self.algorithms: tuple[str, ...] = tuple(offered)
        # Credentials may use an offered algorithm or its "-sess" variant (liberal, as
        # Kamailio: the session variant needs nothing but the same HA1).
        self._accepted = frozenset(offered) | frozenset(f"{a}-sess" for a in offered)
        self.qop = qop
        self.calculate_ha1 = calculate_ha1
        self.use_domain = use_domain
        self.accept_no_qop = accept_no_qop
        self.nonce_count = nonce_count
        self.one_time_nonce = one_time_nonce
        self.nonce_auth_max_drift = nonce_auth_max_drift
        self.table = table
        self.clock = clock
        self._mac_key = hashlib.blake2s(secret, person=b"sipnonce").digest()
        self._instance = secrets.randbits(32)
        self._index = secrets.randbits(32)
        self._track = nonce_count or one_time_nonce
        self._nc_mask = nc_array_size - 1
        self._nc = bytearray(nc_array_size) if self._track else bytearray()
        self._columns = (("password", "domain") if calculate_ha1
                         else ("ha1", "ha1b", "domain"))
        # Requests authorized (for consume_credentials): request -> (header, value).
        self._used: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()

    # -- nonces ---------------------------------------------------------------------------

    def new_nonce(self) -> str:
        """A fresh nonce (see the module docstring); resets its replay state."""
        now = int(self.clock())
        index = self._index = (self._index + 1) & 0xFFFFFFFF
        body = _NONCE_BODY.pack(now, now + self.nonce_expire, index, self._instance)
        mac = hashlib.blake2s(body, key=self._mac_key, digest_size=_NONCE_MAC_BYTES).digest()
        if self._track:
            self._nc[index & self._nc_mask] = 0
        return binascii.b2a_base64(body + mac, newline=False).decode("ascii")

    def _open_nonce(self, nonce: str) -> tuple[int, int, int, int] | None:
        """(created, expires, index, instance) of a nonce made with our key, else None."""
        if len(nonce) != _NONCE_TEXT_LEN:
            return None
        try:
            raw = binascii.a2b_base64(nonce, strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        body = raw[:16]
        mac = hashlib.blake2s(body, key=self._mac_key, digest_size=_NONCE_MAC_BYTES).digest()
        if not hmac.compare_digest(mac, raw[16:]):
            return None
        return _NONCE_BODY.unpack(body)  # type: ignore[return-value]

    def _replayed(self, index: int, instance: int, nc: int | None) -> str | None:
        """Check and record one use of nonce ``index``; the reason it is refused, or None."""
        use_nc = self.nonce_count and nc is not None
        if not use_nc and not self.one_time_nonce:
            return None
        if instance != self._instance:
            return "nonce from another instance (replay state unknown)"
        if (self._index - index) & 0xFFFFFFFF > self._nc_mask:
            return "nonce too old for the replay table"
        slot = index & self._nc_mask
        seen = self._nc[slot]
        if use_nc:
            if nc >= _NC_USED_UP:  # type: ignore[operator]
                return "nc too big"
            if nc <= seen:  # type: ignore[operator]
                return "nc replayed"
            self._nc[slot] = nc  # type: ignore[assignment]
            return None
        if seen:
            return "one-time nonce reused"
        self._nc[slot] = _NC_USED_UP
        return None

    # -- authorizing ------------------------------------------------------------------------

    @staticmethod
    def _default_realm(req: ProxyRequest) -> str:
        # Kamailio: the To host for REGISTER (the user being registered), the From host
        # for everything else.
        try:
            uri = (req.to if req.method == "REGISTER" else req.from_).uri
        except SipParseError:
            return ""
        return uri.host if isinstance(uri, SipUri) else ""

    async def www_authorize(self, req: ProxyRequest, realm: str | None = None) -> AuthResult:
        """Check the ``Authorization`` credentials for ``realm`` (default: the To host
        for REGISTER, the From host otherwise). A failed result's status is 401, 400 or
        500; see :class:`AuthResult`."""
        return await self._authorize(req, realm, _WWW, 401)

    async def proxy_authorize(self, req: ProxyRequest, realm: str | None = None) -> AuthResult:
        """Check the ``Proxy-Authorization`` credentials for ``realm`` (default as
        ``www_authorize``). A failed result's status is 407, 400 or 500."""
        return await self._authorize(req, realm, _PROXY, 407)

    async def auth_check(self, req: ProxyRequest, realm: str | None = None, *,
                         check_identity: bool = True) -> AuthResult:
        """Kamailio's ``auth_check``: ``www_authorize`` for REGISTER, ``proxy_authorize``
        for anything else; then, with ``check_identity``, the authenticated user must be
        the To user (REGISTER) or the From user (otherwise), and with ``use_domain`` the
        host must be the subscriber's domain — else a 403 result."""
        if req.method == "REGISTER":
            result = await self._authorize(req, realm, _WWW, 401)
        else:
            result = await self._authorize(req, realm, _PROXY, 407)
        if not result or not check_identity:
            return result
        try:
            uri = (req.to if req.method == "REGISTER" else req.from_).uri
        except SipParseError:
            uri = None
        user, _, domain = (result.username or "").partition("@")
        ok = isinstance(uri, SipUri) and uri.user == user
        if ok and self.use_domain:
            ok = uri.host == (domain or result.realm or "").lower()  # type: ignore[union-attr]
        if not ok:
            self._used.pop(req, None)
            who = "To" if req.method == "REGISTER" else "From"
            return AuthResult(403, f"authenticated user is not the {who} user",
                              realm=result.realm, username=result.username,
                              header=result.header)
        return result

    async def _authorize(self, req: ProxyRequest, realm: str | None, header: str,
                         status: int) -> AuthResult:
        if realm is None:
            realm = self._default_realm(req)
        cred = None
        value = ""
        for value in req.header_all(header):
            if not is_digest(value):
                continue  # another scheme: not ours to judge
            try:
                c = parse_credentials(value, header)
            except SipParseError as exc:
                return AuthResult(400, f"malformed credentials ({exc.detail})", realm=realm,
                                  header=header)
            if c.realm == realm:
                cred = c
                break
        if cred is None:
            return AuthResult(status, "no credentials", realm=realm, header=header)
        username = cred.username

        def fail(code: int, reason: str, stale: bool = False) -> AuthResult:
            return AuthResult(code, reason, realm=realm, username=username, stale=stale,
                              header=header)

        if cred.algorithm not in self._accepted:
            return fail(status, f"algorithm {cred.algorithm} not offered")
        if cred.qop is None:
            if not self.accept_no_qop and self.qop:
                return fail(status, "credentials without qop refused")
        elif cred.qop not in ("auth", "auth-int"):
            return fail(400, f"unknown qop {cred.qop}")
        if cred.userhash:
            return fail(400, "userhash is not supported")  # never offered (RFC 7616 §3.4.4)
        opened = self._open_nonce(cred.nonce)
        if opened is None:
            return fail(status, "nonce not ours")
        if not self._uri_matches(cred.uri, req):
            return fail(400, "digest uri is not the Request-URI")

        user, at, user_domain = username.partition("@")
        try:
            row = await self._subscriber(user, user_domain or realm)
        except StorageError as exc:
            log.warning("auth: cannot read the %s table: %s", self.table, exc)
            return fail(500, "subscriber table unavailable")
        ha1 = self._ha1(row, cred, username, bool(at))
        if ha1 is None or not cred.matches(ha1, req.method, req.body):
            # Same work and same answer for both; only the log tells them apart.
            return fail(status, "unknown user" if row is None else "wrong password")

        created, expires, index, instance = opened
        now = self.clock()
        if expires < now or created > now + self.nonce_auth_max_drift:
            return fail(status, "nonce expired", stale=True)
        replay = self._replayed(index, instance, cred.nc_value)
        if replay is not None:
            return fail(status, replay, stale=True)
        self._used[req] = (header, value)
        return AuthResult(None, "authenticated", realm=realm, username=username,
                          header=header)

    async def _subscriber(self, user: str, domain: str) -> dict[str, Any] | None:
        storage = self.storage
        if storage is None:
            raise LocalProtocolError("Auth was built without a storage: it can challenge "
                                     "but not check credentials")
        if self.use_domain:
            rows = await storage.select(self.table, self._columns,
                                        {"username": user, "domain": domain}, limit=1)
            return rows[0] if rows else None
        rows = await storage.select(self.table, self._columns, {"username": user})
        if not rows:
            return None
        for row in rows:
            if row.get("domain") == domain:
                return row
        return rows[0]

    def _ha1(self, row: dict[str, Any] | None, cred: DigestCredentials, username: str,
             with_domain: bool) -> str | None:
        """The HA1 to check ``cred`` with; for an unknown user one made from a random
        password (the same hashing as for a known one), or None in ha1 mode."""
        if self.calculate_ha1:
            password = row.get("password") if row is not None else None
            if not password:
                password = _DUMMY_PASSWORD
            return compute_ha1(username, cred.realm, password,
                               cred.algorithm.removesuffix("-sess"))
        if row is None:
            return _DUMMY_PASSWORD  # 32 hex digits, as a stored MD5 HA1
        ha1 = row.get("ha1b" if with_domain else "ha1")
        return ha1.lower() if ha1 else _DUMMY_PASSWORD

    @staticmethod
    def _uri_matches(digest_uri: str, req: ProxyRequest) -> bool:
        """RFC 2617 §3.2.2.5: the credentials are for this request. Compared as URIs:
        scheme, host and port for SIP URIs (RFC 3261 §19.1.4 rules for those parts:
        host case-insensitive, an absent port not equal to 5060), and the user when the
        digest uri has one — SIPp (and other test tools) put the server's address,
        ``sip:HOST:PORT``, in the digest uri of an INVITE to ``sip:user@HOST:PORT``;
        RFC 3966 / text equality for others."""
        if digest_uri == req.ruri:
            return True
        try:
            a = parse_uri(digest_uri)
            b = req.uri
        except SipParseError:
            return False
        if isinstance(a, SipUri) and isinstance(b, SipUri):
            if a.scheme != b.scheme or a.port != b.port or (a.user is not None
                                                            and a.user != b.user):
                return False
            if a.host == b.host:
                return True
            # IPv6 references compare as addresses (RFC 5954 §4)
            return (a.host[0] == "[" and b.host[0] == "["
                    and uri_equal(SipUri(a.host), SipUri(b.host)))
        return uri_equal(a, b)

    # -- answering --------------------------------------------------------------------------

    def _challenge_headers(self, header_name: str, realm: str, stale: bool) -> list[tuple[str, str]]:
        nonce = self.new_nonce()
        qop = self.qop or None
        # RFC 8760 §2.4: one challenge per algorithm, the most preferred first.
        return [(header_name, format_challenge(realm, nonce, algorithm=a, qop=qop, stale=stale))
                for a in self.algorithms]

    def www_challenge(self, req: ProxyRequest, realm: str | None = None,
                      stale: bool = False) -> None:
        """Answer 401 with a WWW-Authenticate challenge per offered algorithm (fresh
        nonce; ``stale=true`` when ``stale``)."""
        if realm is None:
            realm = self._default_realm(req)
        req.reply(401, None, headers=self._challenge_headers("WWW-Authenticate", realm, stale))

    def proxy_challenge(self, req: ProxyRequest, realm: str | None = None,
                        stale: bool = False) -> None:
        """Answer 407 with a Proxy-Authenticate challenge per offered algorithm."""
        if realm is None:
            realm = self._default_realm(req)
        req.reply(407, None, headers=self._challenge_headers("Proxy-Authenticate", realm, stale))

    def challenge(self, req: ProxyRequest, result: AuthResult | None = None,
                  realm: str | None = None) -> None:
        """Answer a request that is not authenticated: with ``result`` 400, 403 or 500
        as it says, else a challenge — 401 for ``www_authorize`` results (and, without
        a result, for REGISTER), 407 for ``proxy_authorize`` results (and other
        methods) — with ``stale=true`` when the result was stale. ``realm`` defaults to
        the result's, else as ``www_authorize``."""
        if result is not None and result.status in (400, 403, 500):
            req.reply(result.status)
            return
        if result is not None:
            proxy = result.header == _PROXY
            if realm is None:
                realm = result.realm
        else:
            proxy = req.method != "REGISTER"
        stale = result is not None and result.stale
        if proxy:
            self.proxy_challenge(req, realm, stale)
        else:
            self.www_challenge(req, realm, stale)

    def consume_credentials(self, req: ProxyRequest) -> None:
        """Remove the credentials header line that authenticated ``req`` (Kamailio's
        ``consume_credentials``), so it is not forwarded; other credentials (for other
        realms, e.g. a proxy further on) stay.

        :raises LocalProtocolError: when ``req`` was not authenticated by this module.
        """
        used = self._used.pop(req, None)
        if used is None:
            raise LocalProtocolError("consume_credentials() needs a request authenticated by "
                                     "www_authorize / proxy_authorize / auth_check")
        header, value = used
        values = req.header_all(header)
        req.remove_header(header)
        kept = False
        for other in values:
            if other == value and not kept:
                kept = True  # the one that was used: dropped
                continue
            req.add_header(header, other)
