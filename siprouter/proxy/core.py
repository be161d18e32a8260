# SPDX-License-Identifier: Apache-2.0
"""The path of a message through the server (DESIGN.md "The path of a message").

How this works
--------------
The transport calls ``ProxyCore.on_message(data, source)`` for every datagram or framed
stream message, synchronously. The core

1. parses it (``parse_message``); a request too broken to parse but readable enough to
   answer gets a stateless 4xx built from the salvageable headers, anything else is
   dropped, counted and logged at debug level (rate limited);
2. requests: runs the sanity stage, then the routing script's ``request_route``, then
   carries out what the script decided (reply / forward / drop);
   responses: checks that the topmost Via is ours, runs ``reply_route``, strips our
   Via and sends the response on by the next Via (§16.11, §18.2.2);
3. runs the script's coroutine *inline*: it is started with ``send(None)`` and, when it
   finishes without awaiting anything (the common case), no asyncio Task is created.
   Only a script that really awaits (a database, DNS …) is handed to the event loop.

Nothing here waits; every send is fire-and-forget on the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from siprouter.proxy.actions import Drop, Forward, ProxyRequest, ProxyResponse, Relay, Reply
from siprouter.proxy.myself import Myself
from siprouter.proxy.sanity import UnsupportedExtension, check_request, check_response
from siprouter.proxy.stateless import (
    DEFAULT_MAX_FORWARDS,
    MAGIC_COOKIE,
    TM_BRANCH_PREFIX,
    is_forbidden_destination,
    response_target,
    stateless_branch,
    stateless_to_tag,
    uri_target,
)
from siprouter.proxy.stats import CoreStats
from siprouter.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from siprouter.sip.headers import format_params
from siprouter.sip.message import parse_message, salvage_response
from siprouter.sip.uri import SipUri
from siprouter.transport.types import Source, Target

__all__ = ["ProxyCore", "CoreStats", "message_log_fields"]


def _rr_uri(sock: Any) -> str:
    """Our Record-Route URI for a listen socket (with ``transport`` when not UDP)."""
    if sock.proto == "udp":
        return f"sip:{sock.via_host_port}"
    return f"sip:{sock.via_host_port};transport={sock.proto}"

log = logging.getLogger("siprouter.core")

# At most this many "bad message" debug lines per second, so a flood of garbage cannot
# fill the disk (STYLE.md §2: drop, count, log a truncated copy with rate limiting).
_BAD_LOG_PER_SECOND = 10
# Parsed destination URIs kept for reuse (scripts forward to a handful of fixed next hops).
_TARGET_CACHE_SIZE = 256


def message_log_fields(msg: Any) -> dict[str, str]:
    """The ``extra`` of a per-message log line: the Call-ID, so that every line about one
    call can be found (``grep``, or a ``call_id`` query on JSON logs)."""
    try:
        return {"call_id": msg.call_id}
    except (SipParseError, AttributeError):
        return {"call_id": "-"}


def _no_script(req: ProxyRequest, ctx: Any) -> None:
    req.outcome = Reply(500, "No Routing Script", (), b"")


class ProxyCore:
    """Parse → sanity → script → actions, for every received message.

    :param transport: ``TransportManager`` or anything with ``sockets``, ``send``,
        ``send_to_source`` (the testing kit passes a recording one).
    :param myself: who we are (domains, listen addresses, host name).
    :param context_factory: builds the ``ctx`` of route functions from the core (the
        script layer passes its ``Context``; the proxy layer does not import it).
    :param request_cls, response_cls: the classes messages are parsed into (the script
        layer's, which add the verbs).
    :param script: a ``LoadedScript`` (``request_route``/``reply_route``); see ``set_script``.
    :param secret: key for branch and To-tag hashes (random per process by default).
    """

    def __init__(self, transport: Any, *, myself: Myself, script: Any = None,
                 context_factory: Callable[[ProxyCore], Any] | None = None,
                 request_cls: type[ProxyRequest] = ProxyRequest,
                 response_cls: type[ProxyResponse] = ProxyResponse,
                 secret: bytes | None = None) -> None:
        self.transport = transport
        self.local = myself
        self.secret = secret or os.urandom(16)
        self._request_cls = request_cls
        self._response_cls = response_cls
        #: The ``ctx`` handed to route functions (the script layer's ``Context``).
        self.context: Any = context_factory(self) if context_factory is not None else None
        self.stats = CoreStats()
        self.script: Any = None
        self._request_route: Callable[..., Any] = _no_script
        self._reply_route: Callable[..., Any] | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._targets: dict[str, Target] = {}
        self._out_sockets: dict[tuple[str, bool], Any] = {}
        self._via_prefixes: tuple[str, ...] | None = None
        self._bad_log_window = 0.0
        self._bad_log_count = 0
        #: The transaction layer (``siprouter.proxy.tm.TransactionManager``); None: the
        #: core is stateless only and ``relay()`` is refused.
        self.tm: Any = None
        if script is not None:
            self.set_script(script)

    # -- script ----------------------------------------------------------------------------

    def set_script(self, script: Any) -> None:
        """Swap the routing functions in one step; messages being handled keep theirs."""
        self._request_route, self._reply_route = script.request_route, script.reply_route
        self.script = script

    def _run(self, fn: Callable[..., Any], msg: Any, then: Callable[[Any], None]) -> None:
        """Call a route function ``fn(msg, ctx)`` and, when it is done, ``then(msg)``."""
        self._call(fn, (msg,), msg, then, self._script_failed)

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], msg: Any,
              then: Callable[[Any], None],
              failed: Callable[[Any, Exception], None] | None = None) -> None:
        """Call a script function ``fn(*args, ctx)`` and, when it is done, ``then(msg)``;
        when it raises, ``failed(msg, exc)``. A coroutine runs inline until it really
        awaits something; only then does it go to the event loop."""
        try:
            result = fn(*args, self.context)
            if result is not None and hasattr(result, "send"):
                try:
                    yielded = result.send(None)
                except StopIteration:
                    pass
                else:
                    if self.tm is not None and type(msg) is self._request_cls \
                            and msg.phase == "request_route" \
                            and msg.method not in ("ACK", "CANCEL"):
                        # The script waits for something (a database, a DNS answer): the
                        # request's server transaction starts now, so its retransmissions
                        # are absorbed rather than run through the script again (a
                        # REGISTER would be saved twice, a nonce count seen twice), and
                        # an INVITE gets 100 Trying after 200 ms (§17.2.1).
                        with contextlib.suppress(SipParseError):
                            self.tm.begin(msg)
                    fut = asyncio.ensure_future(self._resume(result, yielded, msg, then, failed))
                    self._pending.add(fut)
                    fut.add_done_callback(self._pending.discard)
                    return
        except Exception as e:  # noqa: BLE001 - a script bug must not kill the worker
            (failed or self._script_failed)(msg, e)
            return
        then(msg)

    async def _resume(self, coro: Any, yielded: Any, msg: Any, then: Callable[[Any], None],
                      failed: Callable[[Any, Exception], None] | None = None) -> None:
        """Finish a script coroutine that awaited something, on the event loop."""
        try:
            while True:
                if yielded is None:
                    await asyncio.sleep(0)
                else:
                    # The coroutine yielded an asyncio future (it awaits it): wait until it
                    # is done, then let the coroutine pick up its result.
                    yielded._asyncio_future_blocking = False
                    await asyncio.wait((yielded,))
                try:
                    yielded = coro.send(None)
                except StopIteration:
                    break
        except Exception as e:  # noqa: BLE001
            (failed or self._script_failed)(msg, e)
            return
        then(msg)

    def _script_failed(self, msg: Any, exc: Exception) -> None:
        if isinstance(exc, RemoteProtocolError):
            # The script read a header that turned out malformed: the sender's fault.
            self.stats.bad_msgs += 1
            if isinstance(msg, ProxyRequest) and exc.status_hint and msg.outcome is None:
                self._send_reply(msg, exc.status_hint, exc.reason)
            return
        self.stats.script_errors += 1
        where = getattr(self.script, "name", "script")
        log.error("routing script %s failed on %r: %s", where, msg, exc, exc_info=exc)
        if isinstance(msg, ProxyRequest) and msg.method != "ACK":
            if msg.outcome is None:
                self._send_reply(msg, 500, "Server Internal Error")
            else:
                # What the script decided before it failed still happens, as it would
                # have in a configuration language that acts at once.
                self._finish_request(msg)

    async def drain(self) -> None:
        """Wait until every script call still running has finished."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    # -- receiving -------------------------------------------------------------------------

    def on_message(self, data: bytes, source: Source) -> None:
        """Handle one received message. Never raises for bad input."""
        try:
            msg = parse_message(data, datagram=source.proto == "udp",
                                request_cls=self._request_cls, response_cls=self._response_cls)
        except SipParseError as e:
            self._bad_message(data, source, e)
            return
        msg.source = source
        if type(msg) is self._request_cls:
            self.stats.count_request(msg.method, source.proto)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("received %s %s from %s", msg.method, msg.ruri, source,
                          extra=message_log_fields(msg))
            self._on_request(msg)
        else:
            self.stats.count_reply(msg.status, source.proto)  # type: ignore[attr-defined]
            if log.isEnabledFor(logging.DEBUG):
                log.debug("received %s %s from %s", msg.status, msg.reason, source,  # type: ignore[attr-defined]
                          extra=message_log_fields(msg))
            self._on_response(msg)  # type: ignore[arg-type]

    def on_stream_error(self, exc: SipParseError, source: Source, partial: bytes) -> None:
        """The transport's hook for a stream that cannot be framed: answer if possible."""
        self._bad_message(partial, source, exc)

    def _bad_message(self, data: bytes, source: Source, e: RemoteProtocolError) -> None:
        self.stats.bad_msgs += 1
        if log.isEnabledFor(logging.DEBUG):
            now = time.monotonic()
            if now - self._bad_log_window >= 1.0:
                self._bad_log_window, self._bad_log_count = now, 0
            if self._bad_log_count < _BAD_LOG_PER_SECOND:
                self._bad_log_count += 1
                log.debug("bad message from %s: %s; first bytes %r", source, e, data[:120])
        if e.status_hint is None:
            return
        reply = salvage_response(data, e.status_hint, e.reason,
                                 to_tag=os.urandom(6).hex())
        if reply is not None:
            self.stats.sent_replies += 1
            self.transport.send_to_source(reply, source)

    # -- requests --------------------------------------------------------------------------

    def _on_request(self, req: ProxyRequest) -> None:
        req.outcome = None
        req.destination = None
        req.path = ()
        req.transaction = None
        req.branches = None
        req.record_route_on = False
        req.track_dialog_on = False
        req.phase = "request_route"
        try:
            check_request(req)
        except RemoteProtocolError as e:
            self.stats.bad_msgs += 1
            if req.method == "ACK" or e.status_hint is None:
                return
            headers = ()
            if isinstance(e, UnsupportedExtension):
                headers = (("Unsupported", ", ".join(e.unsupported)),)
            self._send_reply(req, e.status_hint, e.reason, headers)
            return
        tm = self.tm
        if tm is not None:
            # §17.2.3: retransmissions and non-2xx ACKs of our transactions end here
            # (with none at all, as on a stateless relay, there is nothing to match).
            if tm.server and tm.absorb(req):
                return
            dialogs = tm.dialogs
            if dialogs is not None and len(dialogs) and req.in_dialog:
                dialogs.on_request(req, tm.queue.now())
        self._run(self._request_route, req, self._finish_request)

    def _finish_request(self, req: ProxyRequest) -> None:
        try:
            self._carry_out(req)
        except RemoteProtocolError as e:
            # A header needed to forward turned out malformed: the sender's fault.
            self.stats.bad_msgs += 1
            if e.status_hint and req.method != "ACK":
                self._send_reply(req, e.status_hint, e.reason)

    def _carry_out(self, req: ProxyRequest) -> None:
        outcome = req.outcome
        kind = type(outcome)
        if kind is Relay:
            if self.tm is None:
                raise LocalProtocolError("relay() needs the transaction layer (ProxyCore tm)")
            self.tm.relay(req, outcome)  # type: ignore[arg-type]
            return
        if kind is Reply:
            self._send_reply(req, outcome.status, outcome.reason, outcome.headers, outcome.body)
            return
        txn = req.transaction
        if txn is not None:
            # Forwarded statelessly or dropped: no transaction state is kept.
            self.tm.forget(txn)  # type: ignore[union-attr]
        if kind is Forward:
            self._forward(req, outcome.destination or req.destination)
        else:
            self.stats.drop_requests += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s dropped%s", req.method,
                          " (request_route ended without reply/forward/drop)"
                          if outcome is None else "", extra=message_log_fields(req))

    def _send_reply(self, req: ProxyRequest, status: int, reason: str | None,
                    headers: Any = (), body: bytes = b"") -> None:
        """Stateless reply (Kamailio ``sl_send_reply``), back the way the request came
        (§18.2.2: for UDP to the source address, at the rport or sent-by port)."""
        if req.method == "ACK":
            return
        try:
            # The reply carries received/rport back (§18.2.1, RFC 3581 §4): that is how a
            # UA behind NAT learns its public address.
            self._stamp_received(req)
        except RemoteProtocolError:
            pass  # a Via too broken to read: the reply copies it as it came
        tm = self.tm
        txn = req.transaction
        if txn is None and req.method == "INVITE" and tm is not None:
            # §17.2.1: an INVITE is answered through a server transaction, so a non-2xx
            # is retransmitted until its ACK comes and that ACK is absorbed. A Via too
            # broken to match on gets the stateless answer below.
            with contextlib.suppress(SipParseError):
                txn = tm.begin(req)
                if txn is None:
                    return  # a retransmission raced an async script: already answered
        if txn is not None:
            # Kamailio's send_reply: stateful when a transaction exists.
            tm.reply(txn, status, reason, headers, body)  # type: ignore[union-attr]
            return
        try:
            data = req.make_response(status, reason, to_tag=stateless_to_tag(req, self.secret),
                                     headers=headers, body=body)
        except (RemoteProtocolError, LocalProtocolError) as e:
            log.debug("cannot reply %d to %r: %s", status, req, e,
                      extra=message_log_fields(req))
            return
        self.stats.sent_replies += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("replied %d to %s (stateless)", status, req.method,
                      extra=message_log_fields(req))
        source = req.source
        if source.proto != "udp":
            self.transport.send_to_source(data, source)
            return
        self.transport.send(data, self.reply_target(req), prefer=source.local)

    @staticmethod
    def reply_target(req: ProxyRequest) -> Target:
        """Where a response to a request received over UDP goes (§18.2.2, RFC 3581 §4):
        the source address, at the rport, else at the sent-by port."""
        source = req.source
        try:
            via = req.top_via
        except RemoteProtocolError:
            via = None  # unreadable Via (perhaps why we answer): back to the source
        port = source.port
        if via is not None and via.maddr is None and via.rport is None:
            # §18.2.2: no rport: the sent-by port (the UAC listens there).
            port = via.port or 5060
        return Target("udp", source.ip, port)

    def _target_for(self, uri: str) -> Target:
        target = self._targets.get(uri)
        if target is None:
            target = uri_target(uri)
            if len(self._targets) < _TARGET_CACHE_SIZE:
                self._targets[uri] = target
        return target

    def _out_socket(self, proto: str, host: str, prefer: Any) -> Any:
        v6 = ":" in host
        if prefer is not None and prefer.proto == proto and (":" in prefer.host) == v6:
            return prefer
        key = (proto, v6)
        sock = self._out_sockets.get(key)
        if sock is None:
            for s in self.transport.sockets:
                if s.proto == proto and (":" in s.host) == v6:
                    sock = self._out_sockets[key] = s
                    break
        return sock

    def _next_hop(self, req: ProxyRequest, destination: str | None) -> tuple[str, Target]:
        """Where a request goes next (§16.6 steps 6-7): ``destination`` ($du), else a
        pre-loaded loose Route, else the Request-URI. Raises RemoteProtocolError."""
        if destination is not None:
            return destination, self._target_for(destination)
        routes = req.routes
        if routes and getattr(routes[0].uri, "lr", False):
            # §16.6 step 7 / §16.12: a pre-loaded loose Route is the next hop.
            next_uri = str(routes[0].uri)
            return next_uri, self._target_for(next_uri)
        return req.ruri, self._target_for(req.ruri)

    def _refuse_destination(self, target: Target) -> int:
        """The status to answer instead of sending to ``target`` (0: go ahead)."""
        host = target.host
        if is_forbidden_destination(host):
            return 403
        if self.local.is_local_address(host, target.port) or host in self.local.names:
            # Forwarding to ourselves would loop for ever (Kamailio: "loop detected").
            return 482
        return 0

    def _record_route(self, req: ProxyRequest, inbound: Any, outbound: Any) -> None:
        """§16.6 step 4: our Record-Route on top, with ``lr``. When the request leaves on
        another socket than it came in on (transport or interface), two entries: the
        outgoing one faces the callee, the incoming one the caller (Kamailio's double
        Record-Route, ``r2=on``)."""
        out_uri = _rr_uri(outbound)
        if inbound is None or inbound is outbound or _rr_uri(inbound) == out_uri:
            req.insert_header_first("Record-Route", f"<{out_uri};lr>")
            return
        req.insert_header_first(
            "Record-Route", f"<{out_uri};lr;r2=on>, <{_rr_uri(inbound)};lr;r2=on>")

    def _forward(self, req: ProxyRequest, destination: str | None) -> None:
        """Stateless forward (§16.11 with §16.6 steps 3, 6-8)."""
        # §16.3 step 2 / §16.6 step 3: Max-Forwards.
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            self._send_reply(req, 483, "Too Many Hops")
            return
        try:
            next_uri, target = self._next_hop(req, destination)
        except RemoteProtocolError as e:
            self._send_reply(req, e.status_hint or 400, e.reason)
            return
        refusal = self._refuse_destination(target)
        if refusal:
            self._send_reply(req, refusal, "Forbidden Destination" if refusal == 403
                             else "Loop Detected")
            return
        host = target.host
        sock = self._out_socket(target.proto, host, req.source.local)
        if sock is None:
            self._send_reply(req, 503, "No Socket For Transport")
            return
        self._stamp_received(req)
        if mf is None:
            req.add_header("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        else:
            req.set_header("Max-Forwards", str(mf - 1))
        if req.record_route_on:
            self._record_route(req, req.source.local, sock)
        branch = stateless_branch(req, self.secret, next_uri)
        req.insert_via(f"SIP/2.0/{target.proto.upper()} {sock.via_host_port};branch={branch}")
        self.stats.fwd_requests += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("forwarded %s to %s (stateless)", req.method, target,
                      extra=message_log_fields(req))
        self.transport.send(req.to_bytes(), target, prefer=sock)

    def _stamp_received(self, req: ProxyRequest) -> None:
        """§18.2.1: add ``received`` when the sent-by host is not the source address;
        RFC 3581 §4: fill in an empty ``rport`` (and then always add ``received``).
        On a stream transport ``rport`` is filled in too, so the response can find the
        connection the request came on (§18.2.2), as Kamailio's ``force_rport`` does."""
        via = req.top_via
        if via is None:
            return
        source = req.source
        ip = source.ip
        host = via.host.strip("[]")
        rport = via.rport
        force = source.proto != "udp"
        if host == ip and rport != "" and not force:
            return
        params = dict(via.params)
        if rport == "" or force:
            params["rport"] = str(source.port)
            params["received"] = ip
        elif host != ip:
            params["received"] = ip
        else:
            return
        req.replace_top_via(f"{via.protocol}/{via.transport} {via.sent_by}{format_params(params)}")

    def loose_route(self, req: ProxyRequest) -> bool:
        """RFC 3261 §16.4 Route processing; see ``Context.loose_route``."""
        routes = req.routes
        if not routes:
            return False
        values = [r.raw for r in routes]
        uri = req.uri
        changed = False
        # §16.4: the previous hop was a strict router: the R-URI is a URI we put in a
        # Record-Route (ours, with lr). The real R-URI is the last Route value.
        if isinstance(uri, SipUri) and uri.lr and self.local.is_myself(uri):
            last = routes[-1]
            req.set_ruri(str(last.uri))
            values.pop()
            routes = routes[:-1]
            changed = True
        # §16.4: the topmost Route is ours: remove it. With a double Record-Route (r2=on)
        # the next one is ours too (the other interface): remove it as well.
        if routes and isinstance(routes[0].uri, SipUri) and self.local.is_myself(routes[0].uri):
            double = "r2" in routes[0].uri.params
            values.pop(0)
            routes = routes[1:]
            changed = True
            if double and routes and isinstance(routes[0].uri, SipUri) \
                    and self.local.is_myself(routes[0].uri):
                values.pop(0)
                routes = routes[1:]
        if routes:
            first = routes[0].uri
            if isinstance(first, SipUri) and not first.lr:
                # §16.6 step 6: the next hop is a strict router: it goes in the R-URI and
                # the R-URI becomes the last Route value.
                values.pop(0)
                values.append(f"<{req.ruri}>")
                req.set_ruri(str(first))
                changed = True
            req.destination = str(first)
        if changed:
            req.remove_header("Route")
            if values:
                req.add_header("Route", ", ".join(values))
        return True

    # -- responses -------------------------------------------------------------------------

    def _own_via_prefixes(self) -> tuple[str, ...]:
        """How every Via we insert begins (see ``_forward``), one per listen socket."""
        prefixes = self._via_prefixes
        if prefixes is None:
            prefixes = self._via_prefixes = tuple(
                f"SIP/2.0/{s.proto.upper()} {s.via_host_port};branch={MAGIC_COOKIE}"
                for s in self.transport.sockets)
        return prefixes

    def _on_response(self, res: ProxyResponse) -> None:
        res.outcome = None
        try:
            check_response(res)
            # §16.11 / §18.1.2: a response whose topmost Via is not ours is dropped.
            # Ours is recognised by how we write it; any other Via is parsed and its
            # sent-by compared with our sockets.
            if not res.header("via").startswith(self._own_via_prefixes()):  # type: ignore[union-attr]
                via = res.top_via
                if not self.local.is_local_address(via.host, via.port or 5060):  # type: ignore[union-attr]
                    self.stats.drop_replies += 1
                    return
        except RemoteProtocolError:
            self.stats.bad_msgs += 1
            return
        res.phase = "reply_route"
        if self._reply_route is not None:
            self._run(self._reply_route, res, self._finish_response)
        else:
            self._finish_response(res)

    def _finish_response(self, res: ProxyResponse) -> None:
        if type(res.outcome) is Drop:
            self.stats.drop_replies += 1
            return
        tm = self.tm
        if tm is not None and res.header("via").find(TM_BRANCH_PREFIX) >= 0:  # type: ignore[union-attr]
            # One of our stateful branches (a stateless one has no transaction).
            branch = tm.match_response(res)
            if branch is not None:
                tm.on_response(branch, res)
                return
            if not (200 <= res.status < 300 and res.cseq.method == "INVITE"):
                # A late response for a transaction that is gone: only a 2xx to an INVITE
                # still goes on (the caller must ACK it, RFC 6026); the rest are dropped.
                self.stats.drop_replies += 1
                return
        res.remove_top_via()
        try:
            via = res.top_via
        except SipParseError:
            self.stats.bad_msgs += 1
            return
        if via is None:
            # A response to a request we originated: nothing to forward it to.
            self.stats.drop_replies += 1
            return
        target = response_target(via)
        if is_forbidden_destination(target.host):
            self.stats.drop_replies += 1
            return
        self.stats.fwd_replies += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("forwarded %d to %s (stateless)", res.status, target,
                      extra=message_log_fields(res))
        self.transport.send(res.to_bytes(), target, prefer=res.source.local)
