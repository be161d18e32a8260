# SPDX-License-Identifier: Apache-2.0
"""The stateful proxy: transactions, branches, forking, CANCEL (RFC 3261 §16, §17; what
Kamailio's ``tm`` module does).

How this works
--------------
``ProxyCore`` hands every request to ``TransactionManager.absorb`` after the sanity stage.
It matches the request to a server transaction (§17.2.3):

* a retransmission is absorbed here: the transaction re-sends its last response;
* an ACK for a non-2xx final response is absorbed here (it is hop by hop, §17.2.1);
* anything else reaches the script without state. A server transaction is created
  (``begin``) when the script relays the request, answers an INVITE, or awaits
  something while handling an INVITE: from then on retransmissions are absorbed and a
  100 Trying goes out if nothing was answered within 200 ms (§17.2.1). A request the
  script forwards statelessly (``forward``) never costs a transaction.

When the script calls ``req.relay(...)`` (``Relay`` outcome), ``relay`` creates the
response context: one server transaction and one client transaction per branch
(§16.6). Each outgoing branch is a copy of the request with its own Request-URI, Via,
Max-Forwards and Record-Route. Responses come back through ``on_response`` (§16.7):

* 100 is absorbed; other provisionals are forwarded at once (and let a pending CANCEL go);
* every 2xx to an INVITE is forwarded at once, and the other pending branches are
  CANCELed (§16.7 step 10); a 6xx CANCELs the others and ends the fork;
* other finals are kept; when every branch has a final response, the best one is chosen
  (§16.7 step 6, 401/407 challenges merged, step 7), the ``on_failure`` handler may add
  branches or answer, and otherwise the best response goes upstream.

CANCEL (§16.10): ``relay_cancel`` answers 200, and CANCELs every branch that has had a
provisional response; the others are CANCELed as soon as one arrives (§9.1). A branch
that never answers counts as 487 when it times out.

The §17 state machines are pure (``siprouter.transaction.machines``): this module feeds
them messages and the time, and carries out what they return (send, deliver, time out).
All their timers live in one heap with one event-loop timer armed for the earliest
(``TimerQueue``), so there is no asyncio handle per transaction.

Requests of our own (``originate``, ``ping``: the dispatcher's OPTIONS probes) are a
client transaction with no server transaction: the branch's ``txn`` is an
``OriginatedRequest``, which has no response context. Its final response (or the 408 of
Timer F, the 503 of a transport error) goes to the originator's callback and nowhere
else; provisionals are ignored (``on_response`` and ``_branch_final`` divert it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import heapq
import logging
import os
from collections.abc import Callable
from typing import Any

from siprouter.proxy.actions import BranchTarget, Drop, Relay, Reply
from siprouter.proxy.core import message_log_fields
from siprouter.proxy.dialogs import end_requests
from siprouter.proxy.stateless import DEFAULT_MAX_FORWARDS, TM_BRANCH_PREFIX, stateless_to_tag
from siprouter.proxy.stats import TmStats
from siprouter.sip.errors import LocalProtocolError, RemoteProtocolError, SipParseError
from siprouter.sip.message import parse_message
from siprouter.sip.uri import SipUri, parse_uri
from siprouter.transaction.machines import (
    CANCEL_BRANCH,
    DELIVER,
    SEND,
    SEND_ACK,
    SEND_TRYING,
    TERMINATED,
    TIMEOUT,
    TRANSPORT_ERROR,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
)
from siprouter.transaction.matching import cancel_target_key, server_key
from siprouter.transaction.timers import Timers
from siprouter.transport.types import Target

__all__ = ["TransactionManager", "TimerQueue", "ServerTransaction", "ClientBranch", "TmStats",
           "OriginatedRequest", "TM_BRANCH_PREFIX"]

log = logging.getLogger("siprouter.tm")


# §16.7 step 6: within the 4xx class these are preferred: the caller can act on them.
_PREFERRED_4XX = (401, 407, 415, 420, 484)
# Most branches one transaction may create (3xx recursion and failure handlers included):
# a loop of redirects or of failure-route relays ends here.
MAX_BRANCHES = 12


class TimerQueue:
    """Deadlines of many objects in one heap, with one event-loop timer for the earliest.

    An object has a ``_due`` slot and an ``on_timer(now)`` method. ``schedule(obj, t)``
    (re)sets its deadline, ``schedule(obj, None)`` cancels it: the queue holds the object
    from one to the other, and not after (a finished transaction whose Timer C entry is
    still in the heap is not kept alive by it). An entry whose deadline no longer equals
    ``obj._due`` is stale and skipped when it comes up (no removal from the middle of the
    heap).

    Heap entries are ``(deadline, seq, id(obj))``, numbers only, and the objects sit in
    one dict by id: tuples of numbers are not tracked by the cyclic garbage collector, so
    tens of thousands of queued deadlines (every UDP transaction waits out Timer J or K)
    add nothing to what each full collection walks (docs/performance.md).

    The loop timer wakes the process at most once per ``TICK`` (timers fire up to one
    tick late, far inside what §17 allows): at hundreds of calls per second every
    transaction moves its deadlines several times, and on a VM a wake-up costs more than
    the SIP work of a message. Kamailio's timer process ticks the same way.
    """

    __slots__ = ("_heap", "_queued", "_seq", "_handle", "_armed", "_loop", "_last_fire")

    #: Seconds between two wake-ups at most.
    TICK = 0.05

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._heap: list[tuple[float, int, int]] = []
        #: id(obj) -> obj, for every object with a deadline.
        self._queued: dict[int, Any] = {}
        self._seq = 0
        self._handle: asyncio.TimerHandle | None = None
        self._armed: float | None = None
        self._loop = loop
        self._last_fire = 0.0

    def now(self) -> float:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    def schedule(self, obj: Any, deadline: float | None) -> None:
        if deadline == obj._due:
            return
        obj._due = deadline
        if deadline is None:
            self._queued.pop(id(obj), None)
            return
        self._seq += 1
        key = id(obj)
        self._queued[key] = obj
        heapq.heappush(self._heap, (deadline, self._seq, key))
        armed = self._armed
        if armed is None or deadline < armed - self.TICK:
            self._arm(max(deadline, self._last_fire + self.TICK))

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._armed = when
        self._handle = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        # While the due timers run, a schedule() from their on_timer must not arm the
        # loop timer for its own (later) deadline: earlier ones may still be waiting in
        # the heap. Re-armed below, for whatever is earliest then.
        self._armed = float("-inf")
        now = self._last_fire = self.now()
        try:
            self.run_due(now)
        finally:
            self._armed = None
            heap = self._heap
            if heap:
                self._arm(max(heap[0][0], now + self.TICK))

    def run_due(self, now: float) -> None:
        """Call ``on_timer`` of every object whose deadline is ``now`` or earlier."""
        heap = self._heap
        queued = self._queued
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            obj = queued.get(key)
            if obj is None or obj._due != deadline:
                continue
            del queued[key]
            obj._due = None
            try:
                obj.on_timer(now)
            except Exception:  # noqa: BLE001 - one bad timer must not stop the others
                log.exception("timer of %r failed", obj)

    def __len__(self) -> int:
        return len(self._heap)


class ServerTransaction:
    """A server transaction and, once relayed, its response context (§16.7)."""

    __slots__ = ("tm", "key", "machine", "request", "method", "last_response", "source",
                 "reply_target", "branches", "relay", "timers", "canceled", "final_sent",
                 "groups", "ended", "dialog", "in_failure", "_due", "n_pending", "started")

    def __init__(self, tm: TransactionManager, key: Any, machine: Any, request: Any) -> None:
        self.tm = tm
        self.key = key
        self.machine = machine
        self.request = request
        self.method = request.method
        self.last_response: bytes | None = None
        self.source = request.source
        self.reply_target: Target | None = None
        self.branches: list[ClientBranch] = []
        self.relay: Relay | None = None
        self.timers: Timers | None = None
        self.canceled = False
        self.final_sent = False
        self.groups: list[list[BranchTarget]] | None = None
        self.ended = False  # a 6xx arrived: no new branches (§16.7 step 5)
        self.dialog: Any = None
        self.in_failure = False
        self._due: float | None = None
        self.started = 0.0  # when the request came (the queue's clock): for latency
        self.n_pending = 0

    def on_timer(self, now: float) -> None:
        self.tm._server_actions(self, self.machine.fire(now), now)

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.machine.state} {self.key!r}>"


class OriginatedRequest:
    """What stands in for the server transaction of a request we originated
    (``TransactionManager.originate``): no response context, only the callback that
    receives the final status."""

    __slots__ = ("tm", "method", "on_final", "relay", "dialog", "timers")

    def __init__(self, tm: TransactionManager, method: str,
                 on_final: Callable[[int, Any], None]) -> None:
        self.tm = tm
        self.method = method
        self.on_final = on_final
        # What the code shared with relayed branches reads of a ServerTransaction.
        self.relay: Relay | None = None
        self.dialog: Any = None
        self.timers: Timers | None = None

    def __repr__(self) -> str:
        return f"<OriginatedRequest {self.method}>"


class ClientBranch:
    """One outgoing branch: a client transaction and what its response context keeps."""

    __slots__ = ("txn", "machine", "branch_id", "data", "target", "sock", "ruri", "status",
                 "final", "response", "cancel_pending", "canceled", "timed_out", "is_cancel",
                 "_due", "index", "ack", "__weakref__")

    def __init__(self, txn: ServerTransaction | OriginatedRequest | None, machine: Any,
                 branch_id: str, data: bytes, target: Target, sock: Any, ruri: str) -> None:
        self.txn = txn
        self.machine = machine
        self.branch_id = branch_id
        self.data = data
        self.target = target
        self.sock = sock
        self.ruri = ruri
        self.status = 0          # last status received (0: none)
        self.final = 0           # final status of this branch (received or synthetic), 0: pending
        self.response: Any = None  # the final response received (None: synthetic)
        self.cancel_pending = False
        self.canceled = False
        self.timed_out = False
        self.is_cancel = False
        self._due: float | None = None
        self.index = 0
        self.ack: bytes | None = None  # the ACK for a non-2xx final, re-sent on retransmissions

    def on_timer(self, now: float) -> None:
        self.txn.tm._client_actions(self, self.machine.fire(now), now)

    def __repr__(self) -> str:
        return f"<ClientBranch {self.branch_id} {self.ruri} {self.machine.state}>"


class TransactionManager:
    """Server and client transactions of one ``ProxyCore`` (see the module docstring)."""

    def __init__(self, core: Any, timers: Timers | None = None, *,
                 queue: TimerQueue | None = None, dialogs: Any = None) -> None:
        self.core = core
        self.timers = timers or Timers()
        self.queue = queue if queue is not None else TimerQueue()
        self.server: dict[Any, ServerTransaction] = {}
        self.client: dict[str, ClientBranch] = {}
        self.cancels: dict[str, ClientBranch] = {}
        self.stats = TmStats()
        self.dialogs = dialogs
        self._salt = os.urandom(4).hex()
        self._seq = 0
        self._timer_variants: dict[tuple[float | None, float | None], Timers] = {}
        self._dialog_timer = _DialogTimer(self)

    # -- receiving requests ----------------------------------------------------------------

    def absorb(self, req: Any) -> bool:
        """Match a request to a server transaction. True: handled here (a retransmission,
        or an ACK for a non-2xx final); the script does not see it."""
        method = req.method
        try:
            key = server_key(req)
        except SipParseError:
            return False
        txn = self.server.get(key)
        if method == "ACK":
            if txn is None or txn.method != "INVITE" or not txn.final_sent:
                return False
            if txn.machine.last_status is not None and txn.machine.last_status >= 300:
                # §17.2.1: the ACK for a non-2xx final is the transaction's; absorbed.
                now = self.queue.now()
                self.stats.absorbed_acks += 1
                self._server_actions(txn, txn.machine.receive_ack(now), now)
                return True
            return False  # an ACK for a 2xx is end to end: routed by the script
        if txn is not None:
            now = self.queue.now()
            self.stats.count_retransmission(method)
            self._server_actions(txn, txn.machine.receive_request(now), now)
            return True
        return False

    def begin(self, req: Any) -> ServerTransaction | None:
        """The server transaction of ``req``, created now if it has none: when the script
        relays or answers an INVITE, or goes on waiting (an ``await``) while handling one
        — from then on retransmissions are absorbed and a 100 Trying goes out after 200 ms
        (§17.2.1). A request forwarded statelessly never gets one.

        Returns None when the transaction exists already (a retransmission raced an
        async script). Raises SipParseError when the top Via cannot be read."""
        txn = req.transaction
        if txn is not None:
            return txn
        if req.method == "ACK" or req.method == "CANCEL":
            return None
        key = server_key(req)
        if key in self.server:
            return None  # a retransmission that raced an async script: already handled
        return self._new_server(req, key, ServerInvite if req.method == "INVITE"
                                else ServerNonInvite)

    def find(self, req: Any) -> ServerTransaction | None:
        """The server transaction of ``req``; for a CANCEL, the INVITE's it cancels."""
        try:
            key = cancel_target_key(req) if req.method == "CANCEL" else server_key(req)
        except SipParseError:
            return None
        return self.server.get(key)

    def _new_server(self, req: Any, key: Any, machine_cls: type) -> ServerTransaction:
        machine = machine_cls(self.timers, req.source.proto != "udp")
        txn = ServerTransaction(self, key, machine, req)
        self.server[key] = txn
        req.transaction = txn
        self.stats.count_transaction(txn.method)
        now = self.queue.now()
        txn.started = now
        self._server_actions(txn, machine.start(now), now)
        return txn

    def forget(self, txn: ServerTransaction) -> None:
        """The script handled the request without state (stateless forward, drop)."""
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]
        self.queue.schedule(txn, None)
        txn.request.transaction = None

    # -- replies from the script and local replies -----------------------------------------

    def reply(self, txn: ServerTransaction, status: int, reason: str | None,
              headers: Any = (), body: bytes = b"") -> None:
        """Answer through the server transaction (Kamailio ``t_reply``): retransmitted
        for as long as §17.2 says, and retransmissions of the request get it again."""
        req = txn.request
        if req is None or txn.final_sent and not (200 <= status < 300 and txn.method == "INVITE"):
            log.debug("%r already answered; %d not sent", txn, status,
                      extra=message_log_fields(req))
            return
        try:
            data = req.make_response(status, reason, to_tag=stateless_to_tag(req, self.core.secret),
                                     headers=headers, body=body)
        except (RemoteProtocolError, LocalProtocolError) as e:
            log.debug("cannot reply %d to %r: %s", status, req, e,
                      extra=message_log_fields(req))
            return
        self.stats.local_replies += 1
        self._send_upstream(txn, data, status)

    def _send_upstream(self, txn: ServerTransaction, data: bytes, status: int) -> None:
        now = self.queue.now()
        try:
            acts = txn.machine.send_response(status, now)
        except LocalProtocolError as e:
            if txn.method == "INVITE" and 200 <= status < 300 and txn.final_sent:
                # RFC 6026 §7.2: a 2xx after the server transaction ended is forwarded
                # statelessly (another fork branch answered late).
                self._transmit(txn, data)
                return
            log.debug("%r: response %d not sent: %s", txn, status, e,
                      extra=message_log_fields(txn.request))
            return
        txn.last_response = data
        if status >= 200 and not txn.final_sent:
            txn.final_sent = True
            self.stats.count_final(txn.method, status, now - txn.started)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("final %d to %s sent upstream after %.3f s", status, txn.method,
                          now - txn.started, extra=message_log_fields(txn.request))
            dialog = txn.dialog
            if dialog is not None and status >= 300 and self.dialogs is not None:
                self.dialogs.fail(dialog, status, now)  # the call failed as a whole
        self._server_actions(txn, acts, now)
        if txn.final_sent and txn.n_pending == 0 and not txn.in_failure:
            self._release(txn)

    def _release(self, txn: ServerTransaction) -> None:
        """Answered and no branch pending: what remains is the machine, the last response
        and the keys (for retransmissions and ACKs). The request and the branches'
        responses go now rather than when the timers end (memory, and less for the
        garbage collector to walk)."""
        if txn.request is None:
            return
        if txn.reply_target is None and txn.source.proto == "udp":
            txn.reply_target = self.core.reply_target(txn.request)  # still needed to answer
        txn.request = None
        txn.groups = None
        if txn.method == "INVITE" and txn.machine.state == "accepted":
            # RFC 6026 §7.1: in Accepted a retransmitted INVITE is absorbed, never
            # answered again: the 2xx need not be kept.
            txn.last_response = None
        for b in txn.branches:
            b.response = None

    def _transmit(self, txn: ServerTransaction, data: bytes) -> None:
        """Send a response upstream (§18.2.2): on the connection it came on for a stream,
        else to the source address at the rport or the sent-by port."""
        core = self.core
        source = txn.source
        if source.proto != "udp":
            core.transport.send_to_source(data, source)
            return
        target = txn.reply_target
        if target is None:
            target = txn.reply_target = core.reply_target(txn.request)
        core.transport.send(data, target, prefer=source.local)

    def _server_actions(self, txn: ServerTransaction, acts: int, now: float) -> None:
        if acts:
            if acts & SEND and txn.last_response is not None:
                self._transmit(txn, txn.last_response)
            if acts & SEND_TRYING and not txn.final_sent and txn.request is not None:
                data = txn.request.make_response(100, "Trying")
                txn.last_response = data
                self._send_upstream(txn, data, 100)
                return
            if acts & TERMINATED:
                if self.server.get(txn.key) is txn:
                    del self.server[txn.key]
                self.queue.schedule(txn, None)
                if txn.n_pending == 0:
                    txn.request = None
                return
        self.queue.schedule(txn, txn.machine.deadline)

    # -- relaying ---------------------------------------------------------------------------

    def _timers_for(self, relay: Relay) -> Timers:
        if relay.fr_timer is None and relay.fr_inv_timer is None:
            return self.timers
        key = (relay.fr_timer, relay.fr_inv_timer)
        timers = self._timer_variants.get(key)
        if timers is None:
            changes: dict[str, float] = {}
            if relay.fr_timer is not None:
                changes["fr_timer"] = relay.fr_timer
            if relay.fr_inv_timer is not None:
                changes["fr_inv_timer"] = relay.fr_inv_timer
            timers = dataclasses.replace(self.timers, **changes)
            if len(self._timer_variants) < 64:
                self._timer_variants[key] = timers
        return timers

    def relay(self, req: Any, relay: Relay) -> None:
        """Carry out ``req.relay(...)`` from ``request_route`` (Kamailio ``t_relay``)."""
        method = req.method
        core = self.core
        if method == "ACK":
            # An ACK has no transaction (§17): an ACK for a 2xx is forwarded end to end.
            core._forward(req, req.destination)
            return
        if method == "CANCEL":
            self.relay_cancel(req)
            return
        try:
            txn = self.begin(req)
        except SipParseError:
            core._send_reply(req, 400, "Bad Via")
            return
        if txn is None:
            return  # a retransmission that raced an async script: already relayed
        # §16.3 step 2: a request that may not go further.
        mf = req.max_forwards
        if mf is not None and mf <= 0:
            self.reply(txn, 483, "Too Many Hops")
            return
        core._stamp_received(req)
        self.stats.relayed += 1
        txn.relay = relay
        txn.timers = self._timers_for(relay)
        targets = self._targets(req, relay)
        if relay.serial and len(targets) > 1:
            groups = _q_groups(targets)
            txn.groups = groups[1:]
            targets = groups[0]
        if self.dialogs is not None and req.track_dialog_on and method == "INVITE" \
                and txn.dialog is None:
            txn.dialog = self.dialogs.create(req, self.queue.now())
            self._schedule_dialogs()
        self._start_branches(txn, targets)

    @staticmethod
    def _targets(req: Any, relay: Relay) -> list[BranchTarget]:
        if relay.targets:
            targets = list(relay.targets)
        else:
            targets = [BranchTarget(req.ruri, req.destination, None, req.path)]
        if req.branches:
            targets.extend(req.branches)
            req.branches = None
        return targets

    def _start_branches(self, txn: ServerTransaction, targets: list[BranchTarget]) -> None:
        room = MAX_BRANCHES - len(txn.branches)
        if len(targets) > room:
            log.warning("%r: %d branches asked, only %d more allowed", txn, len(targets), room)
            targets = targets[:max(room, 0)]
        if not targets:
            self._maybe_complete(txn)
            return
        on_branch = txn.relay.on_branch if txn.relay is not None else None
        # All count as pending before the first goes: one that fails at once must not
        # complete the response context while the others are still to be sent.
        txn.n_pending += len(targets)
        for target in targets:
            if on_branch is None:
                self._send_branch(txn, target, None)
            else:
                self._run_on_branch(txn, target, on_branch)

    def _run_on_branch(self, txn: ServerTransaction, target: BranchTarget,
                       on_branch: Callable[..., Any]) -> None:
        bm = txn.request.copy()
        bm.outcome = None
        bm.phase = "on_branch"
        if target.uri != bm.ruri:
            bm.set_ruri(target.uri)
        bm.destination = target.destination if target.destination is not None else bm.destination
        if target.path:
            _add_path_routes(bm, target.path)

        def then(msg: Any) -> None:
            if type(msg.outcome) is Drop:
                self._branch_failed(txn, None, 0)  # dropped by the handler: no branch
                return
            self._send_branch(txn, BranchTarget(msg.ruri, msg.destination, target.q), msg)

        def failed(msg: Any, exc: Exception) -> None:
            log.error("on_branch handler failed for %r: %s", msg, exc, exc_info=exc)
            self._branch_failed(txn, None, 500)

        self.core._call(on_branch, (bm,), bm, then, failed)

    def _new_branch_id(self) -> str:
        self._seq += 1
        return f"{TM_BRANCH_PREFIX}{self._salt}{self._seq:x}"

    def _send_branch(self, txn: ServerTransaction, target: BranchTarget, bm: Any) -> None:
        """§16.6: copy the request, set its R-URI, Max-Forwards, Record-Route and Via, and
        send it in a new client transaction."""
        core = self.core
        req = txn.request
        if txn.canceled or txn.final_sent:
            # No new branches once CANCELed (§16.10) or answered.
            self._branch_failed(txn, None, 487 if txn.canceled and not txn.final_sent else 0)
            return
        if bm is None:
            bm = req.copy()
            if target.uri != bm.ruri:
                bm.set_ruri(target.uri)
            if target.path:
                _add_path_routes(bm, target.path)
            destination = target.destination if target.destination is not None else req.destination
        else:
            destination = bm.destination
        try:
            next_uri, dest = core._next_hop(bm, destination)
        except RemoteProtocolError as e:
            self._branch_failed(txn, None, e.status_hint or 400)
            return
        refusal = core._refuse_destination(dest)
        if refusal:
            self._branch_failed(txn, None, refusal)
            return
        sock = core._out_socket(dest.proto, dest.host, req.source.local)
        if sock is None:
            self._branch_failed(txn, None, 503)
            return
        # §16.6 step 3: Max-Forwards.
        mf = bm.max_forwards
        if mf is None:
            bm.add_header("Max-Forwards", str(DEFAULT_MAX_FORWARDS))
        else:
            bm.set_header("Max-Forwards", str(mf - 1))
        # §16.6 step 4: Record-Route (two when the request leaves on another socket).
        if req.record_route_on:
            core._record_route(bm, req.source.local, sock)
        branch_id = self._new_branch_id()
        bm.insert_via(f"SIP/2.0/{dest.proto.upper()} {sock.via_host_port};branch={branch_id}")
        data = bm.to_bytes()
        reliable = dest.proto != "udp"
        timers = txn.timers or self.timers
        machine = (ClientInvite if txn.method == "INVITE" else ClientNonInvite)(timers, reliable)
        branch = ClientBranch(txn, machine, branch_id, data, dest, sock, bm.ruri)
        branch.index = len(txn.branches)
        txn.branches.append(branch)
        core.stats.fwd_requests += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("relayed %s to %s (branch %s)", txn.method, dest, branch_id,
                      extra=message_log_fields(req))
        self._launch(branch)

    def _launch(self, branch: ClientBranch) -> None:
        """Start a new client transaction: register it for response matching, send its
        request (the first send can fail — TCP connect refused, unresolvable host —
        §8.1.3.1) and arm its timers."""
        self.client[branch.branch_id] = branch
        self.stats.client_created += 1
        now = self.queue.now()
        acts = branch.machine.start(now)
        if acts & SEND:
            self.core.transport.send(branch.data, branch.target, prefer=branch.sock,
                                     on_error=lambda exc: self._transport_error(branch, exc))
        self._client_actions(branch, acts & ~SEND, now)

    def _transport_error(self, b: ClientBranch, exc: BaseException) -> None:
        """RFC 3261 §8.1.3.1 / §16.7 step 2: the branch could not be sent: it counts as a
        503 (which the best-response rule turns into 500 if nothing better comes)."""
        if b.final or b.machine.state == "terminated":
            return
        log.info("branch %s to %s failed: %s", b.branch_id, b.target, exc)
        now = self.queue.now()
        self._client_actions(b, b.machine.transport_error(now), now)

    def _branch_failed(self, txn: ServerTransaction, branch: ClientBranch | None,
                       status: int) -> None:
        """A branch that could not be sent (status: its synthetic final; 0: no branch)."""
        txn.n_pending -= 1
        if status:
            log.info("%r: a branch was not sent (%d)", txn, status)
            b = ClientBranch(txn, _DONE, "", b"", Target("udp", "", 0), None, "")
            b.final = status
            b.index = len(txn.branches)
            txn.branches.append(b)
        self._maybe_complete(txn)

    # -- client transaction events ---------------------------------------------------------

    def _client_actions(self, b: ClientBranch, acts: int, now: float) -> None:
        if acts:
            if acts & SEND:
                self.core.transport.send(b.data, b.target, prefer=b.sock)
            if b.is_cancel:
                if acts & TERMINATED:
                    if self.cancels.get(b.branch_id) is b:
                        del self.cancels[b.branch_id]
                    self.queue.schedule(b, None)
                    return
            else:
                if acts & CANCEL_BRANCH:
                    # §16.8 Timer C: CANCEL the branch; its final response counts as 408.
                    b.timed_out = True
                    self._cancel_branch(b)
                if acts & (TIMEOUT | TRANSPORT_ERROR) and not b.final:
                    if acts & TRANSPORT_ERROR:
                        self.stats.transport_errors += 1
                        status = 503  # §8.1.3.1 / §16.7 step 2
                    else:
                        self.stats.timeouts += 1
                        # A branch CANCELed before it ever answered: the proxy makes its 487.
                        status = 487 if b.canceled or b.cancel_pending else 408
                    self._branch_final(b, status, None)
                if acts & TERMINATED:
                    if self.client.get(b.branch_id) is b:
                        del self.client[b.branch_id]
                    self.queue.schedule(b, None)
                    return
        self.queue.schedule(b, b.machine.deadline)

    def match_response(self, res: Any) -> ClientBranch | None:
        """The client transaction of a response whose top Via is one of our stateful ones
        (§17.1.3: branch and CSeq method)."""
        via = res.header("via") or ""
        i = via.find(";branch=")
        if i < 0:
            return None
        branch_id = via[i + 8:]
        for sep in (";", ",", " "):
            j = branch_id.find(sep)
            if j >= 0:
                branch_id = branch_id[:j]
        try:
            method = res.cseq.method
        except RemoteProtocolError:
            return None
        if method == "CANCEL":
            return self.cancels.get(branch_id)
        b = self.client.get(branch_id)
        if b is None or b.txn is None or b.txn.method != method:
            return None
        return b

    def on_response(self, b: ClientBranch, res: Any) -> None:
        """A response for one of our client transactions (after ``reply_route``)."""
        now = self.queue.now()
        status = res.status
        acts = b.machine.receive_response(status, now)
        if acts & SEND_ACK and not b.is_cancel:
            self._send_ack(b, res)
        self._client_actions(b, acts & ~SEND_ACK, now)
        if b.is_cancel or not acts & DELIVER:
            return  # the 200 for our CANCEL, or a retransmission: absorbed
        txn = b.txn
        b.status = status
        if type(txn) is OriginatedRequest:
            if status >= 200:
                self._branch_final(b, status, res)  # to the originator, not forwarded
            return  # a provisional to our own request: ignored
        if txn.dialog is not None and status < 300 and self.dialogs is not None:
            # A failed branch does not end the dialog; the final failure sent upstream
            # does (_send_upstream).
            self.dialogs.on_response(txn.dialog, res, now)
        if status < 200 and b.cancel_pending:
            b.cancel_pending = False
            self._send_cancel(b)  # §9.1: now that a provisional has arrived
        on_reply = txn.relay.on_reply if txn.relay is not None else None
        if on_reply is None:
            self._after_on_reply(b, res)
            return
        res.phase = "on_reply"
        res.outcome = None
        self.core._call(on_reply, (res,), res, lambda r: self._after_on_reply(b, r),
                        lambda r, e: (log.error("on_reply handler failed for %r: %s", r, e,
                                                exc_info=e), self._after_on_reply(b, r)))

    def _after_on_reply(self, b: ClientBranch, res: Any) -> None:
        txn = b.txn
        status = res.status
        if status < 200:
            if status == 100 or type(res.outcome) is Drop:
                return  # §16.7 step 5: a 100 is not forwarded
            if txn.final_sent or txn.request is None:
                return
            self._forward_upstream(txn, res, status)
            return
        if 200 <= status < 300:
            # §16.7 step 5 / RFC 6026: every 2xx goes upstream at once (a retransmitted
            # 2xx too: the caller's ACK for it must reach the callee).
            if not b.final:
                b.final = status
                txn.n_pending -= 1
                b.data = b""  # no retransmission, CANCEL or ACK of ours from here on
            self._forward_upstream(txn, res, status)
            if txn.method == "INVITE":
                self._cancel_others(txn, b)  # §16.7 step 10
            self._maybe_complete(txn)
            return
        if b.timed_out:
            # Timer C CANCELed it: the 487 that comes back stands for 408 (§16.8).
            self._branch_final(b, 408, None)
            return
        self._branch_final(b, status, res)

    def _branch_final(self, b: ClientBranch, status: int, res: Any) -> None:
        """A branch has its final response (received, or a synthetic 408/487/503)."""
        if b.final:
            return
        b.final = status
        txn = b.txn
        if type(txn) is OriginatedRequest:
            self._originated_final(txn, status, res)
            return
        b.response = res
        txn.n_pending -= 1
        if 600 <= status < 700 and txn.method == "INVITE":
            # §16.7 step 5: a 6xx ends the fork: CANCEL the rest, no new branches.
            txn.ended = True
            self._cancel_others(txn, b)
        elif 300 <= status < 400 and txn.relay is not None and txn.relay.on_3xx == "follow" \
                and res is not None and not txn.ended and not txn.canceled:
            self._follow_redirect(txn, res)
        self._maybe_complete(txn)

    def _follow_redirect(self, txn: ServerTransaction, res: Any) -> None:
        """§16.7 step 4 / §16.5: recurse on the Contacts of a 3xx (relay(on_3xx="follow"))."""
        try:
            contacts = [c for c in res.contacts if hasattr(c, "uri")]
        except RemoteProtocolError:
            return
        targets = []
        for c in contacts:
            q = c.params.get("q") if hasattr(c, "params") else None
            try:
                qv = float(q) if q is not None else None
            except ValueError:
                qv = None
            targets.append(BranchTarget(str(c.uri), None, qv))
        if targets:
            # The 3xx itself no longer counts: its Contacts are tried instead.
            self._start_branches(txn, targets)

    def _forward_upstream(self, txn: ServerTransaction, res: Any, status: int) -> None:
        """§16.7 step 9: remove our Via and send the response on."""
        res.remove_top_via()
        self.core.stats.fwd_replies += 1
        self._send_upstream(txn, res.to_bytes(), status)

    def _cancel_others(self, txn: ServerTransaction, winner: ClientBranch) -> None:
        for other in txn.branches:
            if other is not winner and not other.final and not other.is_cancel:
                self._cancel_branch(other)

    # -- completing the response context -----------------------------------------------------

    def _maybe_complete(self, txn: ServerTransaction) -> None:
        """§16.7 step 6: when no branch is pending, pick the best response; run the
        failure handler; send it upstream."""
        if txn.n_pending > 0 or txn.in_failure:
            return
        if txn.final_sent:
            self._release(txn)
            return
        if txn.groups and not txn.ended and not txn.canceled:
            # Serial forking: the next q group (§16.6).
            group = txn.groups.pop(0)
            self._start_branches(txn, group)
            return
        finals = [b for b in txn.branches if b.final]
        if not finals:
            self.reply(txn, 500, "No Branch Sent")
            return
        best = _best_branch(finals)
        status = best.final
        if status >= 300 and status < 400 and txn.relay is not None \
                and txn.relay.on_3xx == "block":
            # Kamailio's default config (WITH_BLOCK3XX): a redirect never reaches the caller.
            self.reply(txn, 404, "Not Found")
            return
        relay = txn.relay
        if relay is not None and relay.on_failure is not None and status >= 300 \
                and not (600 <= status < 700) and txn.request is not None:
            self._run_on_failure(txn, best)
            return
        self._send_best(txn, best)

    def _send_best(self, txn: ServerTransaction, best: ClientBranch) -> None:
        status = best.final
        res = best.response
        if status == 503:
            # §16.7 step 6: a 503 is not forwarded; the proxy answers 500.
            self.reply(txn, 500, "Server Internal Error")
            return
        if res is None:
            self.reply(txn, status, None)
            return
        if status in (401, 407):
            _merge_challenges(res, txn.branches)
        self._forward_upstream(txn, res, status)

    def _response_for(self, txn: ServerTransaction, b: ClientBranch) -> Any:
        if b.response is not None:
            return b.response
        req = txn.request
        data = req.make_response(b.final, None, to_tag=stateless_to_tag(req, self.core.secret))
        res = parse_message(data, response_cls=self.core._response_cls)
        res.source = None
        res.outcome = None
        return res

    def _run_on_failure(self, txn: ServerTransaction, best: ClientBranch) -> None:
        req = txn.request
        res = self._response_for(txn, best)
        res.phase = "on_failure"
        req.phase = "on_failure"
        req.outcome = None
        req.branches = None
        txn.in_failure = True

        def then(msg: Any) -> None:
            txn.in_failure = False
            outcome = req.outcome
            req.phase = "request_route"
            if type(outcome) is Relay:
                if txn.canceled or txn.ended:
                    self._send_best(txn, best)
                    return
                relay = txn.relay
                if outcome.on_failure is not None or outcome.on_reply is not None or \
                        outcome.on_branch is not None:
                    txn.relay = outcome
                else:
                    # Handlers set in request_route stay (Kamailio: t_on_failure is re-armed
                    # by the failure route itself; here a new relay() without handlers keeps
                    # the old ones, so serial forking through several targets works).
                    outcome = Relay(outcome.targets, on_branch=relay.on_branch,
                                    on_reply=relay.on_reply, on_failure=relay.on_failure,
                                    serial=outcome.serial, fr_timer=outcome.fr_timer,
                                    fr_inv_timer=outcome.fr_inv_timer, on_3xx=outcome.on_3xx)
                    txn.relay = outcome
                targets = self._targets(req, outcome)
                if outcome.serial and len(targets) > 1:
                    groups = _q_groups(targets)
                    txn.groups = groups[1:]
                    targets = groups[0]
                self._start_branches(txn, targets)
            elif type(outcome) is Reply:
                self.reply(txn, outcome.status, outcome.reason, outcome.headers, outcome.body)
            else:
                self._send_best(txn, best)

        def failed(msg: Any, exc: Exception) -> None:
            txn.in_failure = False
            log.error("on_failure handler failed for %r: %s", req, exc, exc_info=exc)
            self._send_best(txn, best)

        self.core._call(txn.relay.on_failure, (req, res), req, then, failed)

    # -- requests of our own -------------------------------------------------------------

    def originate(self, method: str, ruri: str, *, from_uri: str, to_uri: str | None = None,
                  destination: str | None = None,
                  on_final: Callable[[int, Any], None], call_id: str | None = None,
                  from_tag: str | None = None, to_tag: str | None = None, cseq: int = 1,
                  routes: tuple[str, ...] | list[str] = (),
                  to_source: Any = None) -> ClientBranch | None:
        """Send a non-INVITE request of our own (e.g. an OPTIONS probe) in a client
        transaction; its final response is not forwarded but handed to
        ``on_final(status, response)``.

        The request has what §8.1.1 asks: our Via (tm branch, sent-by of the outgoing
        socket), From with a tag, To (``to_uri``, default ``ruri``), a new Call-ID,
        ``CSeq: 1 METHOD``, Max-Forwards 70 and Content-Length 0. It goes to
        ``destination`` (a URI, Kamailio's ``$du``) or else to the Request-URI's host.
        Over UDP Timer E retransmits it (§17.1.2.2). Provisional responses are ignored;
        ``on_final`` is called once, with the final status and response, or with a
        synthetic status and None: 408 when Timer F fires (§17.1.2.2), 503 when the
        transport fails (§8.1.3.1, also when no socket serves the transport), or the
        refusal of a forbidden destination (403) or of ourselves (482). A synthetic status
        may come before ``originate`` returns.

        In a dialog (§12.2.1.1: a BYE that ends it, ``end_dialog``): ``call_id``,
        ``from_tag`` and ``to_tag`` (the dialog's), ``cseq`` (the sender's next number),
        ``routes`` (Route values in order; ``destination`` then names the next hop), and
        ``to_source``: a transport ``Source`` to send to instead — the address (and TCP
        connection) a party's requests came from, for a party behind NAT (RFC 3581 §4).

        :returns: the client branch (None when it was not sent).
        :raises LocalProtocolError: INVITE/ACK/CANCEL (not a stand-alone non-INVITE
            transaction), a URI that is not a valid SIP URI, a CSeq outside 1 to 2**31-1
            (§8.1.1.5) or a header value with a line break.
        """
        method = method.upper()
        if method in ("INVITE", "ACK", "CANCEL") or not method or any(c in method for c in " \r\n"):
            raise LocalProtocolError(f"originate: {method!r} cannot be sent on its own")
        for name, value in (("ruri", ruri), ("from_uri", from_uri), ("to_uri", to_uri),
                            ("destination", destination)):
            if value is None:
                continue
            try:
                uri = parse_uri(value)
            except SipParseError as e:
                raise LocalProtocolError(f"originate: {name} {value!r}: {e.reason}") from e
            if name in ("ruri", "destination") and not isinstance(uri, SipUri):
                raise LocalProtocolError(f"originate: {name} {value!r} is not a SIP URI")
        if not 0 < cseq < 2**31:
            raise LocalProtocolError(f"originate: CSeq {cseq!r} is not in 1 to 2**31-1 (§8.1.1.5)")
        for value in (call_id, from_tag, to_tag, *routes):
            if value is not None and (not value or any(c in value for c in "\r\n")):
                raise LocalProtocolError(f"originate: {value!r} cannot go in a header")
        origin = OriginatedRequest(self, method, on_final)
        self.stats.originated += 1
        core = self.core
        prefer = None
        if to_source is not None:
            dest = Target(to_source.proto, to_source.ip, to_source.port,
                          getattr(to_source, "conn_id", None))
            prefer = getattr(to_source, "local", None)
        else:
            try:
                dest = core._target_for(destination if destination is not None else ruri)
            except RemoteProtocolError as e:
                raise LocalProtocolError(f"originate: cannot send to {ruri!r}: {e.reason}") from e
        refusal = core._refuse_destination(dest)
        sock = None if refusal else core._out_socket(dest.proto, dest.host, prefer)
        if sock is None:
            self._originated_final(origin, refusal or 503, None)
            return None
        branch_id = self._new_branch_id()
        salt = os.urandom(8).hex()
        lines = (
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/{dest.proto.upper()} {sock.via_host_port};branch={branch_id}",
            f"Max-Forwards: {DEFAULT_MAX_FORWARDS}",
            # §20.10: a URI in From/To goes inside <> (it may have parameters).
            *(f"Route: {value}" for value in routes),  # §12.2.1.1, in order
            f"From: <{from_uri}>;tag={from_tag if from_tag is not None else salt[:8]}",
            f"To: <{to_uri if to_uri is not None else ruri}>"
            + (f";tag={to_tag}" if to_tag is not None else ""),
            f"Call-ID: {call_id}" if call_id is not None else
            f"Call-ID: {salt[8:]}{branch_id[len(TM_BRANCH_PREFIX):]}@{sock.via_host_port}",
            f"CSeq: {cseq} {method}",
            "Content-Length: 0",
        )
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        machine = ClientNonInvite(self.timers, dest.proto != "udp")
        branch = ClientBranch(origin, machine, branch_id, data, dest, sock, ruri)
        self._launch(branch)
        return branch

    async def ping(self, method: str, uri: str, from_uri: str) -> int:
        """Send ``method`` (e.g. OPTIONS) to ``uri`` from ``from_uri`` and give its final
        status (408 when none came before Timer F, 503 when it could not be sent): the
        dispatcher's ``Pinger`` (``Dispatcher.start(pinger=core.tm.ping)``).

        :raises LocalProtocolError: as ``originate``."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.originate(method, uri, from_uri=from_uri,
                       on_final=functools.partial(_resolve, future))
        return await future

    async def end_dialog(self, dlg: Any, reason: str = "terminated by management", *,
                         wait: float | None = None) -> list[dict[str, Any]]:
        """End a confirmed dialog from the proxy (Kamailio ``dlg.end_dlg``): a BYE to the
        callee and one to the caller, built from the tracked dialog (RFC 3261 §12.2.1.1,
        §15.1.1; see ``dialogs.end_requests``), each in a client transaction of its own.
        The dialog is terminated with ``reason`` as soon as both are sent, so that
        listeners (accounting, dispatcher call load) see it end at once; then both final
        statuses are awaited, bounded by Timer F (a 408 when a party does not answer) or
        by ``wait`` seconds when given.

        :returns: per BYE (callee first) what was sent and its final ``status`` (0 with
            ``error`` when it could not be built or sent; None: no final response within
            ``wait``, the transaction goes on).
        :raises LocalProtocolError: dialogs are not tracked, or the dialog is not
            confirmed (an early one is ended by CANCEL, §15).
        """
        if self.dialogs is None:
            raise LocalProtocolError("dialogs are not tracked by this proxy")
        requests = end_requests(dlg, self.core.local.is_myself)
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[int]] = []
        out: list[dict[str, Any]] = []
        for r in requests:
            future: asyncio.Future[int] = loop.create_future()
            entry = r.to_dict()
            try:
                self.originate(r.method, r.ruri, from_uri=r.from_uri, to_uri=r.to_uri,
                               destination=r.next_hop if r.next_hop != r.ruri else None,
                               on_final=functools.partial(_resolve, future),
                               call_id=r.call_id, from_tag=r.from_tag, to_tag=r.to_tag,
                               cseq=r.cseq, routes=r.routes, to_source=r.source)
            except LocalProtocolError as e:
                log.warning("dialog %s: %s to the %s not sent: %s", dlg.id, r.method, r.side, e)
                entry["error"] = str(e)
                future.set_result(0)
            waits.append(future)
            out.append(entry)
        self.dialogs.terminate(dlg, reason, self.queue.now())
        self._schedule_dialogs()
        log.info("dialog %s (Call-ID %s) %s: BYE sent to both parties", dlg.id, dlg.call_id,
                 reason)
        await asyncio.wait(waits, timeout=wait)
        for entry, future in zip(out, waits, strict=True):
            entry["status"] = future.result() if future.done() else None
        return out

    def _originated_final(self, origin: OriginatedRequest, status: int, res: Any) -> None:
        """The final status of a request we originated, for its originator only."""
        try:
            origin.on_final(status, res)
        except Exception:  # noqa: BLE001 - the transaction layer goes on
            log.exception("%r: the on_final callback failed", origin)

    # -- CANCEL --------------------------------------------------------------------------------

    def relay_cancel(self, cancel: Any) -> None:
        """§16.10: a CANCEL for a transaction we have is answered 200 here and CANCELs its
        branches; without one it is forwarded statelessly."""
        core = self.core
        try:
            key = cancel_target_key(cancel)
        except SipParseError:
            core._send_reply(cancel, 400, "Bad Via")
            return
        txn = self.server.get(key)
        if txn is None or txn.method != "INVITE":
            core._forward(cancel, cancel.destination)
            return
        self.stats.cancels += 1
        core._send_reply(cancel, 200, "OK")
        if txn.final_sent or txn.canceled:
            return
        txn.canceled = True
        if self.dialogs is not None and txn.dialog is not None:
            self.dialogs.terminate(txn.dialog, "cancelled", self.queue.now())
        if not txn.branches and txn.n_pending == 0:
            # The script has not relayed yet (it is still running): answer 487 now.
            self.reply(txn, 487, "Request Terminated")
            return
        for b in txn.branches:
            if not b.final and not b.is_cancel:
                self._cancel_branch(b)

    def _cancel_branch(self, b: ClientBranch) -> None:
        if b.canceled or b.final or b.machine is _DONE:
            return
        if b.machine.has_provisional:
            self._send_cancel(b)
        else:
            b.cancel_pending = True  # §9.1: not before a provisional response

    def _send_cancel(self, b: ClientBranch) -> None:
        """§9.1: a CANCEL with the branch's R-URI, Via, Call-ID, From, To, CSeq number and
        Route, in a client transaction of its own."""
        if b.canceled:
            return
        b.canceled = True
        data = _build_for_branch(b.data, "CANCEL", None)
        if data is None:
            return
        machine = ClientNonInvite(b.txn.timers or self.timers, b.target.proto != "udp")
        c = ClientBranch(b.txn, machine, b.branch_id, data, b.target, b.sock, b.ruri)
        c.is_cancel = True
        self.cancels[b.branch_id] = c
        now = self.queue.now()
        try:
            # Timer C stops; the 487 is awaited at most Timer B more (§9.1, §16.8).
            b.machine.cancel_sent(now)
            self.queue.schedule(b, b.machine.deadline)
        except LocalProtocolError:
            pass
        self._client_actions(c, machine.start(now), now)

    def _send_ack(self, b: ClientBranch, res: Any) -> None:
        """§17.1.1.3: the ACK for a non-2xx final, built by the client transaction (once;
        a retransmitted final gets the same ACK again)."""
        if b.ack is None:
            b.ack = _build_for_branch(b.data, "ACK", res.header("to"))
            b.data = b""  # the request is not sent again: only its ACK
        if b.ack is not None:
            self.core.transport.send(b.ack, b.target, prefer=b.sock)

    # -- dialogs -----------------------------------------------------------------------------

    def _schedule_dialogs(self) -> None:
        self.queue.schedule(self._dialog_timer, self.dialogs.next_deadline())

    # -- introspection -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {"server": len(self.server), "client": len(self.client),
                "cancels": len(self.cancels)}


class _Done:
    """The machine of a branch that was never sent."""

    state = "terminated"
    deadline = None
    has_provisional = False


_DONE = _Done()


class _DialogTimer:
    """The dialog tracker's expiry, as one object in the timer queue."""

    __slots__ = ("tm", "_due")

    def __init__(self, tm: TransactionManager) -> None:
        self.tm = tm
        self._due: float | None = None

    def on_timer(self, now: float) -> None:
        self.tm.dialogs.expire(now)
        self.tm._schedule_dialogs()


