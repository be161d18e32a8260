"""A client and a server transaction joined by a fake wire (seeded loss, duplication and
reordering, or a reliable in-order stream) complete every flow.

The harness plays both TUs the simplest way RFC 3261 allows: the UAC core ACKs every 2xx
(§13.2.2.4), the UAS core retransmits its 2xx until the ACK (§13.3.1.4) and answers a
CANCEL with 200 and the INVITE with 487 (§9.2). Messages are tokens, not SIP text: the
machines never see bytes. Time is simulated: each step jumps to the earliest pending
event (a packet arriving, a machine deadline, a TU action).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from siprouter.transaction.machines import (
    CANCEL_BRANCH,
    CONFIRMED,
    DELIVER,
    SEND,
    SEND_ACK,
    SEND_TRYING,
    TERMINATED,
    TIMEOUT,
    TRANSPORT_ERROR,
    TRYING,
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
)
from siprouter.transaction.timers import DEFAULT_TIMERS, Timers

MAX_STEPS = 20_000


@dataclass(frozen=True)
class Packet:
    kind: str               # "request", "response", "ack"
    method: str             # the transaction's method (CSeq method)
    status: int = 0
    for_2xx: bool = False   # an ACK for a 2xx: end to end, not part of the transaction


class Sim:
    """One UAC and one UAS joined by a fake wire."""

    def __init__(self, seed: int, *, reliable: bool, timers: Timers = DEFAULT_TIMERS,
                 loss: float = 0.25, dup: float = 0.15, max_delay: float = 0.8,
                 uas=None, fail_sends: bool = False, dead: bool = False):
        self.rng = random.Random(seed)
        self.reliable = reliable
        self.timers = timers
        self.loss = 0.0 if reliable else loss
        self.dup = 0.0 if reliable else dup
        self.max_delay = max_delay
        self.fail_sends = fail_sends
        self.dead = dead  # the peer is unreachable: every packet vanishes
        self.now = 0.0
        self.seq = itertools.count()
        self.packets: list = []    # (time, seq, side, packet)
        self.tu_actions: list = []  # (time, seq, callable)
        self.client: dict = {}     # method -> live client machine
        self.server: dict = {}     # method -> live server machine
        self.server_last: dict = {}  # method -> status of the UAS's last response
        self.uas = uas or (lambda sim, method: None)
        # What the TUs saw.
        self.server_requests = Counter()  # method -> requests passed to the UAS TU
        self.client_finals: list = []     # (method, status, time): finals the UAC TU saw
        self.client_provisionals: list = []
        self.arrived_2xx_live = 0         # 2xx responses that reached a live INVITE client
        self.server_timeouts: list = []
        self.server_states_seen: set = set()
        self.acked_2xx = False
        self.first_2xx_at: float | None = None
        self.steps = 0

    # -- wire ----------------------------------------------------------------------------

    def send(self, side: str, packet: Packet) -> None:
        if self.dead:
            return
        if self.reliable:
            # In order: a constant delay, ties broken by the sequence number.
            heapq.heappush(self.packets, (self.now + 0.01, next(self.seq), side, packet))
            return
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.rng.uniform(0.001, self.max_delay)
            heapq.heappush(self.packets, (self.now + delay, next(self.seq), side, packet))

    def later(self, delay: float, action) -> None:
        heapq.heappush(self.tu_actions, (self.now + delay, next(self.seq), action))

    # -- client side (UAC core) ----------------------------------------------------------

    def start_client(self, method: str) -> None:
        cls = ClientInvite if method == "INVITE" else ClientNonInvite
        m = self.client[method] = cls(self.timers, self.reliable)
        self.client_act(method, m, m.start(self.now), 0)

    def client_act(self, method: str, m, actions: int, status: int) -> None:
        if actions & SEND:
            if self.fail_sends:
                actions |= m.transport_error(self.now)
            else:
                self.send("server", Packet("request", method))
        if actions & SEND_ACK:
            self.send("server", Packet("ack", "INVITE"))
        if actions & DELIVER:
            if status < 200:
                self.client_provisionals.append((method, status, self.now))
            else:
                self.client_finals.append((method, status, self.now))
                if method == "INVITE" and status < 300:
                    self.send("server", Packet("ack", "INVITE", for_2xx=True))
        if actions & TIMEOUT:
            self.client_finals.append((method, 408, self.now))
        if actions & TRANSPORT_ERROR:
            self.client_finals.append((method, 503, self.now))
        if actions & CANCEL_BRANCH:
            m.cancel_sent(self.now)
            self.start_client("CANCEL")
        if actions & TERMINATED:
            del self.client[method]

    def client_receive(self, packet: Packet) -> None:
        m = self.client.get(packet.method)
        if m is None:
            if packet.method == "INVITE" and 200 <= packet.status < 300:
                # RFC 6026: a 2xx after the transaction is gone goes to the core, which ACKs.
                self.send("server", Packet("ack", "INVITE", for_2xx=True))
            return
        if packet.method == "INVITE" and 200 <= packet.status < 300:
            self.arrived_2xx_live += 1
        self.client_act(packet.method, m, m.receive_response(packet.status, self.now),
                        packet.status)

    # -- server side (UAS) ---------------------------------------------------------------

    def server_act(self, method: str, m, actions: int) -> None:
        if actions & SEND_TRYING:
            self.server_last[method] = 100
            self.send("client", Packet("response", method, 100))
        if actions & SEND:
            self.send("client", Packet("response", method, self.server_last[method]))
        if actions & TIMEOUT:
            self.server_timeouts.append(method)
        self.server_states_seen.add(m.state)
        if actions & TERMINATED:
            del self.server[method]

    def server_receive(self, packet: Packet) -> None:
        if packet.kind == "ack":
            if packet.for_2xx:
                self.acked_2xx = True
                return
            m = self.server.get("INVITE")
            if m is not None:
                self.server_act("INVITE", m, m.receive_ack(self.now))
            return
        method = packet.method
        m = self.server.get(method)
        if m is not None:
            self.server_act(method, m, m.receive_request(self.now))
            return
        # A new server transaction: its request goes to the TU. A retransmission that
        # lands here because a transaction ended too early is counted again: the test
        # asserts the TU saw each request once.
        self.server_requests[method] += 1
        cls = ServerInvite if method == "INVITE" else ServerNonInvite
        m = self.server[method] = cls(self.timers, self.reliable)
        self.server_act(method, m, m.start(self.now))
        self.uas(self, method)

    def respond(self, method: str, status: int) -> None:
        """The UAS TU hands a response to its server transaction."""
        m = self.server.get(method)
        if m is None:
            if method == "INVITE" and 200 <= status < 300:
                self.send("client", Packet("response", method, status))  # core, RFC 6026
            return
        if m.state not in (TRYING, "proceeding") and not (200 <= status < 300):
            return  # a final already went out (e.g. 487 after the 200 race)
        self.server_last[method] = status
        self.server_act(method, m, m.send_response(status, self.now))

    def send_2xx_until_acked(self, interval: float | None = None) -> None:
        """§13.3.1.4: the UAS core retransmits its 2xx, T1 doubling to T2, until the ACK
        arrives or 64*T1 passed."""
        t = self.timers
        if self.first_2xx_at is None:
            self.first_2xx_at = self.now
            interval = t.t1
        elif self.acked_2xx or self.now - self.first_2xx_at >= t.timer_h:
            return
        self.respond("INVITE", 200)
        nxt = min(2 * interval, t.t2)
        self.later(interval, lambda: self.send_2xx_until_acked(nxt))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        while self.steps < MAX_STEPS:
            self.steps += 1
            best, what = None, None
            for side, machines in (("client", self.client), ("server", self.server)):
                for method, m in machines.items():
                    if m.deadline is not None and (best is None or m.deadline < best):
                        best, what = m.deadline, ("timer", side, method)
            if self.packets and (best is None or self.packets[0][0] < best):
                best, what = self.packets[0][0], ("packet",)
            if self.tu_actions and (best is None or self.tu_actions[0][0] < best):
                best, what = self.tu_actions[0][0], ("tu",)
            if best is None:
                return
            assert best >= self.now, "time went backwards"
            self.now = best
            if what[0] == "timer":
                _, side, method = what
                machines = self.client if side == "client" else self.server
                m = machines[method]
                actions = m.fire(self.now)
                assert actions, "a machine's deadline passed with nothing to do"
                if side == "client":
                    self.client_act(method, m, actions, 0)
                else:
                    self.server_act(method, m, actions)
            elif what[0] == "packet":
                _, _, side, packet = heapq.heappop(self.packets)
                if side == "server":
                    self.server_receive(packet)
                else:
                    self.client_receive(packet)
            else:
                _, _, action = heapq.heappop(self.tu_actions)
                action()
        raise AssertionError(f"no end after {MAX_STEPS} steps")

    def invite_finals(self):
        return [status for method, status, _ in self.client_finals if method == "INVITE"]


# -- UAS behaviours ------------------------------------------------------------------------------

def uas_answers_2xx(sim: Sim, method: str) -> None:
    if method == "INVITE":
        ring = sim.rng.uniform(0.0, 0.4)
        sim.later(ring, lambda: sim.respond("INVITE", 180))
        sim.later(ring + sim.rng.uniform(0.0, 3.0), sim.send_2xx_until_acked)


def uas_busy(sim: Sim, method: str) -> None:
    if method == "INVITE":
        ring = sim.rng.uniform(0.0, 0.4)
        if sim.rng.random() < 0.5:
            sim.later(ring, lambda: sim.respond("INVITE", 180))
        sim.later(ring + sim.rng.uniform(0.0, 3.0), lambda: sim.respond("INVITE", 486))


def uas_never_answers_but_honours_cancel(sim: Sim, method: str) -> None:
    if method == "CANCEL":
        sim.respond("CANCEL", 200)
        sim.respond("INVITE", 487)


def uas_never_answers_anything(sim: Sim, method: str) -> None:
    return None


def uas_answers_non_invite(sim: Sim, method: str) -> None:
    delay = sim.rng.uniform(0.0, 5.0)
    if delay > 1.0:
        sim.later(0.05, lambda: sim.respond(method, 100))
    sim.later(delay, lambda: sim.respond(method, 200))


SEEDS = range(20)
TRANSPORTS = [pytest.param(False, id="udp-lossy"), pytest.param(True, id="tcp")]


# -- flows -----------------------------------------------------------------------------------

@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_invite_2xx(seed, reliable):
    sim = Sim(seed, reliable=reliable, uas=uas_answers_2xx)
    sim.start_client("INVITE")
    sim.run()
    assert sim.server_requests == Counter({"INVITE": 1})
    finals = sim.invite_finals()
    assert finals and all(s == 200 for s in finals), finals
    # Every 2xx that reached the live client transaction went up to the TU.
    assert len(finals) == sim.arrived_2xx_live
    assert sim.acked_2xx
    assert not sim.client and not sim.server


@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_invite_486_and_ack(seed, reliable):
    sim = Sim(seed, reliable=reliable, uas=uas_busy)
    sim.start_client("INVITE")
    sim.run()
    assert sim.server_requests == Counter({"INVITE": 1})
    assert sim.invite_finals() == [486]
    # The ACK got through: Confirmed, not Timer H.
    assert not sim.server_timeouts
    assert CONFIRMED in sim.server_states_seen or reliable
    assert not sim.client and not sim.server


@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_invite_no_answer_timer_c_cancel_487(seed, reliable):
    timers = Timers(fr_inv_timer=60.0)
    sim = Sim(seed, reliable=reliable, timers=timers, uas=uas_never_answers_but_honours_cancel)
    sim.start_client("INVITE")
    sim.run()
    assert sim.server_requests == Counter({"INVITE": 1, "CANCEL": 1})
    assert ("INVITE", 100) in [(m, s) for m, s, _ in sim.client_provisionals]  # SEND_TRYING
    assert sim.invite_finals() == [487]
    cancel_finals = [s for m, s, _ in sim.client_finals if m == "CANCEL"]
    assert cancel_finals == [200]
    assert not sim.client and not sim.server


@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS[:5])
def test_invite_no_answer_cancel_ignored_times_out(seed, reliable):
    timers = Timers(fr_inv_timer=60.0)
    sim = Sim(seed, reliable=reliable, timers=timers, uas=uas_never_answers_anything)
    sim.start_client("INVITE")
    sim.run()
    assert sim.server_requests["INVITE"] == 1
    (final,) = [(s, t) for m, s, t in sim.client_finals if m == "INVITE"]
    status, when = final
    assert status == 408
    # First provisional (the automatic 100) + Timer C + Timer B for the 487, exactly.
    first_provisional = sim.client_provisionals[0][2]
    assert when == first_provisional + 60.0 + 32.0
    assert not sim.client


@pytest.mark.parametrize("reliable", TRANSPORTS)
def test_invite_dead_network_times_out_at_timer_b(reliable):
    sim = Sim(0, reliable=reliable, dead=True, uas=uas_answers_2xx)
    sim.start_client("INVITE")
    sim.run()
    assert sim.server_requests == Counter()
    assert sim.client_finals == [("INVITE", 408, 32.0)]


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_transport_error_gives_one_503(method):
    sim = Sim(0, reliable=True, fail_sends=True)
    sim.start_client(method)
    sim.run()
    assert sim.client_finals == [(method, 503, 0.0)]
    assert not sim.client


@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_non_invite_200(seed, reliable):
    sim = Sim(seed, reliable=reliable, uas=uas_answers_non_invite)
    sim.start_client("OPTIONS")
    sim.run()
    assert sim.server_requests == Counter({"OPTIONS": 1})
    assert [(m, s) for m, s, _ in sim.client_finals] == [("OPTIONS", 200)]
    assert not sim.client and not sim.server


@pytest.mark.parametrize("reliable", TRANSPORTS)
@pytest.mark.parametrize("seed", SEEDS[:5])
def test_non_invite_timeout(seed, reliable):
    sim = Sim(seed, reliable=reliable, uas=uas_never_answers_anything)
    sim.start_client("OPTIONS")
    sim.run()
    assert sim.server_requests == Counter({"OPTIONS": 1})
    assert sim.client_finals == [("OPTIONS", 408, 32.0)]
    # The server transaction waits in Trying for its TU (which never answers).
    assert sim.server["OPTIONS"].state == TRYING


def test_the_wire_really_loses_duplicates_and_reorders():
    # The harness must do what the flows claim, or they would pass vacuously.
    sim = Sim(1, reliable=False)
    sent = [Packet("response", "INVITE", i) for i in range(200)]
    for p in sent:
        sim.send("client", p)
        sim.now += 0.01
    arrived = [p.status for *_, p in sorted(sim.packets)]
    assert len(set(arrived)) < 200                    # some lost
    assert len(arrived) > len(set(arrived))           # some duplicated
    assert arrived != sorted(arrived)                 # some reordered


def test_retransmissions_happen_on_the_lossy_wire():
    sim = Sim(3, reliable=False, uas=uas_busy)
    sent = []
    original = sim.send

    def counting_send(side, packet):
        sent.append((side, packet.kind))
        original(side, packet)

    sim.send = counting_send
    sim.start_client("INVITE")
    sim.run()
    assert sent.count(("client", "response")) > 2   # G retransmissions of the 486
    assert sim.invite_finals() == [486]
