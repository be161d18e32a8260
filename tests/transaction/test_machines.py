"""The four §17 transaction machines (+ RFC 6026 Accepted): every transition, exact
deadlines with a fake clock on unreliable and reliable transports."""

from __future__ import annotations

import pytest

from siprouter.sip.errors import LocalProtocolError
from siprouter.transaction import machines as mod
from siprouter.transaction.machines import (
    ACCEPTED,
    CALLING,
    CANCEL_BRANCH,
    COMPLETED,
    CONFIRMED,
    DELIVER,
    EV_CANCEL_SENT,
    EV_RECV_1XX,
    EV_RECV_2XX,
    EV_RECV_300_699,
    EV_RECV_ACK,
    EV_RECV_REQUEST,
    EV_SEND_1XX,
    EV_SEND_2XX,
    EV_SEND_300_699,
    EV_TIMER_A,
    EV_TIMER_B,
    EV_TIMER_C,
    EV_TIMER_CANCEL,
    EV_TIMER_D,
    EV_TIMER_E,
    EV_TIMER_F,
    EV_TIMER_G,
    EV_TIMER_H,
    EV_TIMER_I,
    EV_TIMER_J,
    EV_TIMER_K,
    EV_TIMER_L,
    EV_TIMER_M,
    EV_TIMER_TRYING,
    EV_TRANSPORT_ERROR,
    EVENT_NAMES,
    PROCEEDING,
    SEND,
    SEND_ACK,
    SEND_TRYING,
    TERMINATED,
    TERMINATED_STATE,
    TIMEOUT,
    TRANSPORT_ERROR,
    TRYING,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    action_names,
)
from siprouter.transaction.timers import Timers

MACHINES = (ClientInvite, ClientNonInvite, ServerInvite, ServerNonInvite)
T = Timers()  # t1 0.5, t2 4, t4 5, B/F/H/J/L/M 32, C 180, D 32, trying 0.2


def show(actions):
    return action_names(actions)


# -- the tables are complete ------------------------------------------------------------------

@pytest.mark.parametrize("cls", MACHINES, ids=lambda c: c.__name__)
def test_every_state_event_pair_is_handled_or_deliberately_ignored(cls):
    wanted = {(s, e) for s in cls.STATES for e in cls.EVENTS}
    assert set(cls.TRANSITIONS) == wanted
    for key, handler in cls.TRANSITIONS.items():
        assert handler is None or callable(handler), key
    # Every state but Terminated handles something; Terminated at most refuses a response
    # from the TU (ServerInvite), it never acts.
    for state in cls.STATES:
        handled = [e for e in cls.EVENTS if cls.TRANSITIONS[(state, e)] is not None]
        if state == TERMINATED_STATE:
            assert all(cls.TRANSITIONS[(state, e)] is mod._si_tu_bug for e in handled)
        else:
            assert handled, state


def test_an_incomplete_table_is_refused_at_import():
    class Broken(mod._Machine):
        __slots__ = ()
        STATES = (TRYING, TERMINATED_STATE)
        EVENTS = (EV_RECV_1XX, EV_TIMER_E)
        TRANSITIONS = {(TRYING, EV_RECV_1XX): None}

    with pytest.raises(AssertionError, match="missing"):
        mod._compile(Broken)


def test_event_names_are_unique_ints():
    assert len(set(EVENT_NAMES)) == len(EVENT_NAMES) == mod._N_EVENTS
    assert EVENT_NAMES[EV_TIMER_A] == "EV_TIMER_A"


def test_action_names():
    assert action_names(0) == "0"
    assert action_names(SEND | TERMINATED) == "SEND|TERMINATED"


# -- every pair, driven through the public methods -------------------------------------------
#
# For each machine: how to reach each state (unreliable transport), and the expected
# (actions, next state) of every handled pair. Pairs not listed must be ignored: 0 actions,
# same state, same deadline. Timer events go through the same dispatch as fire() (fire()
# itself is covered by the deadline tests below).

RAISES = "raises"


