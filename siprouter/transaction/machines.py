# SPDX-License-Identifier: Apache-2.0
"""The four RFC 3261 §17 transaction state machines, with RFC 6026's "Accepted" states.

How this works
--------------
A machine is a small object with a ``state`` (one of the str constants below) and at most
two armed timers. The caller feeds it events -- a response received, a response the TU
wants sent, a retransmitted request, a timer due, a transport error -- always with the
current time ``now`` (float seconds, monotonic). Every event method returns an int of
action bit flags (``SEND | DELIVER`` ...; 0 = nothing to do); the machine never performs
I/O and never keeps message bytes: the caller (the TU: the proxy) holds the request it
sent or the last response it gave and carries the actions out.

After every event, ``deadline`` is the earliest armed timer (or None). The caller keeps
one timer heap and calls ``fire(now)`` at (or after) that time; ``fire`` runs every timer
due by ``now`` in deadline order and ORs their actions. Calling it early is harmless.

Each class has ``TRANSITIONS``: a dict from (state, event) to a handler, or to None for a
pair that is deliberately ignored (a late response, a timer that cannot be armed in that
state). Every pair of ``STATES x EVENTS`` is a key; that is checked when the module is
imported and again by a test, so no input is unhandled by accident. Public methods map
their arguments onto an event and dispatch through the table. Retransmission timers are
re-armed relative to ``now`` (the moment the message really went out again), so a late
``fire`` never causes a burst of catch-up retransmissions.

Reliable transports (TCP, TLS, SCTP, WS): Timers A, E and G are not armed, and Timers D,
I, J and K are zero, which means the machine terminates in the same step that would have
armed them (the step's actions include ``TERMINATED``).

Hot path: a proxy builds one server and one client machine per INVITE or BYE, so the
machines use ``__slots__``, int events and flags, a tuple-indexed dispatch row per state
and no allocation per event.
"""

from __future__ import annotations

from collections.abc import Callable

from siprouter.sip.errors import LocalProtocolError
from siprouter.transaction.timers import Timers

__all__ = [
    # action flags
    "SEND", "DELIVER", "SEND_ACK", "TIMEOUT", "TRANSPORT_ERROR", "TERMINATED",
    "SEND_TRYING", "CANCEL_BRANCH", "action_names",
    # states
    "CALLING", "TRYING", "PROCEEDING", "COMPLETED", "CONFIRMED", "ACCEPTED",
    "TERMINATED_STATE",
    # events
    "EV_RECV_1XX", "EV_RECV_2XX", "EV_RECV_300_699", "EV_SEND_1XX", "EV_SEND_2XX",
    "EV_SEND_300_699", "EV_RECV_REQUEST", "EV_RECV_ACK", "EV_TRANSPORT_ERROR",
    "EV_CANCEL_SENT", "EV_TIMER_A", "EV_TIMER_B", "EV_TIMER_C", "EV_TIMER_D", "EV_TIMER_E",
    "EV_TIMER_F", "EV_TIMER_G", "EV_TIMER_H", "EV_TIMER_I", "EV_TIMER_J", "EV_TIMER_K",
    "EV_TIMER_L", "EV_TIMER_M", "EV_TIMER_TRYING", "EV_TIMER_CANCEL", "EVENT_NAMES",
    # machines
    "ClientInvite", "ClientNonInvite", "ServerInvite", "ServerNonInvite",
]

# -- actions: bit flags returned by every event method ---------------------------------------

SEND = 1              # client: (re)send the request; server: (re)send the TU's last response
DELIVER = 2           # client: pass this response up to the TU (not for absorbed retransmissions)
SEND_ACK = 4          # client INVITE: send the ACK for a non-2xx final response (§17.1.1.3)
TIMEOUT = 8           # client: Timer B/F (or the CANCEL guard) fired without a final -> 408;
                      # server INVITE: Timer H fired (no ACK for the non-2xx final)
TRANSPORT_ERROR = 16  # tell the TU (§8.1.3.1: a client transaction's TU acts as on a 503)
TERMINATED = 32       # the machine reached Terminated: forget the transaction
SEND_TRYING = 64      # server INVITE: trying_delay passed without a response: send a 100
CANCEL_BRANCH = 128   # client INVITE: Timer C fired after a provisional: CANCEL the branch

_ACTION_NAMES = (
    (SEND, "SEND"), (DELIVER, "DELIVER"), (SEND_ACK, "SEND_ACK"), (TIMEOUT, "TIMEOUT"),
    (TRANSPORT_ERROR, "TRANSPORT_ERROR"), (TERMINATED, "TERMINATED"),
    (SEND_TRYING, "SEND_TRYING"), (CANCEL_BRANCH, "CANCEL_BRANCH"),
)


