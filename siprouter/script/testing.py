# SPDX-License-Identifier: Apache-2.0
"""Testing kit: run a routing script through the real proxy core, with no sockets.

::

    from siprouter.script.testing import ScriptTester, make_request
    from siprouter.transport.types import Target

    async def test_unknown_user_gets_404():
        tester = ScriptTester("route.py", domains=["example.com"])
        out = await tester.request(make_request("INVITE", "sip:nobody@example.com"))
        assert out.replied == 404

    async def test_foreign_domain_goes_to_the_gateway():
        tester = ScriptTester("route.py", next_hop="sip:10.0.0.1:5060")
        out = await tester.request('''
            OPTIONS sip:carol@elsewhere.example SIP/2.0
            Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds
            Max-Forwards: 70
            To: <sip:carol@elsewhere.example>
            From: <sip:alice@example.com>;tag=1928301774
            Call-ID: a84b4c76e66710
            CSeq: 63104 OPTIONS
        ''')
        assert out.forwarded_to == Target("udp", "10.0.0.1", 5060)
        assert out.forwarded.max_forwards == 69

A ``ScriptTester`` builds a ``ProxyCore`` exactly as the server does, but on a
``RecordingTransport`` that only records what would be sent. ``request`` and
``response`` feed one message to ``ProxyCore.on_message`` (parse, sanity, the script,
the actions), wait for the script to finish, and return an ``Outcome`` with what was
sent, parsed again. An exception in the script is raised out of ``request`` with its
own traceback (pass ``raise_errors=False`` to see the 500 the server would send).

Message text may be written as a Python triple-quoted string: it is dedented, line
ends become CRLF and Content-Length is set to the body's length. Bytes are fed as they
are, for tests of malformed input.

With pytest, ``pytest_plugins = ["siprouter.script.testing"]`` in a ``conftest.py``
provides the ``script_tester`` fixture, a factory taking ``ScriptTester``'s arguments.
Tests are ``async def``; they need pytest-asyncio (``asyncio_mode = "auto"``) or anyio.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import secrets
import textwrap
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from siprouter.proxy.myself import Myself
from siprouter.proxy.tm import TimerQueue
from siprouter.script.api import Context, make_proxy_core
from siprouter.script.loader import LoadedScript, load_script, script_from_module
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import Request, Response, parse_message
from siprouter.transaction.timers import Timers
from siprouter.transport.types import ListenSocket, Source, Target, parse_socket_spec

__all__ = [
    "ScriptTester",
    "Outcome",
    "RecordingTransport",
    "make_request",
    "make_response",
    "make_cancel",
    "make_ack",
    "sip_text",
    "script_tester",
]

_conn_ids = itertools.count(1)


class RecordingTransport:
    """The transport interface of ``ProxyCore``, recording instead of sending.

    ``sent`` holds ``(data, destination)`` in order; the destination is a ``Target``
    (``send``) or the ``Source`` a reply went back to (``send_to_source``).
    ``unreachable``: hosts to which a send fails (the sender's ``on_error`` is called).
    """

    def __init__(self, sockets: Iterable[ListenSocket]) -> None:
        self.sockets: list[ListenSocket] = list(sockets)
        self.sent: list[tuple[bytes, Target | Source]] = []
        self.unreachable: set[str] = set()

    def send(self, data: bytes, target: Target, *, prefer: ListenSocket | None = None,
             on_error: Any = None) -> None:
        if target.host in self.unreachable:
            # A host the test declared unreachable: the send fails (e.g. TCP connect
            # refused), which the stateful proxy turns into a 503 (RFC 3261 §8.1.3.1).
            if on_error is not None:
                on_error(ConnectionRefusedError(f"{target.host} is unreachable (test)"))
            return
        self.sent.append((bytes(data), target))

    def send_to_source(self, data: bytes, source: Source) -> None:
        self.sent.append((bytes(data), source))

    def is_local(self, host: str, port: int, proto: str | None = None) -> bool:
        host = host.strip("[]").lower()
        for s in self.sockets:
            if s.port == port and (proto is None or s.proto == proto) and (
                s.host == host or s.is_wildcard
            ):
                return True
        return False


class Outcome:
    """What the core sent for one message fed to the tester.

    ``replied``: status of the response sent back for a request (None if none).
    ``reply``: that response, parsed. ``forwarded``: the request (or, for ``response``,
    the response) sent onward, parsed; ``forwarded_to``: its ``Target``. ``dropped``:
    nothing was sent at all. ``sent``: every ``(bytes, Target | Source)`` in order.
    ``error``: the exception the script raised (only with ``raise_errors=False``).
    ``requests`` / ``responses``: every request / response sent, parsed, with its
    destination (a fork sends several requests for one).
    """

    __slots__ = ("sent", "replied", "reply", "replied_to", "forwarded", "forwarded_to",
                 "dropped", "error", "requests", "responses")

    def __init__(self, sent: list[tuple[bytes, Target | Source]], *, is_request: bool,
                 error: BaseException | None = None) -> None:
        self.sent = sent
        self.error = error
        self.replied: int | None = None
        self.reply: Response | None = None
        self.replied_to: Target | Source | None = None
        self.forwarded: Request | Response | None = None
        self.forwarded_to: Target | Source | None = None
        self.dropped = not sent
        #: Every request / response sent, parsed, with where it went, in order.
        self.requests: list[tuple[Request, Target | Source]] = []
        self.responses: list[tuple[Response, Target | Source]] = []
        for data, dest in sent:
            msg = parse_message(data)
            (self.responses if isinstance(msg, Response) else self.requests).append((msg, dest))
            if is_request and isinstance(msg, Response):
                if self.reply is None:
                    self.reply, self.replied, self.replied_to = msg, msg.status, dest
            elif self.forwarded is None:
                self.forwarded, self.forwarded_to = msg, dest

    @property
    def reason(self) -> str | None:
        """The reason phrase of the reply, if one was sent."""
        return self.reply.reason if self.reply is not None else None

    def __repr__(self) -> str:
        if self.dropped:
            what = "dropped"
        elif self.replied is not None:
            what = f"replied {self.replied} {self.reason!r} to {self.replied_to!r}"
        else:
            what = f"forwarded {self.forwarded!r} to {self.forwarded_to!r}"
        return f"<Outcome {what}>"


class ManualTimerQueue(TimerQueue):
    """The transaction timers on a clock the test moves (``ScriptTester.advance``)."""

    __slots__ = ("clock",)

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self.clock = start

    def now(self) -> float:
        return self.clock

    def _arm(self, deadline: float) -> None:
        self._armed = deadline  # nothing to arm: advance() runs what is due

    def advance(self, seconds: float) -> None:
        """Move the clock and fire every timer now due, in deadline order."""
        end = self.clock + seconds
        while self._heap and self._heap[0][0] <= end:
            self.clock = max(self.clock, self._heap[0][0])
            self._armed = None
            self.run_due(self.clock)
        self.clock = end
        self._armed = self._heap[0][0] if self._heap else None


class _OpenOnFirstUse:
    """The default modules' database, opened when a module first reads it (most tests
    never do, and an open SQLite connection is a thread)."""

    def __init__(self, tester: ScriptTester, storage: Any) -> None:
        self.tester = tester
        self.storage = storage

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.storage, name)
        if not callable(attr) or not asyncio.iscoroutinefunction(attr):
            return attr

        async def opened_first(*args: Any, **kwargs: Any) -> Any:
            await self.tester._open_storage()
            return await attr(*args, **kwargs)

        return opened_first


class ScriptTester:
    """Feeds messages to a routing script through the real proxy core, with no sockets.

    :param script: a ``LoadedScript``, a spec for ``load_script`` (file path or
        ``"pkg.module[:attr]"``), an imported module, or None for the default script.
    :param domains: the domains the server is responsible for.
    :param listen: listen sockets as in the config (``"udp:127.0.0.1:5060"``); they are
        the server's own addresses (``ctx.is_myself``, loop detection).
    :param hostname: the server's host name (one of its own domains).
    :param params: ``ctx.params``. :param next_hop: ``ctx.next_hop``.
    :param raise_errors: re-raise an exception from the script out of ``request`` /
        ``response`` (default); when False the core's handling is observed (a 500).
    :param modules: the feature modules the script sees as ``ctx.<name>``. None: the
        ones ``siprouter run`` gives a script with its embedded defaults — ``location``
        (in memory), ``registrar`` and ``auth`` on an in-memory SQLite database holding
        ``users`` (``{"alice@example.com": "secret"}``; more with ``add_user``).
    :raises ScriptError: the script does not load.
    :raises ValueError: a bad ``listen`` entry.
    """

    def __init__(self, script: str | os.PathLike[str] | LoadedScript | types.ModuleType | None = None,
                 *, domains: Iterable[str] = (), listen: Iterable[str] = ("udp:127.0.0.1:5060",),
                 hostname: str | None = "sip.test", params: Mapping[str, Any] | None = None,
                 next_hop: str | None = None, raise_errors: bool = True,
                 secret: bytes = b"siprouter-testing", timers: Timers | None = None,
                 modules: Mapping[str, Any] | None = None,
                 users: Mapping[str, str] | None = None) -> None:
        sockets = [ListenSocket(*parse_socket_spec(spec)) for spec in listen]
        if not sockets:
            raise ValueError("listen: at least one socket is needed (e.g. \"udp:127.0.0.1:5060\")")
        self.raise_errors = raise_errors
        self.transport = RecordingTransport(sockets)
        self.myself = Myself(domains, sockets, hostname)
        self._error: BaseException | None = None
        #: Transaction timers run on this clock: ``advance(seconds)`` moves it.
        self.timers = ManualTimerQueue()
        self._storage: Any = None
        self._users = dict(users or {})
        if modules is None:
            modules = self._default_modules()
        self.modules = dict(modules)
        self.core = make_proxy_core(self.transport, myself=self.myself,
                                    params=dict(params or {}), next_hop=next_hop, secret=secret,
                                    timers=timers, timer_queue=self.timers, modules=modules)
        self.script: LoadedScript
        self.set_script(script)

    def _default_modules(self) -> dict[str, Any]:
        from siprouter.modules.auth import Auth
        from siprouter.modules.location import Location
        from siprouter.modules.registrar import Registrar
        from siprouter.storage import open_storage

        self._storage = _OpenOnFirstUse(self, open_storage("sqlite:///:memory:"))
        location = Location(None, db_mode=0)
        return {"auth": Auth(self._storage, secret=secrets.token_bytes(32)),
                "registrar": Registrar(location), "location": location}

    async def _open_storage(self) -> None:
        """Open the in-memory database on first use (the constructor cannot await)."""
        db = self._storage
        if db is None or getattr(self, "_storage_open", False):
            return
        self._storage_open = True
        db = db.storage
        await db.open()
        await db.ensure_tables()
        users, self._users = self._users, {}
        for address, password in users.items():
            await self.add_user(address, password)

    async def add_user(self, address: str, password: str) -> None:
        """Add a subscriber ``user@domain`` with ``password`` (the default modules only)."""
        if self._storage is None:
            raise LocalProtocolError("add_user needs the default modules (modules=None)")
        await self._open_storage()
        user, at, domain = address.partition("@")
        if not at or not user or not domain:
            raise LocalProtocolError(f"a user is USER@DOMAIN, not {address!r}")
        await self._storage.storage.insert("subscriber", {"username": user, "domain": domain,
                                                          "password": password})

    async def close(self) -> None:
        """Close the default modules' database (its thread); the fixture does this."""
        if self._storage is not None and getattr(self, "_storage_open", False):
            self._storage_open = False
            await self._storage.storage.close()

    @property
    def context(self) -> Context:
        """The ``ctx`` the script receives."""
        return self.core.context

    @property
    def sockets(self) -> list[ListenSocket]:
        return self.transport.sockets

    def set_script(self, script: str | os.PathLike[str] | LoadedScript | types.ModuleType | None) -> None:
        """Use another script from now on (what a reload does)."""
        if isinstance(script, LoadedScript):
            loaded = script
        elif isinstance(script, types.ModuleType):
            loaded = script_from_module(script)
        else:
            loaded = load_script(script)
        self.script = loaded
        self.core.set_script(self._watched(loaded))

    def _watched(self, script: LoadedScript) -> LoadedScript:
        """The script with its route functions wrapped to catch what they raise."""
        from dataclasses import replace

        def wrap(fn: Any, is_async: bool) -> Any:
            if fn is None:
                return None
            if is_async:
                @functools.wraps(fn)
                async def watched_async(msg: Any, ctx: Any) -> Any:
                    try:
                        return await fn(msg, ctx)
                    except Exception as e:
                        self._error = e
                        raise
                return watched_async

            @functools.wraps(fn)
            def watched(msg: Any, ctx: Any) -> Any:
                try:
                    return fn(msg, ctx)
                except Exception as e:
                    self._error = e
                    raise
            return watched

        return replace(script, request_route=wrap(script.request_route, script.request_async),
                       reply_route=wrap(script.reply_route, script.reply_async))

    def source(self, spec: str = "udp:192.0.2.10:5060") -> Source:
        """A ``Source`` from ``"proto:ip:port"``, arriving on our first socket of that
        transport and address family."""
        proto, ip, port = parse_socket_spec(spec)
        v6 = ":" in ip
        for s in self.transport.sockets:
            if s.proto == proto and (":" in s.host) == v6:
                return Source(proto, ip, port, s, None if proto == "udp" else next(_conn_ids))
        raise ValueError(f"source {spec!r}: no {proto} listen socket for "
                         f"{'IPv6' if v6 else 'IPv4'}; add one to listen=")

    def advance(self, seconds: float) -> Outcome:
        """Move the transaction clock by ``seconds``; returns what the timers sent
        (retransmissions, 100 Trying, 408 on timeout, CANCELs …)."""
        start = len(self.transport.sent)
        self.timers.advance(seconds)
        return Outcome(self.transport.sent[start:], is_request=True, error=None)

    @property
    def tm(self) -> Any:
        """The transaction manager (``siprouter.proxy.tm.TransactionManager``)."""
        return self.core.tm

    async def request(self, msg: str | bytes, *, source: str | Source = "udp:192.0.2.10:5060",
                      timeout: float = 5.0) -> Outcome:
        """Feed a request; returns what the core sent for it.

        :raises Exception: what the script raised, when ``raise_errors`` is on.
        :raises TimeoutError: the script has not finished after ``timeout`` seconds.
        """
        return await self._feed(msg, source, timeout, is_request=True)

    async def response(self, msg: str | bytes, *, source: str | Source = "udp:192.0.2.20:5060",
                       timeout: float = 5.0) -> Outcome:
        """Feed a response (``reply_route``); returns what the core sent for it. The
        response's topmost Via must be one of ours, or the core drops it."""
        return await self._feed(msg, source, timeout, is_request=False)

    async def _feed(self, msg: str | bytes, source: str | Source, timeout: float,
                    is_request: bool) -> Outcome:
        data = msg if isinstance(msg, bytes | bytearray) else sip_text(msg)
        src = source if isinstance(source, Source) else self.source(source)
        if self._users:
            await self._open_storage()
        start = len(self.transport.sent)
        self._error = None
        self.core.on_message(bytes(data), src)
        try:
            await asyncio.wait_for(self.core.drain(), timeout)
        except TimeoutError:
            raise TimeoutError(f"the routing script did not finish within {timeout} s") from None
        error, self._error = self._error, None
        if error is not None and self.raise_errors:
            raise error
        return Outcome(self.transport.sent[start:], is_request=is_request, error=error)