def reach(cls, state, reliable=False, now=1.0):
    m = cls(T, reliable)
    m.start(0.0)
    if cls is ClientInvite:
        steps = {CALLING: [], PROCEEDING: [("r", 180)], COMPLETED: [("r", 486)],
                 ACCEPTED: [("r", 200)], TERMINATED_STATE: [("e",)]}[state]
    elif cls is ClientNonInvite:
        steps = {TRYING: [], PROCEEDING: [("r", 180)], COMPLETED: [("r", 200)],
                 TERMINATED_STATE: [("e",)]}[state]
    elif cls is ServerInvite:
        steps = {PROCEEDING: [], COMPLETED: [("s", 486)], CONFIRMED: [("s", 486), ("a",)],
                 ACCEPTED: [("s", 200)], TERMINATED_STATE: [("e",)]}[state]
    else:
        steps = {TRYING: [], PROCEEDING: [("s", 180)], COMPLETED: [("s", 200)],
                 TERMINATED_STATE: [("s", 180), ("e",)]}[state]
    for step in steps:
        if step[0] == "r":
            m.receive_response(step[1], now)
        elif step[0] == "s":
            m.send_response(step[1], now)
        elif step[0] == "a":
            m.receive_ack(now)
        else:
            m.transport_error(now)
    assert m.state == state
    return m


def trigger(m, event, now):
    if event == EV_RECV_1XX:
        return m.receive_response(180, now)
    if event == EV_RECV_2XX:
        return m.receive_response(200, now)
    if event == EV_RECV_300_699:
        return m.receive_response(486, now)
    if event == EV_SEND_1XX:
        return m.send_response(180, now)
    if event == EV_SEND_2XX:
        return m.send_response(200, now)
    if event == EV_SEND_300_699:
        return m.send_response(486, now)
    if event == EV_RECV_REQUEST:
        return m.receive_request(now)
    if event == EV_RECV_ACK:
        return m.receive_ack(now)
    if event == EV_TRANSPORT_ERROR:
        return m.transport_error(now)
    if event == EV_CANCEL_SENT:
        return m.cancel_sent(now)
    return m._dispatch(event, 0, now)  # a timer


