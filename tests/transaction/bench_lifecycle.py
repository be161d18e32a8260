"""Cost of the transaction machines on a proxy's hot path (not a test: run it by hand).

    PYTHONPATH=. python3 tests/transaction/bench_lifecycle.py

Prints ns per lifecycle: one server and one client machine built, started, fed the
responses of a typical exchange and fired to termination -- what a stateful proxy does
per INVITE (180, 200) or per BYE (200). Best of several runs, as timeit advises.
"""

from __future__ import annotations

import time
import timeit

from siprouter.transaction import (
    ClientInvite,
    ClientNonInvite,
    ServerInvite,
    ServerNonInvite,
    Timers,
)

TIMERS = Timers()


def invite_180_200():
    s = ServerInvite(TIMERS, False)
    s.start(0.0)
    c = ClientInvite(TIMERS, False)
    c.start(0.0)
    c.receive_response(180, 0.1)
    s.send_response(180, 0.1)
    c.receive_response(200, 1.0)
    s.send_response(200, 1.0)
    c.fire(33.0)
    s.fire(33.0)


def invite_200():
    s = ServerInvite(TIMERS, False)
    s.start(0.0)
    c = ClientInvite(TIMERS, False)
    c.start(0.0)
    c.receive_response(200, 0.05)
    s.send_response(200, 0.05)


def invite_486_ack():
    s = ServerInvite(TIMERS, False)
    s.start(0.0)
    c = ClientInvite(TIMERS, False)
    c.start(0.0)
    c.receive_response(486, 0.1)
    s.send_response(486, 0.1)
    s.receive_ack(0.15)
    c.fire(40.0)
    s.fire(40.0)


def bye_200():
    s = ServerNonInvite(TIMERS, False)
    s.start(0.0)
    c = ClientNonInvite(TIMERS, False)
    c.start(0.0)
    c.receive_response(200, 0.05)
    s.send_response(200, 0.05)
    c.fire(6.0)
    s.fire(40.0)


def bye_200_tcp():
    s = ServerNonInvite(TIMERS, True)
    s.start(0.0)
    c = ClientNonInvite(TIMERS, True)
    c.start(0.0)
    c.receive_response(200, 0.05)
    s.send_response(200, 0.05)


def main() -> None:
    for fn in (invite_180_200, invite_200, invite_486_ack, bye_200, bye_200_tcp):
        n = 50_000
        best = min(timeit.repeat(fn, number=n, repeat=25, timer=time.process_time))
        print(f"{fn.__name__:16s} {best / n * 1e9:7.0f} ns per client+server lifecycle")


if __name__ == "__main__":
    main()