def _resolve(future: asyncio.Future[int], status: int, res: Any) -> None:
    if not future.done():  # the waiter may have gone (cancelled)
        future.set_result(status)


def _add_path_routes(bm: Any, path: tuple[str, ...]) -> None:
    """RFC 3327 §5.3: a request to a contact registered with Path gets the Path URIs as
    its topmost Route headers, in order, so it follows the path back to the UA."""
    for uri in reversed(path):
        bm.insert_header_first("Route", uri if uri.startswith("<") else f"<{uri}>")


def _q_groups(targets: list[BranchTarget]) -> list[list[BranchTarget]]:
    """§16.6: targets grouped by q-value, highest first (no q counts as 1.0)."""
    by_q: dict[float, list[BranchTarget]] = {}
    for t in targets:
        by_q.setdefault(1.0 if t.q is None else t.q, []).append(t)
    return [by_q[q] for q in sorted(by_q, reverse=True)]


def _best_branch(finals: list[ClientBranch]) -> ClientBranch:
    """§16.7 step 6: any 6xx; else the lowest class, preferring 401/407/415/420/484 in
    4xx and anything over 503 in 5xx; the lowest status within the class."""
    sixes = [b for b in finals if b.final >= 600]
    if sixes:
        return sixes[0]
    lowest = min(b.final // 100 for b in finals)
    same = [b for b in finals if b.final // 100 == lowest]
    if lowest == 4:
        preferred = [b for b in same if b.final in _PREFERRED_4XX]
        if preferred:
            same = preferred
    if lowest == 5:
        not_503 = [b for b in same if b.final != 503]
        if not_503:
            same = not_503
    return min(same, key=lambda b: (b.final, b.index))


def _merge_challenges(res: Any, branches: list[ClientBranch]) -> None:
    """§16.7 step 7: every WWW-Authenticate / Proxy-Authenticate of the 401/407
    responses goes into the one forwarded."""
    for b in branches:
        other = b.response
        if other is None or other is res or b.final not in (401, 407):
            continue
        for name in ("WWW-Authenticate", "Proxy-Authenticate"):
            for value in other.header_all(name):
                res.add_header(name, value)


def _build_for_branch(data: bytes, method: str, to: str | None) -> bytes | None:
    """A CANCEL (§9.1) or a non-2xx ACK (§17.1.1.3) for the branch request ``data``:
    same R-URI, top Via, Call-ID, From, CSeq number and Route; To from the request
    (CANCEL) or from the response (ACK)."""
    try:
        req = parse_message(data)
        lines = [f"{method} {req.ruri} SIP/2.0"]
        lines.append(f"Via: {req.vias[0].raw}")
        for value in req.header_all("route"):
            lines.append(f"Route: {value}")
        lines.append(f"From: {req.header('from')}")
        lines.append(f"To: {to if to is not None else req.header('to')}")
        lines.append(f"Call-ID: {req.header('call-id')}")
        lines.append(f"CSeq: {req.cseq.seq} {method}")
        lines.append(f"Max-Forwards: {DEFAULT_MAX_FORWARDS}")
        lines.append("Content-Length: 0")
    except (SipParseError, IndexError) as e:
        log.warning("cannot build %s for a branch: %s", method, e)
        return None
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
