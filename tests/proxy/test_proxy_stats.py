# SPDX-License-Identifier: Apache-2.0
"""The hot-path counters: labels, bounds on labels, sums, reset, the latency histogram."""

from __future__ import annotations

from siprouter.proxy.stats import (
    LATENCY_BUCKETS,
    OTHER_METHOD,
    CoreStats,
    LatencyHistogram,
    TmStats,
    status_class,
)


def test_requests_by_method_and_transport_and_their_sums() -> None:
    st = CoreStats()
    for method, proto in [("INVITE", "udp"), ("INVITE", "udp"), ("INVITE", "tcp"), ("BYE", "udp")]:
        st.count_request(method, proto)
    for status, proto in [(100, "udp"), (180, "udp"), (200, "udp"), (486, "tcp")]:
        st.count_reply(status, proto)
    assert st.requests == {("INVITE", "udp"): 2, ("INVITE", "tcp"): 1, ("BYE", "udp"): 1}
    assert st.replies == {("1xx", "udp"): 2, ("2xx", "udp"): 1, ("4xx", "tcp"): 1}
    d = st.as_dict()
    assert d["rcv_requests"] == 4 and d["rcv_requests_invite"] == 3 and d["rcv_requests_bye"] == 1
    assert d["rcv_replies"] == 4 and d["rcv_replies_1xx"] == 2 and d["rcv_replies_4xx"] == 1


def test_invented_methods_share_one_label() -> None:
    """A scanner's invented methods cannot grow one series each."""
    st = CoreStats()
    for i in range(1000):
        st.count_request(f"X{i}", "udp")
    st.count_request("X1", "udp")
    assert st.requests == {(OTHER_METHOD, "udp"): 1001}
    tm = TmStats()
    for i in range(100):
        tm.count_transaction(f"FOO{i}")
        tm.count_final(f"FOO{i}", 200, 0.01)
    assert tm.transactions == {(OTHER_METHOD,): 100}
    assert tm.finals == {(OTHER_METHOD, "2xx"): 100}
    assert list(tm.latency.by_method) == [OTHER_METHOD]


def test_tm_finals_by_method_and_class() -> None:
    tm = TmStats()
    tm.count_transaction("INVITE")
    tm.count_transaction("BYE")
    tm.count_retransmission("INVITE")
    tm.count_final("INVITE", 200, 2.0)
    tm.count_final("BYE", 200, 0.003)
    tm.count_final("INVITE", 487, 0.5)
    d = tm.as_dict()
    assert d["created"] == 2 and d["created_invite"] == 1 and d["retransmissions"] == 1
    assert d["replied_2xx"] == 2 and d["replied_4xx"] == 1 and d["replied_6xx"] == 0
    assert d["replied_2xx_invite"] == 1 and d["replied_2xx_bye"] == 1
    assert d["replied_4xx_invite"] == 1
    assert "latency" not in d


def test_status_class_clamps() -> None:
    assert [status_class(s) for s in (100, 199, 200, 699, 99, 700)] == [
        "1xx", "1xx", "2xx", "6xx", "1xx", "6xx"]
    st = CoreStats()
    st.count_reply(999, "udp")  # parse_message refuses these; the counter must not
    assert st.replies == {("6xx", "udp"): 1}


def test_histogram_is_cumulative_with_inf_and_sum() -> None:
    h = LatencyHistogram((0.01, 0.1, 1.0))
    for v in (0.005, 0.01, 0.05, 0.5, 3.0):
        h.observe("INVITE", v)
    buckets, count, total = h.snapshot()["INVITE"]
    # le is inclusive: 0.01 falls in the 0.01 bucket.
    assert buckets == [(0.01, 2), (0.1, 3), (1.0, 4), (float("inf"), 5)]
    assert count == 5 and abs(total - 3.565) < 1e-9


def test_default_buckets_are_increasing() -> None:
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))


def test_reset_clears_everything_and_counts_what_it_cleared() -> None:
    st = CoreStats()
    st.count_request("INVITE", "udp")
    st.count_request("BYE", "tcp")
    st.fwd_requests = 5
    n = st.reset()
    assert n == 7 + 2  # seven int counters and two labelled series
    assert st.requests == {} and st.fwd_requests == 0 and st.as_dict()["rcv_requests"] == 0
    tm = TmStats()
    tm.count_final("INVITE", 200, 1.0)
    tm.reset()
    assert tm.finals == {} and tm.latency.snapshot() == {}