def action_names(actions: int) -> str:
    """``"SEND|DELIVER"`` for logs and test messages; ``"0"`` for no action."""
    return "|".join(name for flag, name in _ACTION_NAMES if actions & flag) or "0"


# -- states -------------------------------------------------------------------------------

CALLING = "calling"
TRYING = "trying"
PROCEEDING = "proceeding"
COMPLETED = "completed"
CONFIRMED = "confirmed"
ACCEPTED = "accepted"          # RFC 6026 §7.1 (client) and §7.1 (server)
TERMINATED_STATE = "terminated"

# -- events (table keys; the public methods map onto them) -----------------------------------

EV_RECV_1XX = 0           # client: a provisional response arrived
EV_RECV_2XX = 1           # client: a 2xx arrived
EV_RECV_300_699 = 2       # client: a 300-699 arrived
EV_SEND_1XX = 3           # server: the TU hands a provisional response
EV_SEND_2XX = 4           # server: the TU hands a 2xx
EV_SEND_300_699 = 5       # server: the TU hands a 300-699
EV_RECV_REQUEST = 6       # server: a retransmission of the request arrived
EV_RECV_ACK = 7           # server INVITE: an ACK matching the transaction arrived
EV_TRANSPORT_ERROR = 8    # the transport failed to send
EV_CANCEL_SENT = 9        # client INVITE: the TU sent a CANCEL for this branch
EV_TIMER_A = 10
EV_TIMER_B = 11
EV_TIMER_C = 12
EV_TIMER_D = 13
EV_TIMER_E = 14
EV_TIMER_F = 15
EV_TIMER_G = 16
EV_TIMER_H = 17
EV_TIMER_I = 18
EV_TIMER_J = 19
EV_TIMER_K = 20
EV_TIMER_L = 21
EV_TIMER_M = 22
EV_TIMER_TRYING = 23      # server INVITE: the 100 (Trying) delay (§17.2.1)
EV_TIMER_CANCEL = 24      # client INVITE: no final 64*T1 (Timer B) after a CANCEL (§9.1)
_N_EVENTS = 25

EVENT_NAMES = {value: name for name, value in globals().items()
               if name.startswith("EV_") and isinstance(value, int)}

_INF = float("inf")       # a disarmed timer slot

Handler = Callable[..., int]


# -- shared handlers ------------------------------------------------------------------------
# A handler is called as handler(machine, status, now) and returns the action flags; status
# is 0 for events that carry none. The public method updates ``deadline`` afterwards.

def _terminate(m) -> None:
    m.state = TERMINATED_STATE
    m._r_at = m._t_at = _INF


def _timed_out(m, status: int, now: float) -> int:
    m.state = TERMINATED_STATE
    m._r_at = m._t_at = _INF
    return TIMEOUT | TERMINATED


def _finished(m, status: int, now: float) -> int:
    """A wait timer (D, I, J, K, L, M) fired: nothing more to absorb."""
    m.state = TERMINATED_STATE
    m._r_at = m._t_at = _INF
    return TERMINATED


def _transport_failed(m, status: int, now: float) -> int:
    _terminate(m)
    return TRANSPORT_ERROR | TERMINATED


def _deliver(m, status: int, now: float) -> int:
    return DELIVER


def _resend(m, status: int, now: float) -> int:
    return SEND


class _Machine:
    """What the four machines share: the two timer slots and the dispatch."""

    __slots__ = ("state", "deadline", "_rows", "_timers", "_reliable", "_r_at", "_r_ev",
                 "_t_at", "_t_ev", "_interval")

    STATES: tuple[str, ...] = ()
    EVENTS: tuple[int, ...] = ()
    TRANSITIONS: dict[tuple[str, int], Handler | None] = {}
    # Per state, a tuple of handlers indexed by event (built by _compile). Each instance
    # keeps a reference in its ``_rows`` slot: a slot read is cheaper than a class
    # attribute read on the hot path.
    _ROWS: dict[str, tuple[Handler | None, ...]] = {}

    state: str
    deadline: float | None

    # Each subclass's __init__ sets every slot it reads (inlined: one machine per branch
    # of every call, so no base-class call); _r_ev, _t_ev and _interval are written
    # whenever their timer is armed, before they are ever read.

    def _dispatch(self, event: int, status: int, now: float) -> int:
        handler = self._rows[self.state][event]
        if handler is None:
            return 0
        actions = handler(self, status, now)
        r = self._r_at
        t = self._t_at
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions

    def fire(self, now: float) -> int:
        """Run every timer due at ``now`` (deadline <= now), earliest first.

        :returns: the OR of their actions (0 when nothing was due).
        """
        actions = 0
        rows = self._rows
        while True:
            r = self._r_at
            t = self._t_at
            if r <= t:
                if r > now:
                    break
                self._r_at = _INF
                event = self._r_ev
            else:
                if t > now:
                    break
                self._t_at = _INF
                event = self._t_ev
            handler = rows[self.state][event]
            if handler is not None:
                actions |= handler(self, 0, now)
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions

    def transport_error(self, now: float) -> int:
        """The transport reported a failure sending for this transaction (§17.1.1.2,
        §17.1.2.2, §17.2.1, §17.2.2).

        :returns: ``TRANSPORT_ERROR | TERMINATED`` where the RFC's state machine has that
            transition; 0 where it has none (the error is ignored).
        """
        return self._dispatch(EV_TRANSPORT_ERROR, 0, now)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state} deadline={self.deadline}>"


