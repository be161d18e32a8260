"""Timer values (RFC 3261 Appendix A, RFC 6026): defaults, derivation, overrides, checks."""

from __future__ import annotations

import dataclasses
import math

import pytest

from siprouter.transaction.timers import DEFAULT_TIMERS, Timers


def test_defaults_are_the_rfc_values():
    t = Timers()
    assert (t.t1, t.t2, t.t4) == (0.5, 4.0, 5.0)
    assert t.timer_a == t.timer_e == t.timer_g == 0.5
    assert t.timer_b == t.timer_f == t.timer_h == t.timer_j == 32.0
    assert t.timer_l == t.timer_m == 32.0
    assert t.timer_c == 180.0  # §16.6 step 11: more than 3 minutes
    assert t.timer_d == 32.0
    assert t.timer_i == t.timer_k == 5.0
    assert t.trying_delay == 0.2
    assert DEFAULT_TIMERS == t


@pytest.mark.parametrize("t1", [0.05, 0.25, 1.0, 2.0])
def test_t1_propagates_into_every_derived_timer(t1):
    t = Timers(t1=t1, t2=max(4.0, t1))
    assert t.timer_a == t.timer_e == t.timer_g == t1
    for name in ("timer_b", "timer_f", "timer_h", "timer_j", "timer_l", "timer_m"):
        assert getattr(t, name) == 64 * t1, name


def test_t4_propagates_into_i_and_k():
    t = Timers(t4=2.5)
    assert t.timer_i == t.timer_k == 2.5


def test_fr_timer_overrides_b_and_f_only():
    t = Timers(fr_timer=10.0)
    assert t.timer_b == t.timer_f == 10.0
    assert t.timer_h == t.timer_j == t.timer_l == t.timer_m == 32.0


def test_fr_inv_timer_overrides_c():
    assert Timers(fr_inv_timer=120.0).timer_c == 120.0


def test_replace_recomputes_derived_values():
    t = dataclasses.replace(Timers(fr_timer=10.0), t1=1.0)
    assert t.timer_b == 10.0 and t.timer_h == 64.0
    t = dataclasses.replace(t, fr_timer=None)
    assert t.timer_b == 64.0


def test_frozen_hashable_and_compared_by_fields():
    t = Timers()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.t1 = 1.0  # type: ignore[misc]
    assert hash(t) == hash(Timers()) and t == Timers()
    assert t != Timers(t1=0.25)
    assert "t1=0.5" in repr(t) and "_t1_x64" not in repr(t)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"t1": 5.0}, r"t2 must be >= t1 \(got t1=5.0, t2=4.0\)"),
    ({"t1": 0}, "t1 must be a positive"),
    ({"t2": -1.0}, "t2 must be a positive"),
    ({"t4": math.nan}, "t4 must be a positive"),
    ({"fr_timer": 0.0}, "fr_timer must be a positive"),
    ({"fr_inv_timer": math.inf}, "fr_inv_timer must be a positive"),
    ({"timer_d": -32.0}, "timer_d must be a positive"),
    ({"trying_delay": 0}, "trying_delay must be a positive"),
    ({"t1": "0.5"}, "t1 must be a number"),
    ({"t2": True}, "t2 must be a number"),
])
def test_bad_values_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Timers(**kwargs)


def test_integers_are_accepted():
    assert Timers(t1=1, t2=4, t4=5).timer_b == 64
