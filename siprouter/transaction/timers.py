# SPDX-License-Identifier: Apache-2.0
"""Transaction timer values (RFC 3261 §17, table in Appendix A; RFC 6026 §8.11).

One immutable value object carries T1, T2, T4 and the two Kamailio-style overrides; the
lettered timers are derived from it. Machines take a ``Timers`` when they are built, so
a test (or an operator) changes one value and every derived timer follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Timers", "DEFAULT_TIMERS"]


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds (got {value!r})")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive finite number of seconds (got {value!r})")


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer values in seconds.

    :param t1: RTT estimate (§17.1.1.1, default 500 ms).
    :param t2: maximum retransmit interval for non-INVITE requests and INVITE responses
        (§17.1.2.2, §17.2.1; default 4 s).
    :param t4: maximum time a message stays in the network (default 5 s).
    :param fr_timer: final-response timeout, Kamailio's name: Timer B and Timer F.
        ``None`` means the RFC value 64*T1.
    :param fr_inv_timer: INVITE timeout once a provisional response was received,
        Kamailio's name: Timer C (§16.6 step 11 asks for more than 3 minutes).
    :param timer_d: wait time for response retransmissions in the INVITE client's
        Completed state on unreliable transports (§17.1.1.2: at least 32 s).
    :param trying_delay: an INVITE server transaction sends 100 (Trying) if the TU has not
        sent a response within this time (§17.2.1: 200 ms).
    :raises ValueError: a value is not a positive number, or T2 < T1.

    Reliable transports: Timers D, I, J and K are zero and A, E and G are not used; the
    machines apply that (they are told whether the transport is reliable).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    fr_timer: float | None = None
    fr_inv_timer: float = 180.0
    timer_d: float = 32.0
    trying_delay: float = 0.2
    # Precomputed for the machines' hot path (a property call costs more than the
    # multiplication): Timer B/F, and 64*T1 (Timers H, J, L, M).
    _timer_bf: float = field(init=False, repr=False, compare=False)
    _t1_x64: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("t1", "t2", "t4", "fr_inv_timer", "timer_d", "trying_delay"):
            _check_positive(name, getattr(self, name))
        if self.fr_timer is not None:
            _check_positive("fr_timer", self.fr_timer)
        if self.t2 < self.t1:
            raise ValueError(f"t2 must be >= t1 (got t1={self.t1!r}, t2={self.t2!r})")
        t1_x64 = 64 * self.t1
        object.__setattr__(self, "_t1_x64", t1_x64)
        object.__setattr__(self, "_timer_bf", self.fr_timer if self.fr_timer is not None else t1_x64)

    # -- derived timers (RFC 3261 Appendix A, RFC 6026 §8.11) ----------------------------

    @property
    def timer_a(self) -> float:
        """INVITE request retransmit interval, initially (§17.1.1.2): T1."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout (§17.1.1.2): ``fr_timer`` or 64*T1."""
        return self._timer_bf

    @property
    def timer_c(self) -> float:
        """Proxy INVITE transaction timeout (§16.6 step 11): ``fr_inv_timer``."""
        return self.fr_inv_timer

    @property
    def timer_e(self) -> float:
        """Non-INVITE request retransmit interval, initially (§17.1.2.2): T1."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout (§17.1.2.2): ``fr_timer`` or 64*T1."""
        return self._timer_bf

    @property
    def timer_g(self) -> float:
        """INVITE response retransmit interval, initially (§17.2.1): T1."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait time for ACK receipt (§17.2.1): 64*T1."""
        return self._t1_x64

    @property
    def timer_i(self) -> float:
        """Wait time for ACK retransmissions (§17.2.1): T4 (0 on reliable transports)."""
        return self.t4

    @property
    def timer_j(self) -> float:
        """Wait time for non-INVITE request retransmissions (§17.2.2): 64*T1 (0 reliable)."""
        return self._t1_x64

    @property
    def timer_k(self) -> float:
        """Wait time for non-INVITE response retransmissions (§17.1.2.2): T4 (0 reliable)."""
        return self.t4

    @property
    def timer_l(self) -> float:
        """INVITE server: wait time in Accepted for INVITE retransmissions (RFC 6026): 64*T1."""
        return self._t1_x64

    @property
    def timer_m(self) -> float:
        """INVITE client: wait time in Accepted for 2xx retransmissions and forked 2xx
        (RFC 6026): 64*T1."""
        return self._t1_x64


DEFAULT_TIMERS = Timers()