def _compile(cls: type[_Machine]) -> type[_Machine]:
    """Check that ``TRANSITIONS`` covers exactly ``STATES x EVENTS`` and build the
    per-state dispatch rows (a tuple indexed by event)."""
    wanted = {(s, e) for s in cls.STATES for e in cls.EVENTS}
    keys = set(cls.TRANSITIONS)
    if keys != wanted:
        missing = sorted((s, EVENT_NAMES[e]) for s, e in wanted - keys)
        extra = sorted((s, EVENT_NAMES.get(e, e)) for s, e in keys - wanted)
        raise AssertionError(f"{cls.__name__}.TRANSITIONS: missing {missing}, extra {extra}")
    cls._ROWS = {
        s: tuple(cls.TRANSITIONS.get((s, e)) for e in range(_N_EVENTS)) for s in cls.STATES
    }
    return cls


def _table(states, events, handled, default=None):
    """A full transition table: every pair ignored (``default``) except ``handled``."""
    table: dict[tuple[str, int], Handler | None] = {(s, e): default for s in states for e in events}
    for key, handler in handled.items():
        if key not in table:
            raise AssertionError(f"transition {key} is outside the table")
        table[key] = handler
    return table


# == INVITE client transaction (§17.1.1, RFC 6026 §8.4) ======================================
#
# Calling --1xx--> Proceeding --300-699--> Completed --Timer D--> Terminated
#    |                 |  \__2xx__> Accepted --Timer M--> Terminated
#    |__2xx__> Accepted, __300-699__> Completed, __Timer B / transport error__> Terminated
#
# Timer C (§16.6 step 11, §16.8) is the proxy's INVITE timeout; it is kept here because it
# lives and dies with the branch: armed on the first provisional (before that Timer B
# bounds the wait), reset by every further 101-199 (§16.7 step 2: not by 100). When it
# fires the TU must CANCEL the branch (CANCEL_BRANCH), and the machine then waits at most
# Timer B more for the final response (§9.1: "If no final response is received after
# 64*T1 seconds, the UAC should consider the original transaction cancelled").

def _ci_first_provisional(m: ClientInvite, status: int, now: float) -> int:
    # §17.1.1.2: Calling -> Proceeding on a provisional; no more retransmissions, and
    # Timer B is only watched in Calling.
    m.state = PROCEEDING
    m.has_provisional = True
    m._r_at = _INF
    m._t_at = now + m._timers.fr_inv_timer
    m._t_ev = EV_TIMER_C
    return DELIVER


def _ci_provisional(m: ClientInvite, status: int, now: float) -> int:
    # §16.7 step 2: "if the response is a provisional response with status codes 101 to
    # 199 inclusive (i.e., anything but 100), the proxy MUST reset timer C". Once the
    # branch is being cancelled the CANCEL guard runs instead and is not reset.
    if status > 100 and m._t_ev == EV_TIMER_C:
        m._t_at = now + m._timers.fr_inv_timer
    return DELIVER


def _ci_2xx(m: ClientInvite, status: int, now: float) -> int:
    # RFC 6026 §8.4: a 2xx moves Calling/Proceeding to Accepted (not Terminated) so that
    # retransmitted and forked 2xx still match; Timer M bounds the wait.
    m.state = ACCEPTED
    m._r_at = _INF
    m._t_at = now + m._timers._t1_x64
    m._t_ev = EV_TIMER_M
    return DELIVER


def _ci_final(m: ClientInvite, status: int, now: float) -> int:
    # §17.1.1.2: 300-699 -> Completed, ACK sent, response passed up; Timer D is at least
    # 32 s on unreliable transports and zero on reliable ones.
    m._r_at = _INF
    if m._reliable:
        _terminate(m)
        return DELIVER | SEND_ACK | TERMINATED
    m.state = COMPLETED
    m._t_at = now + m._timers.timer_d
    m._t_ev = EV_TIMER_D
    return DELIVER | SEND_ACK