# --- building messages ---------------------------------------------------------------


def sip_text(text: str) -> bytes:
    """Message text as written in a test -> wire bytes.

    Dedents, drops leading blank lines, makes every line end CRLF, closes the header
    section when it is not closed, and sets Content-Length (added when missing) to the
    length of the body.
    """
    text = textwrap.dedent(text).lstrip("\r\n")
    text = text.replace("\r\n", "\n")
    head, sep, body = text.partition("\n\n")
    if not sep:
        head, body = text.rstrip("\n"), ""
    lines = head.split("\n")
    body_bytes = body.replace("\n", "\r\n").encode("utf-8")
    out = []
    have_length = False
    for line in lines:
        name, colon, _ = line.partition(":")
        if colon and not line[:1].isspace() and name.strip().lower() in ("content-length", "l"):
            line = f"{name.strip()}: {len(body_bytes)}"
            have_length = True
        out.append(line)
    if not have_length:
        out.append(f"Content-Length: {len(body_bytes)}")
    return ("\r\n".join(out) + "\r\n\r\n").encode("utf-8") + body_bytes


def _token() -> str:
    return secrets.token_hex(6)


def make_request(method: str = "INVITE", ruri: str = "sip:bob@example.com", *,
                 headers: Mapping[str, str | None] | Iterable[tuple[str, str | None]] | None = None,
                 body: str | bytes = "", from_: str = "sip:alice@example.com", to: str | None = None,
                 via_host: str = "192.0.2.10", transport: str = "UDP", call_id: str | None = None,
                 cseq: int = 1) -> str:
    """A valid request (RFC 3261 §8.1.1) as text, with a fresh Call-ID, branch and From tag.

    :param to: the To value (default: the Request-URI in brackets); give
        ``"<sip:bob@example.com>;tag=abc"`` for an in-dialog request.
    :param from_: the From URI (a tag is added) or a full value containing ``;tag=``.
    :param via_host: sent-by of the Via (``"host"`` or ``"host:port"``).
    :param headers: extra headers; one with the name of a default header (Via,
        Max-Forwards, From, To, Call-ID, CSeq, Contact, Content-Type, Content-Length)
        replaces it, and a value of None removes it. Names are matched case-insensitively.
    :param body: the body; Content-Type defaults to application/sdp when there is one.
    """
    method = method.upper()
    defaults: dict[str, tuple[str, str]] = {}

    def put(name: str, value: str) -> None:
        defaults[name.lower()] = (name, value)

    put("Via", f"SIP/2.0/{transport.upper()} {via_host};branch=z9hG4bK{_token()}")
    put("Max-Forwards", "70")
    put("From", from_ if ";tag=" in from_ else f"<{from_}>;tag={_token()}")
    put("To", to if to is not None else f"<{ruri}>")
    put("Call-ID", call_id or f"{_token()}@{via_host.rpartition(':')[0] or via_host}")
    put("CSeq", f"{cseq} {method}")
    if method in ("INVITE", "SUBSCRIBE", "REFER", "REGISTER"):
        user = from_.partition(":")[2].partition("@")[0] if "@" in from_ else "alice"
        put("Contact", f"<sip:{user.strip('<>')}@{via_host};transport={transport.lower()}>")
    if body:
        put("Content-Type", "application/sdp")
    extra: list[tuple[str, str]] = []
    body_text = body.decode("utf-8") if isinstance(body, bytes) else body
    put("Content-Length", str(len(body_text.encode("utf-8"))))
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    for name, value in items:
        key = name.lower()
        if key in defaults:
            if value is None:
                del defaults[key]
            else:
                defaults[key] = (name, value)
        elif value is not None:
            extra.append((name, value))
    length = defaults.pop("content-length", None)
    lines = [f"{method} {ruri} SIP/2.0"]
    lines += [f"{name}: {value}" for name, value in defaults.values()]
    lines += [f"{name}: {value}" for name, value in extra]
    if length is not None:
        lines.append(f"{length[0]}: {length[1]}")
    return "\r\n".join(lines) + "\r\n\r\n" + body_text