EXPECTED = {
    ClientInvite: {
        (CALLING, EV_RECV_1XX): (DELIVER, PROCEEDING),
        (CALLING, EV_RECV_2XX): (DELIVER, ACCEPTED),
        (CALLING, EV_RECV_300_699): (DELIVER | SEND_ACK, COMPLETED),
        (CALLING, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (CALLING, EV_CANCEL_SENT): (RAISES, CALLING),
        (CALLING, EV_TIMER_A): (SEND, CALLING),
        (CALLING, EV_TIMER_B): (TIMEOUT | TERMINATED, TERMINATED_STATE),
        (PROCEEDING, EV_RECV_1XX): (DELIVER, PROCEEDING),
        (PROCEEDING, EV_RECV_2XX): (DELIVER, ACCEPTED),
        (PROCEEDING, EV_RECV_300_699): (DELIVER | SEND_ACK, COMPLETED),
        (PROCEEDING, EV_CANCEL_SENT): (0, PROCEEDING),
        (PROCEEDING, EV_TIMER_C): (CANCEL_BRANCH, PROCEEDING),
        (PROCEEDING, EV_TIMER_CANCEL): (TIMEOUT | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_RECV_300_699): (SEND_ACK, COMPLETED),
        (COMPLETED, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_TIMER_D): (TERMINATED, TERMINATED_STATE),
        (ACCEPTED, EV_RECV_2XX): (DELIVER, ACCEPTED),
        (ACCEPTED, EV_TIMER_M): (TERMINATED, TERMINATED_STATE),
    },
    ClientNonInvite: {
        (TRYING, EV_RECV_1XX): (DELIVER, PROCEEDING),
        (TRYING, EV_RECV_2XX): (DELIVER, COMPLETED),
        (TRYING, EV_RECV_300_699): (DELIVER, COMPLETED),
        (TRYING, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (TRYING, EV_TIMER_E): (SEND, TRYING),
        (TRYING, EV_TIMER_F): (TIMEOUT | TERMINATED, TERMINATED_STATE),
        (PROCEEDING, EV_RECV_1XX): (DELIVER, PROCEEDING),
        (PROCEEDING, EV_RECV_2XX): (DELIVER, COMPLETED),
        (PROCEEDING, EV_RECV_300_699): (DELIVER, COMPLETED),
        (PROCEEDING, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (PROCEEDING, EV_TIMER_E): (SEND, PROCEEDING),
        (PROCEEDING, EV_TIMER_F): (TIMEOUT | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_TIMER_K): (TERMINATED, TERMINATED_STATE),
    },
    ServerInvite: {
        (PROCEEDING, EV_SEND_1XX): (SEND, PROCEEDING),
        (PROCEEDING, EV_SEND_2XX): (SEND, ACCEPTED),
        (PROCEEDING, EV_SEND_300_699): (SEND, COMPLETED),
        (PROCEEDING, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (PROCEEDING, EV_TIMER_TRYING): (SEND_TRYING, PROCEEDING),
        # (PROCEEDING, EV_RECV_REQUEST) is handled: 0 before any response (see below).
        (PROCEEDING, EV_RECV_REQUEST): (0, PROCEEDING),
        (COMPLETED, EV_RECV_REQUEST): (SEND, COMPLETED),
        (COMPLETED, EV_RECV_ACK): (0, CONFIRMED),
        (COMPLETED, EV_SEND_1XX): (RAISES, COMPLETED),
        (COMPLETED, EV_SEND_2XX): (RAISES, COMPLETED),
        (COMPLETED, EV_SEND_300_699): (RAISES, COMPLETED),
        (COMPLETED, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_TIMER_G): (SEND, COMPLETED),
        (COMPLETED, EV_TIMER_H): (TIMEOUT | TERMINATED, TERMINATED_STATE),
        (CONFIRMED, EV_SEND_1XX): (RAISES, CONFIRMED),
        (CONFIRMED, EV_SEND_2XX): (RAISES, CONFIRMED),
        (CONFIRMED, EV_SEND_300_699): (RAISES, CONFIRMED),
        (CONFIRMED, EV_TIMER_I): (TERMINATED, TERMINATED_STATE),
        (ACCEPTED, EV_SEND_1XX): (RAISES, ACCEPTED),
        (ACCEPTED, EV_SEND_2XX): (SEND, ACCEPTED),
        (ACCEPTED, EV_SEND_300_699): (RAISES, ACCEPTED),
        (ACCEPTED, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR, ACCEPTED),
        (ACCEPTED, EV_TIMER_L): (TERMINATED, TERMINATED_STATE),
        (TERMINATED_STATE, EV_SEND_1XX): (RAISES, TERMINATED_STATE),
        (TERMINATED_STATE, EV_SEND_2XX): (RAISES, TERMINATED_STATE),
        (TERMINATED_STATE, EV_SEND_300_699): (RAISES, TERMINATED_STATE),
    },
    ServerNonInvite: {
        (TRYING, EV_SEND_1XX): (SEND, PROCEEDING),
        (TRYING, EV_SEND_2XX): (SEND, COMPLETED),
        (TRYING, EV_SEND_300_699): (SEND, COMPLETED),
        (PROCEEDING, EV_RECV_REQUEST): (SEND, PROCEEDING),
        (PROCEEDING, EV_SEND_1XX): (SEND, PROCEEDING),
        (PROCEEDING, EV_SEND_2XX): (SEND, COMPLETED),
        (PROCEEDING, EV_SEND_300_699): (SEND, COMPLETED),
        (PROCEEDING, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_RECV_REQUEST): (SEND, COMPLETED),
        (COMPLETED, EV_TRANSPORT_ERROR): (TRANSPORT_ERROR | TERMINATED, TERMINATED_STATE),
        (COMPLETED, EV_TIMER_J): (TERMINATED, TERMINATED_STATE),
    },
}


def _pairs():
    for cls in MACHINES:
        for state in cls.STATES:
            for event in cls.EVENTS:
                yield pytest.param(cls, state, event,
                                   id=f"{cls.__name__}-{state}-{EVENT_NAMES[event]}")


@pytest.mark.parametrize(("cls", "state", "event"), list(_pairs()))
def test_transition(cls, state, event):
    m = reach(cls, state)
    before = m.deadline
    expected = EXPECTED[cls].get((state, event))
    if expected is None:
        assert trigger(m, event, 2.0) == 0
        assert m.state == state
        assert m.deadline == before
        return
    actions, next_state = expected
    if actions == RAISES:
        with pytest.raises(LocalProtocolError):
            trigger(m, event, 2.0)
    else:
        got = trigger(m, event, 2.0)
        assert got == actions, f"{show(got)} != {show(actions)}"
    assert m.state == next_state
    if next_state == TERMINATED_STATE:
        assert m.deadline is None


def test_expected_tables_name_only_real_pairs():
    for cls, table in EXPECTED.items():
        assert set(table) <= set(cls.TRANSITIONS), cls.__name__
        for key in table:
            if table[key][0] != 0:
                assert cls.TRANSITIONS[key] is not None, (cls.__name__, key)


# -- reliable transports: D, I, J, K are zero; A, E, G never armed -----------------------------

def test_reliable_client_invite_final_terminates_at_once_with_the_ack():
    m = ClientInvite(T, True)
    assert m.start(0.0) == SEND
    assert m.deadline == 32.0  # Timer B only, no Timer A
    assert m.receive_response(486, 1.0) == DELIVER | SEND_ACK | TERMINATED
    assert m.state == TERMINATED_STATE and m.deadline is None


def test_reliable_client_non_invite_final_terminates_at_once():
    m = ClientNonInvite(T, True)
    m.start(0.0)
    assert m.deadline == 32.0  # Timer F only, no Timer E
    assert m.receive_response(200, 1.0) == DELIVER | TERMINATED
    assert m.state == TERMINATED_STATE


def test_reliable_server_invite_ack_terminates_at_once():
    m = ServerInvite(T, True)
    m.start(0.0)
    assert m.send_response(486, 1.0) == SEND
    assert m.deadline == 33.0  # Timer H only, no Timer G
    assert m.receive_ack(2.0) == TERMINATED
    assert m.state == TERMINATED_STATE and m.deadline is None


def test_reliable_server_non_invite_final_terminates_with_the_send():
    m = ServerNonInvite(T, True)
    m.start(0.0)
    assert m.send_response(200, 1.0) == SEND | TERMINATED
    assert m.state == TERMINATED_STATE and m.deadline is None


@pytest.mark.parametrize("reliable", [False, True], ids=["udp", "tcp"])
def test_accepted_timers_l_and_m_do_not_depend_on_the_transport(reliable):
    # RFC 6026: L and M are 64*T1 on every transport (forked 2xx, end-to-end retransmissions).
    c = ClientInvite(T, reliable)
    c.start(0.0)
    c.receive_response(200, 2.0)
    s = ServerInvite(T, reliable)
    s.start(0.0)
    s.send_response(200, 2.0)
    assert c.deadline == s.deadline == 34.0
    assert c.fire(34.0) == TERMINATED and s.fire(34.0) == TERMINATED


# -- exact deadlines with a fake clock ---------------------------------------------------------

def run_timers(m, until):
    """Fire m at each deadline up to ``until``; return [(time, actions)]."""
    out = []
    while m.deadline is not None and m.deadline <= until:
        now = m.deadline
        out.append((now, m.fire(now)))
    return out


def test_timer_a_doubles_without_cap_until_timer_b():
    # §17.1.1.2: A = T1, 2*T1, 4*T1 ... (INVITE requests have no T2 cap); B = 64*T1.
    m = ClientInvite(T, False)
    assert m.start(0.0) == SEND and m.deadline == 0.5
    fired = run_timers(m, 100.0)
    assert fired == [(0.5, SEND), (1.5, SEND), (3.5, SEND), (7.5, SEND), (15.5, SEND),
                     (31.5, SEND), (32.0, TIMEOUT | TERMINATED)]
    assert m.state == TERMINATED_STATE and m.deadline is None


def test_timer_b_on_tcp_and_fr_timer_override():
    m = ClientInvite(T, True)
    m.start(10.0)
    assert run_timers(m, 100.0) == [(42.0, TIMEOUT | TERMINATED)]
    m = ClientInvite(Timers(fr_timer=5.0), True)
    m.start(10.0)
    assert run_timers(m, 100.0) == [(15.0, TIMEOUT | TERMINATED)]


def test_timer_c_armed_on_first_provisional_reset_by_101_199_not_100():
    m = ClientInvite(T, False)
    m.start(0.0)
    assert m.receive_response(100, 0.2) == DELIVER
    assert m.has_provisional and m.state == PROCEEDING
    assert m.deadline == 180.2  # A and B stopped, C armed
    assert m.receive_response(180, 50.0) == DELIVER
    assert m.deadline == 230.0
    assert m.receive_response(100, 60.0) == DELIVER  # §16.7 step 2: not reset by 100
    assert m.deadline == 230.0
    assert m.fire(229.999) == 0
    assert m.fire(230.0) == CANCEL_BRANCH
    assert m.state == PROCEEDING and m.deadline == 262.0  # then at most Timer B more
    assert m.receive_response(183, 240.0) == DELIVER
    assert m.deadline == 262.0  # no longer reset: the branch is being cancelled
    assert m.fire(262.0) == TIMEOUT | TERMINATED


def test_timer_c_after_cancel_the_487_arrives():
    m = ClientInvite(Timers(fr_inv_timer=60.0), False)
    m.start(0.0)
    m.receive_response(180, 1.0)
    assert m.deadline == 61.0
    assert m.fire(61.0) == CANCEL_BRANCH
    assert m.receive_response(487, 61.3) == DELIVER | SEND_ACK
    assert m.state == COMPLETED and m.deadline == 93.3  # Timer D


def test_cancel_sent_replaces_timer_c_with_the_cancel_guard():
    m = ClientInvite(T, False)
    m.start(0.0)
    assert not m.has_provisional
    with pytest.raises(LocalProtocolError, match="provisional"):
        m.cancel_sent(0.1)
    m.receive_response(180, 1.0)
    assert m.cancel_sent(5.0) == 0
    assert m.deadline == 37.0
    assert m.cancel_sent(6.0) == 0  # idempotent
    assert m.deadline == 37.0
    assert m.receive_response(180, 7.0) == DELIVER and m.deadline == 37.0
    assert run_timers(m, 1000.0) == [(37.0, TIMEOUT | TERMINATED)]


@pytest.mark.parametrize(("reliable", "expected"), [
    (False, [(34.0, TERMINATED)]),  # Timer D = 32 s
    (True, []),                     # D = 0: terminated with the response
])
def test_timer_d(reliable, expected):
    m = ClientInvite(T, reliable)
    m.start(0.0)
    m.receive_response(180, 1.0)
    m.receive_response(500, 2.0)
    assert run_timers(m, 1000.0) == expected
    assert m.state == TERMINATED_STATE


def test_timer_d_is_configurable():
    m = ClientInvite(Timers(timer_d=40.0), False)
    m.start(0.0)
    m.receive_response(603, 1.0)
    assert m.deadline == 41.0


def test_timer_e_doubles_to_t2_in_trying_then_timer_f():
    m = ClientNonInvite(T, False)
    assert m.start(0.0) == SEND and m.deadline == 0.5
    fired = run_timers(m, 100.0)
    times = [t for t, _ in fired]
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5, 32.0]
    assert [a for _, a in fired] == [SEND] * 10 + [TIMEOUT | TERMINATED]


def test_timer_e_is_t2_in_proceeding():
    # §17.1.2.2: in Proceeding, E is reset to T2 each time it fires.
    m = ClientNonInvite(T, False)
    m.start(0.0)
    assert m.fire(0.5) == SEND and m.deadline == 1.5
    assert m.receive_response(100, 0.7) == DELIVER
    assert m.deadline == 1.5  # the running E is kept
    fired = run_timers(m, 15.0)
    assert fired == [(1.5, SEND), (5.5, SEND), (9.5, SEND), (13.5, SEND)]


@pytest.mark.parametrize(("reliable", "expected"), [
    (False, [(7.0, TERMINATED)]),  # Timer K = T4
    (True, []),
])
def test_timer_k(reliable, expected):
    m = ClientNonInvite(T, reliable)
    m.start(0.0)
    assert m.receive_response(404, 2.0) == DELIVER | (TERMINATED if reliable else 0)
    if not reliable:
        assert m.receive_response(404, 3.0) == 0  # retransmission absorbed
    assert run_timers(m, 1000.0) == expected


def test_timer_f_override():
    m = ClientNonInvite(Timers(fr_timer=4.0), True)
    m.start(1.0)
    assert run_timers(m, 100.0) == [(5.0, TIMEOUT | TERMINATED)]


def test_trying_timer_asks_for_a_100_once():
    m = ServerInvite(T, False)
    assert m.start(0.0) == 0
    assert m.receive_request(0.1) == 0  # no response yet: nothing to re-send
    assert m.deadline == 0.2
    assert m.fire(0.19) == 0
    assert m.fire(0.2) == SEND_TRYING
    assert m.last_status == 100 and m.deadline is None
    assert m.receive_request(0.6) == SEND  # the 100 is re-sent


def test_a_provisional_from_the_tu_disarms_the_trying_timer():
    m = ServerInvite(Timers(trying_delay=0.5), False)
    m.start(0.0)
    assert m.deadline == 0.5
    assert m.send_response(180, 0.1) == SEND
    assert m.deadline is None and m.last_status == 180
    assert m.fire(1.0) == 0
    assert m.receive_request(1.0) == SEND


def test_timer_g_doubles_capped_at_t2_then_timer_h():
    m = ServerInvite(T, False)
    m.start(0.0)
    m.send_response(180, 0.1)
    assert m.send_response(486, 1.0) == SEND
    fired = run_timers(m, 100.0)
    times = [t for t, _ in fired]
    # G: 1.5, 2.5 (+1), 4.5 (+2), 8.5 (+4), then every 4 s (T2) ... H at 1 + 32 = 33.
    assert times == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5, 33.0]
    assert [a for _, a in fired] == [SEND] * 10 + [TIMEOUT | TERMINATED]


@pytest.mark.parametrize(("reliable", "expected"), [
    (False, [(8.0, TERMINATED)]),  # Timer I = T4 after the ACK
    (True, []),
])
def test_timer_i(reliable, expected):
    m = ServerInvite(T, reliable)
    m.start(0.0)
    m.send_response(404, 1.0)
    assert m.receive_ack(3.0) == (TERMINATED if reliable else 0)
    if not reliable:
        assert m.state == CONFIRMED and m.deadline == 8.0
        assert m.receive_ack(4.0) == 0 and m.receive_request(4.0) == 0  # absorbed
    assert run_timers(m, 1000.0) == expected


def test_timer_l_and_every_2xx_sent():
    m = ServerInvite(T, False)
    m.start(0.0)
    assert m.send_response(200, 1.0) == SEND
    assert m.state == ACCEPTED and m.deadline == 33.0
    assert m.receive_request(1.5) == 0          # INVITE retransmission absorbed
    assert m.receive_ack(1.6) == 0              # ACK for a 2xx is routed, not absorbed here
    assert m.send_response(200, 2.0) == SEND    # RFC 6026: each 2xx is sent
    assert m.deadline == 33.0
    assert run_timers(m, 1000.0) == [(33.0, TERMINATED)]
    with pytest.raises(LocalProtocolError, match="terminated"):
        m.send_response(200, 40.0)              # the proxy forwards a late 2xx itself


def test_timer_m_and_every_2xx_delivered():
    m = ClientInvite(T, False)
    m.start(0.0)
    assert m.receive_response(200, 1.0) == DELIVER
    assert m.deadline == 33.0
    assert m.receive_response(200, 1.5) == DELIVER
    assert m.receive_response(486, 1.6) == 0  # a non-2xx after a 2xx is dropped
    assert run_timers(m, 1000.0) == [(33.0, TERMINATED)]


@pytest.mark.parametrize(("reliable", "expected"), [
    (False, [(33.0, TERMINATED)]),  # Timer J = 64*T1
    (True, []),
])
def test_timer_j(reliable, expected):
    m = ServerNonInvite(T, reliable)
    assert m.start(0.0) == 0 and m.deadline is None
    assert m.receive_request(0.5) == 0  # Trying: retransmission discarded
    m.send_response(200, 1.0)
    if not reliable:
        assert m.receive_request(2.0) == SEND
        assert m.send_response(500, 2.5) == 0  # §17.2.2: discarded in Completed
        assert m.last_status == 200
    assert run_timers(m, 1000.0) == expected


@pytest.mark.parametrize("t1", [0.1, 0.25, 0.5, 1.0])
def test_t1_propagates_into_every_machine(t1):
    timers = Timers(t1=t1, t2=max(4.0, t1))
    c = ClientInvite(timers, False)
    c.start(0.0)
    assert c.deadline == t1
    assert c.fire(t1) == SEND and c.deadline == 3 * t1
    assert run_timers(c, 1000.0)[-1] == (64 * t1, TIMEOUT | TERMINATED)
    n = ClientNonInvite(timers, False)
    n.start(0.0)
    assert n.deadline == t1
    assert run_timers(n, 1000.0)[-1] == (64 * t1, TIMEOUT | TERMINATED)
    s = ServerInvite(timers, False)
    s.start(0.0)
    s.send_response(486, 0.0)
    assert s.deadline == t1
    assert run_timers(s, 1000.0)[-1] == (64 * t1, TIMEOUT | TERMINATED)
    j = ServerNonInvite(timers, False)
    j.start(0.0)
    j.send_response(200, 0.0)
    assert j.deadline == 64 * t1
    for cls, respond in ((ClientInvite, "receive_response"), (ServerInvite, "send_response")):
        a = cls(timers, False)
        a.start(0.0)
        getattr(a, respond)(200, 0.0)
        assert a.deadline == 64 * t1  # Timers L and M


# -- fire(): early, late, several due at once --------------------------------------------------

def test_fire_early_does_nothing():
    m = ServerInvite(T, False)
    m.start(0.0)
    m.send_response(486, 1.0)
    assert m.fire(1.2) == 0
    assert m.deadline == 1.5 and m.state == COMPLETED


def test_fire_late_runs_g_then_h_in_deadline_order():
    m = ServerInvite(T, False)
    m.start(0.0)
    m.send_response(486, 1.0)
    # G (1.5) is due before H (33.0): it retransmits, then H times out. Were H run first,
    # the machine would be terminated and G would not send.
    assert m.fire(100.0) == SEND | TIMEOUT | TERMINATED
    assert m.state == TERMINATED_STATE and m.deadline is None


def test_fire_late_does_not_burst_retransmissions():
    m = ClientInvite(T, False)
    m.start(0.0)
    assert m.fire(10.0) == SEND  # A was due at 0.5: one retransmission, not five
    assert m.deadline == 11.0    # re-armed from when it really went out


def test_fire_late_trying_then_nothing_else():
    m = ServerInvite(T, True)
    m.start(0.0)
    assert m.fire(5.0) == SEND_TRYING
    assert m.deadline is None


def test_repr_names_state():
    assert "calling" in repr(ClientInvite(T, False))


def test_machines_have_slots():
    for cls in MACHINES:
        m = cls(T, False)
        with pytest.raises(AttributeError):
            m.some_new_attribute = 1