def _ci_final_again(m: ClientInvite, status: int, now: float) -> int:
    # §17.1.1.2: "Any retransmissions of the final response that are received while in
    # the "Completed" state MUST cause the ACK to be re-passed to the transport layer for
    # retransmission, but the newly received response MUST NOT be passed up to the TU."
    return SEND_ACK


def _ci_timer_a(m: ClientInvite, status: int, now: float) -> int:
    # §17.1.1.2: retransmit and double the interval (no T2 cap for INVITE requests).
    interval = m._interval = m._interval * 2
    m._r_at = now + interval
    return SEND


def _ci_timer_c(m: ClientInvite, status: int, now: float) -> int:
    # §16.8: "If the client transaction has received a provisional response, the proxy
    # MUST generate a CANCEL request matching that transaction."
    m._t_at = now + m._timers._timer_bf
    m._t_ev = EV_TIMER_CANCEL
    return CANCEL_BRANCH


def _ci_cancel_sent(m: ClientInvite, status: int, now: float) -> int:
    # The TU cancelled the branch itself (another branch answered, the caller cancelled):
    # Timer C gives way to the 64*T1 guard of §9.1.
    if m._t_ev == EV_TIMER_C:
        m._t_at = now + m._timers._timer_bf
        m._t_ev = EV_TIMER_CANCEL
    return 0


def _ci_cancel_too_early(m: ClientInvite, status: int, now: float) -> int:
    raise LocalProtocolError(
        "CANCEL sent on an INVITE branch that has no provisional response yet "
        "(RFC 3261 §9.1: wait for one; check has_provisional)")


@_compile
class ClientInvite(_Machine):
    """INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §8.4), plus Timer C.

    :param timers: timer values. :param reliable: the branch's transport is reliable.

    Usage: ``start(now)`` when the INVITE is sent (returns SEND: send it), then feed
    ``receive_response``, ``fire``, ``transport_error`` and (extra) ``cancel_sent``.
    """

    __slots__ = ("has_provisional",)

    has_provisional: bool
    STATES = (CALLING, PROCEEDING, COMPLETED, ACCEPTED, TERMINATED_STATE)
    EVENTS = (EV_RECV_1XX, EV_RECV_2XX, EV_RECV_300_699, EV_TRANSPORT_ERROR, EV_CANCEL_SENT,
              EV_TIMER_A, EV_TIMER_B, EV_TIMER_C, EV_TIMER_D, EV_TIMER_M, EV_TIMER_CANCEL)
    TRANSITIONS = _table(STATES, EVENTS, {
        (CALLING, EV_RECV_1XX): _ci_first_provisional,
        (CALLING, EV_RECV_2XX): _ci_2xx,
        (CALLING, EV_RECV_300_699): _ci_final,
        (CALLING, EV_TIMER_A): _ci_timer_a,
        (CALLING, EV_TIMER_B): _timed_out,
        (CALLING, EV_TRANSPORT_ERROR): _transport_failed,
        (CALLING, EV_CANCEL_SENT): _ci_cancel_too_early,
        (PROCEEDING, EV_RECV_1XX): _ci_provisional,
        (PROCEEDING, EV_RECV_2XX): _ci_2xx,
        (PROCEEDING, EV_RECV_300_699): _ci_final,
        (PROCEEDING, EV_TIMER_C): _ci_timer_c,
        (PROCEEDING, EV_TIMER_CANCEL): _timed_out,
        (PROCEEDING, EV_CANCEL_SENT): _ci_cancel_sent,
        # Proceeding + transport error: ignored. Figure 5 has no such transition (nothing
        # is sent in Proceeding); Timer C still bounds the branch.
        (COMPLETED, EV_RECV_300_699): _ci_final_again,
        (COMPLETED, EV_TIMER_D): _finished,
        (COMPLETED, EV_TRANSPORT_ERROR): _transport_failed,  # sending the ACK failed
        (ACCEPTED, EV_RECV_2XX): _deliver,   # RFC 6026: every 2xx goes to the TU
        (ACCEPTED, EV_TIMER_M): _finished,
    })

    def __init__(self, timers: Timers, reliable: bool) -> None:
        self.state = CALLING
        self.deadline = None
        self._rows = _CLIENT_INVITE_ROWS
        self._timers = timers
        self._reliable = reliable
        self._r_at = self._t_at = _INF
        self.has_provisional = False

    def start(self, now: float) -> int:
        """The INVITE is being sent: enter Calling, arm Timer A (unreliable) and B.

        :returns: SEND.
        """
        timers = self._timers
        if not self._reliable:
            self._interval = t1 = timers.t1
            self._r_at = now + t1
            self._r_ev = EV_TIMER_A
        self._t_at = b = now + timers._timer_bf
        self._t_ev = EV_TIMER_B
        self.deadline = self._r_at if self._r_at < b else b
        return SEND

    def receive_response(self, status: int, now: float) -> int:
        """A response matching this transaction arrived (§17.1.3).

        :returns: DELIVER for a response the TU must see (every 1xx before the final,
            the final, every 2xx); SEND_ACK with a 300-699 (first and retransmitted);
            TERMINATED on reliable transports after a 300-699.
        """
        # The dispatch of _dispatch, inlined: this runs for every response.
        handler = self._rows[self.state][
            EV_RECV_1XX if status < 200 else EV_RECV_2XX if status < 300 else EV_RECV_300_699]
        if handler is None:
            return 0
        actions = handler(self, status, now)
        r = self._r_at
        t = self._t_at
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions

    def cancel_sent(self, now: float) -> int:
        """The TU sent a CANCEL for this branch (§9.1, §16.10): Timer C stops and the
        final response (487) is awaited at most Timer B; then TIMEOUT | TERMINATED.

        Not in the original contract; calling it is optional (without it Timer C runs on
        and fires CANCEL_BRANCH once more before the guard starts).

        :raises LocalProtocolError: in Calling: a CANCEL must wait for a provisional.
        :returns: 0.
        """
        return self._dispatch(EV_CANCEL_SENT, 0, now)