def _hop_by_hop(method: str, request: str | bytes | Request, to: str | None) -> str:
    """CANCEL (§9.1) and ACK for a non-2xx response (§17.1.1.3) built from the request:
    same Request-URI, Call-ID, From, CSeq number, Route, and only the top Via."""
    if not isinstance(request, Request):
        parsed = parse_message(request if isinstance(request, bytes) else sip_text(request))
        if not isinstance(parsed, Request):
            raise ValueError(f"make_{method.lower()} needs a request")
        request = parsed
    lines = [f"{method} {request.ruri} SIP/2.0",
             f"Via: {request.header_all('Via')[0].split(',')[0].strip()}",
             f"Max-Forwards: {request.max_forwards if request.max_forwards is not None else 70}",
             f"From: {request.header('From')}",
             f"To: {to if to is not None else request.header('To')}",
             f"Call-ID: {request.call_id}",
             f"CSeq: {request.cseq.seq} {method}"]
    lines += [f"Route: {value}" for value in request.header_all("Route")]
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


def make_cancel(request: str | bytes | Request) -> str:
    """The CANCEL for ``request`` (RFC 3261 §9.1), as text."""
    return _hop_by_hop("CANCEL", request, None)


def make_ack(request: str | bytes | Request, to_tag: str) -> str:
    """The ACK for a non-2xx final response to ``request`` whose To tag is ``to_tag``
    (RFC 3261 §17.1.1.3), as text."""
    if not isinstance(request, Request):
        parsed = parse_message(request if isinstance(request, bytes) else sip_text(request))
        if not isinstance(parsed, Request):
            raise ValueError("make_ack needs a request")
        request = parsed
    to = request.header("To") or ""
    return _hop_by_hop("ACK", request, to if ";tag=" in to.lower() else f"{to};tag={to_tag}")


def make_response(request: str | bytes | Request, status: int = 200, reason: str | None = None, *,
                  to_tag: str | None = None, headers: Iterable[tuple[str, str]] = (),
                  body: bytes = b"") -> bytes:
    """A response to ``request`` (e.g. ``outcome.forwarded``) as the next hop would send
    it (RFC 3261 §8.2.6): Via, From, Call-ID, CSeq copied, To tagged."""
    if not isinstance(request, Request):
        data = request if isinstance(request, bytes) else sip_text(request)
        parsed = parse_message(data)
        if not isinstance(parsed, Request):
            raise ValueError("make_response needs a request")
        request = parsed
    return request.make_response(status, reason, to_tag=to_tag or _token(), headers=headers,
                                 body=body)


# --- pytest plugin ---------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the kit works without pytest, the fixture needs it
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    async def script_tester() -> Any:
        """Factory fixture: ``tester = script_tester("route.py", domains=[...])``; the
        testers are closed after the test."""
        made: list[ScriptTester] = []

        def factory(script: str | os.PathLike[str] | Path | LoadedScript | types.ModuleType | None = None,
                    **kwargs: Any) -> ScriptTester:
            tester = ScriptTester(script, **kwargs)
            made.append(tester)
            return tester

        yield factory
        for tester in made:
            await tester.close()
else:  # pragma: no cover
    script_tester = None  # type: ignore[assignment]