_CLIENT_INVITE_ROWS = ClientInvite._ROWS


# == non-INVITE client transaction (§17.1.2) =================================================

def _cn_provisional(m: ClientNonInvite, status: int, now: float) -> int:
    m.state = PROCEEDING
    m.has_provisional = True
    return DELIVER


def _cn_final(m: ClientNonInvite, status: int, now: float) -> int:
    # §17.1.2.2: a final response -> Completed, passed up; Timer K = T4 (0 reliable).
    m._r_at = _INF
    if m._reliable:
        _terminate(m)
        return DELIVER | TERMINATED
    m.state = COMPLETED
    m._t_at = now + m._timers.t4
    m._t_ev = EV_TIMER_K
    return DELIVER


def _cn_timer_e_trying(m: ClientNonInvite, status: int, now: float) -> int:
    # §17.1.2.2: retransmit; the interval doubles up to T2.
    interval = m._interval * 2
    t2 = m._timers.t2
    if interval > t2:
        interval = t2
    m._interval = interval
    m._r_at = now + interval
    return SEND


def _cn_timer_e_proceeding(m: ClientNonInvite, status: int, now: float) -> int:
    # §17.1.2.2: "If Timer E fires while in the "Proceeding" state, the request MUST be
    # passed to the transport layer for retransmission, and Timer E MUST be reset with a
    # value of T2 seconds."
    m._interval = t2 = m._timers.t2
    m._r_at = now + t2
    return SEND


@_compile
class ClientNonInvite(_Machine):
    """Non-INVITE client transaction (RFC 3261 §17.1.2).

    Trying (E, F) -> Proceeding (E at T2, F) -> Completed (K) -> Terminated.
    """

    __slots__ = ("has_provisional",)

    has_provisional: bool
    STATES = (TRYING, PROCEEDING, COMPLETED, TERMINATED_STATE)
    EVENTS = (EV_RECV_1XX, EV_RECV_2XX, EV_RECV_300_699, EV_TRANSPORT_ERROR,
              EV_TIMER_E, EV_TIMER_F, EV_TIMER_K)
    TRANSITIONS = _table(STATES, EVENTS, {
        (TRYING, EV_RECV_1XX): _cn_provisional,
        (TRYING, EV_RECV_2XX): _cn_final,
        (TRYING, EV_RECV_300_699): _cn_final,
        (TRYING, EV_TIMER_E): _cn_timer_e_trying,
        (TRYING, EV_TIMER_F): _timed_out,
        (TRYING, EV_TRANSPORT_ERROR): _transport_failed,
        (PROCEEDING, EV_RECV_1XX): _deliver,
        (PROCEEDING, EV_RECV_2XX): _cn_final,
        (PROCEEDING, EV_RECV_300_699): _cn_final,
        (PROCEEDING, EV_TIMER_E): _cn_timer_e_proceeding,
        (PROCEEDING, EV_TIMER_F): _timed_out,
        (PROCEEDING, EV_TRANSPORT_ERROR): _transport_failed,
        # Completed: "any retransmissions of the final response ... are discarded".
        (COMPLETED, EV_TIMER_K): _finished,
    })

    def __init__(self, timers: Timers, reliable: bool) -> None:
        self.state = TRYING
        self.deadline = None
        self._rows = _CLIENT_NON_INVITE_ROWS
        self._timers = timers
        self._reliable = reliable
        self._r_at = self._t_at = _INF
        self.has_provisional = False

    def start(self, now: float) -> int:
        """The request is being sent: enter Trying, arm Timer E (unreliable) and F.

        :returns: SEND.
        """
        timers = self._timers
        if not self._reliable:
            self._interval = t1 = timers.t1
            self._r_at = now + t1
            self._r_ev = EV_TIMER_E
        self._t_at = f = now + timers._timer_bf
        self._t_ev = EV_TIMER_F
        self.deadline = self._r_at if self._r_at < f else f
        return SEND

    def receive_response(self, status: int, now: float) -> int:
        """A response matching this transaction arrived (§17.1.3).

        :returns: DELIVER for every 1xx before the final and for the final; 0 for
            retransmitted finals; TERMINATED with the final on reliable transports.
        """
        # The dispatch of _dispatch, inlined: this runs for every response.
        handler = self._rows[self.state][
            EV_RECV_1XX if status < 200 else EV_RECV_2XX if status < 300 else EV_RECV_300_699]
        if handler is None:
            return 0
        actions = handler(self, status, now)
        r = self._r_at
        t = self._t_at
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions


_CLIENT_NON_INVITE_ROWS = ClientNonInvite._ROWS


# == INVITE server transaction (§17.2.1, RFC 6026 §8.5-8.7) ==================================
#
# Proceeding --300-699 from TU--> Completed --ACK--> Confirmed --Timer I--> Terminated
#     |                               \__Timer H / transport error__> Terminated
#     |__2xx from TU__> Accepted --Timer L--> Terminated
#
# The TU keeps the bytes of the last response it handed over; SEND means "send that".

def _si_request_again(m: ServerInvite, status: int, now: float) -> int:
    # §17.2.1: a retransmitted INVITE in Proceeding re-sends "the most recent provisional
    # response"; before any response there is nothing to send.
    return SEND if m.last_status is not None else 0


def _si_send_provisional(m: ServerInvite, status: int, now: float) -> int:
    m.last_status = status
    m._r_at = _INF    # the TU answered: no automatic 100
    return SEND


def _si_send_2xx(m: ServerInvite, status: int, now: float) -> int:
    # RFC 6026 §8.5: Proceeding -> Accepted on a 2xx from the TU; Timer L = 64*T1 keeps the
    # transaction absorbing INVITE retransmissions.
    m.state = ACCEPTED
    m.last_status = status
    m._r_at = _INF
    m._t_at = now + m._timers._t1_x64
    m._t_ev = EV_TIMER_L
    return SEND


def _si_send_final(m: ServerInvite, status: int, now: float) -> int:
    # §17.2.1: 300-699 from the TU -> Completed; Timer G (unreliable) retransmits the
    # response, Timer H bounds the wait for the ACK.
    m.state = COMPLETED
    m.last_status = status
    timers = m._timers
    if m._reliable:
        m._r_at = _INF
    else:
        m._interval = t1 = timers.t1
        m._r_at = now + t1
        m._r_ev = EV_TIMER_G
    m._t_at = now + timers._t1_x64
    m._t_ev = EV_TIMER_H
    return SEND


def _si_send_2xx_again(m: ServerInvite, status: int, now: float) -> int:
    # RFC 6026 §8.7: in Accepted each 2xx from the TU is sent (retransmissions by the UAS
    # core, 2xx from other forked branches).
    m.last_status = status
    return SEND


def _si_tu_bug(m: ServerInvite, status: int, now: float) -> int:
    # After a non-2xx final (or after the transaction ended) the TU has nothing more to
    # send here; a late 2xx from another branch is forwarded statelessly by the proxy
    # (RFC 6026 §7.2), which is why this raises instead of dropping silently.
    raise LocalProtocolError(
        f"response {status} handed to an INVITE server transaction in state {m.state} "
        f"(last response {m.last_status})")


def _si_ack(m: ServerInvite, status: int, now: float) -> int:
    # §17.2.1: ACK in Completed -> Confirmed; Timer I = T4 absorbs ACK retransmissions
    # (zero on reliable transports).
    m._r_at = _INF
    if m._reliable:
        _terminate(m)
        return TERMINATED
    m.state = CONFIRMED
    m._t_at = now + m._timers.t4
    m._t_ev = EV_TIMER_I
    return 0


def _si_timer_g(m: ServerInvite, status: int, now: float) -> int:
    # §17.2.1: retransmit; G is reset to MIN(2*previous, T2).
    interval = m._interval * 2
    t2 = m._timers.t2
    if interval > t2:
        interval = t2
    m._interval = interval
    m._r_at = now + interval
    return SEND


def _si_timer_trying(m: ServerInvite, status: int, now: float) -> int:
    # §17.2.1: "the server transaction MUST generate a 100 (Trying) response" if the TU
    # has not answered within 200 ms. The TU sends it and keeps it as its last response.
    if m.last_status is not None:
        return 0
    m.last_status = 100
    return SEND_TRYING


def _si_transport_error_accepted(m: ServerInvite, status: int, now: float) -> int:
    # RFC 6026's Accepted state has no transport-error exit: stay and keep absorbing
    # INVITE retransmissions until Timer L, but tell the TU.
    return TRANSPORT_ERROR


@_compile
class ServerInvite(_Machine):
    """INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §8.5-8.7).

    :param timers: timer values. :param reliable: the INVITE came on a reliable transport.

    ``last_status`` is the status of the last response the TU handed over (100 once the
    machine asked for an automatic 100 with SEND_TRYING), None before any.
    """

    __slots__ = ("last_status",)

    last_status: int | None
    STATES = (PROCEEDING, COMPLETED, CONFIRMED, ACCEPTED, TERMINATED_STATE)
    EVENTS = (EV_RECV_REQUEST, EV_RECV_ACK, EV_SEND_1XX, EV_SEND_2XX, EV_SEND_300_699,
              EV_TRANSPORT_ERROR, EV_TIMER_TRYING, EV_TIMER_G, EV_TIMER_H, EV_TIMER_I,
              EV_TIMER_L)
    TRANSITIONS = _table(STATES, EVENTS, {
        (PROCEEDING, EV_RECV_REQUEST): _si_request_again,
        (PROCEEDING, EV_SEND_1XX): _si_send_provisional,
        (PROCEEDING, EV_SEND_2XX): _si_send_2xx,
        (PROCEEDING, EV_SEND_300_699): _si_send_final,
        (PROCEEDING, EV_TIMER_TRYING): _si_timer_trying,
        (PROCEEDING, EV_TRANSPORT_ERROR): _transport_failed,
        # Proceeding + ACK: ignored (nothing to acknowledge yet).
        (COMPLETED, EV_RECV_REQUEST): _resend,
        (COMPLETED, EV_RECV_ACK): _si_ack,
        (COMPLETED, EV_SEND_1XX): _si_tu_bug,
        (COMPLETED, EV_SEND_2XX): _si_tu_bug,
        (COMPLETED, EV_SEND_300_699): _si_tu_bug,
        (COMPLETED, EV_TIMER_G): _si_timer_g,
        (COMPLETED, EV_TIMER_H): _timed_out,
        (COMPLETED, EV_TRANSPORT_ERROR): _transport_failed,
        # Confirmed: INVITE and ACK retransmissions absorbed until Timer I.
        (CONFIRMED, EV_SEND_1XX): _si_tu_bug,
        (CONFIRMED, EV_SEND_2XX): _si_tu_bug,
        (CONFIRMED, EV_SEND_300_699): _si_tu_bug,
        (CONFIRMED, EV_TIMER_I): _finished,
        # Accepted: INVITE retransmissions absorbed (RFC 6026 §8.7); an ACK (for the 2xx)
        # is not this transaction's business: the proxy routes it end to end (§16.7).
        (ACCEPTED, EV_SEND_1XX): _si_tu_bug,
        (ACCEPTED, EV_SEND_2XX): _si_send_2xx_again,
        (ACCEPTED, EV_SEND_300_699): _si_tu_bug,
        (ACCEPTED, EV_TIMER_L): _finished,
        (ACCEPTED, EV_TRANSPORT_ERROR): _si_transport_error_accepted,
        # Terminated: messages and timers ignored; a response handed over is a TU error.
        (TERMINATED_STATE, EV_SEND_1XX): _si_tu_bug,
        (TERMINATED_STATE, EV_SEND_2XX): _si_tu_bug,
        (TERMINATED_STATE, EV_SEND_300_699): _si_tu_bug,
    })

    def __init__(self, timers: Timers, reliable: bool) -> None:
        self.state = PROCEEDING
        self.deadline = None
        self._rows = _SERVER_INVITE_ROWS
        self._timers = timers
        self._reliable = reliable
        self._r_at = self._t_at = _INF
        self.last_status = None
        self._r_ev = EV_TIMER_TRYING

    def start(self, now: float) -> int:
        """The INVITE arrived and the TU was given it: enter Proceeding and arm the 100
        (Trying) timer (``trying_delay``).

        :returns: 0.
        """
        self.deadline = self._r_at = now + self._timers.trying_delay
        return 0

    def receive_request(self, now: float) -> int:
        """A retransmission of the INVITE arrived (§17.2.3 matched it).

        :returns: SEND when the last response must be re-sent (Proceeding after a
            provisional, Completed); 0 when it is absorbed.
        """
        return self._dispatch(EV_RECV_REQUEST, 0, now)

    def receive_ack(self, now: float) -> int:
        """An ACK matching this transaction arrived (an ACK for a non-2xx final).

        :returns: 0 in Completed (-> Confirmed) or TERMINATED on reliable transports;
            0 elsewhere (absorbed).
        """
        return self._dispatch(EV_RECV_ACK, 0, now)

    def send_response(self, status: int, now: float) -> int:
        """The TU hands a response (it keeps the bytes; SEND means send them).

        :returns: SEND.
        :raises LocalProtocolError: a response after a final one (other than a further
            2xx after a 2xx, RFC 6026), or once the transaction is terminated (a late
            2xx is then the proxy's to forward statelessly, RFC 6026 §7.2).
        """
        handler = self._rows[self.state][
            EV_SEND_1XX if status < 200 else EV_SEND_2XX if status < 300 else EV_SEND_300_699]
        if handler is None:
            return 0
        actions = handler(self, status, now)
        r = self._r_at
        t = self._t_at
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions


_SERVER_INVITE_ROWS = ServerInvite._ROWS


# == non-INVITE server transaction (§17.2.2) =================================================

def _sn_send_provisional(m: ServerNonInvite, status: int, now: float) -> int:
    m.state = PROCEEDING
    m.last_status = status
    return SEND


def _sn_send_provisional_again(m: ServerNonInvite, status: int, now: float) -> int:
    m.last_status = status
    return SEND


def _sn_send_final(m: ServerNonInvite, status: int, now: float) -> int:
    # §17.2.2: a final response -> Completed; Timer J = 64*T1 absorbs request
    # retransmissions (zero on reliable transports).
    m.last_status = status
    if m._reliable:
        _terminate(m)
        return SEND | TERMINATED
    m.state = COMPLETED
    m._t_at = now + m._timers._t1_x64
    m._t_ev = EV_TIMER_J
    return SEND


@_compile
class ServerNonInvite(_Machine):
    """Non-INVITE server transaction (RFC 3261 §17.2.2).

    Trying -> Proceeding (after a 1xx from the TU) -> Completed (J) -> Terminated.
    A final response handed over in Completed is discarded (§17.2.2), returning 0.
    """

    __slots__ = ("last_status",)

    last_status: int | None
    STATES = (TRYING, PROCEEDING, COMPLETED, TERMINATED_STATE)
    EVENTS = (EV_RECV_REQUEST, EV_SEND_1XX, EV_SEND_2XX, EV_SEND_300_699, EV_TRANSPORT_ERROR,
              EV_TIMER_J)
    TRANSITIONS = _table(STATES, EVENTS, {
        # Trying + request: "any further request retransmissions are discarded".
        (TRYING, EV_SEND_1XX): _sn_send_provisional,
        (TRYING, EV_SEND_2XX): _sn_send_final,
        (TRYING, EV_SEND_300_699): _sn_send_final,
        # Trying + transport error: ignored; nothing was sent in Trying (Figure 8).
        (PROCEEDING, EV_RECV_REQUEST): _resend,
        (PROCEEDING, EV_SEND_1XX): _sn_send_provisional_again,
        (PROCEEDING, EV_SEND_2XX): _sn_send_final,
        (PROCEEDING, EV_SEND_300_699): _sn_send_final,
        (PROCEEDING, EV_TRANSPORT_ERROR): _transport_failed,
        (COMPLETED, EV_RECV_REQUEST): _resend,
        # Completed + response from the TU: "MUST be discarded" (§17.2.2).
        (COMPLETED, EV_TIMER_J): _finished,
        (COMPLETED, EV_TRANSPORT_ERROR): _transport_failed,
    })

    def __init__(self, timers: Timers, reliable: bool) -> None:
        self.state = TRYING
        self.deadline = None
        self._rows = _SERVER_NON_INVITE_ROWS
        self._timers = timers
        self._reliable = reliable
        self._r_at = self._t_at = _INF
        self.last_status = None

    def start(self, now: float) -> int:
        """The request arrived and the TU was given it: enter Trying.

        :returns: 0.
        """
        return 0

    def receive_request(self, now: float) -> int:
        """A retransmission of the request arrived.

        :returns: SEND in Proceeding and Completed (re-send the last response); 0 in
            Trying (discarded).
        """
        return self._dispatch(EV_RECV_REQUEST, 0, now)

    def send_response(self, status: int, now: float) -> int:
        """The TU hands a response (it keeps the bytes; SEND means send them).

        :returns: SEND (with TERMINATED for a final on a reliable transport); 0 when the
            response is discarded (Completed, Terminated).
        """
        handler = self._rows[self.state][
            EV_SEND_1XX if status < 200 else EV_SEND_2XX if status < 300 else EV_SEND_300_699]
        if handler is None:
            return 0
        actions = handler(self, status, now)
        r = self._r_at
        t = self._t_at
        d = r if r < t else t
        self.deadline = None if d == _INF else d
        return actions


_SERVER_NON_INVITE_ROWS = ServerNonInvite._ROWS
