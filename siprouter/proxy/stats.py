# SPDX-License-Identifier: Apache-2.0
"""The statistics the proxy keeps on its hot path (Kamailio's core and tm counters).

What is kept, and what it costs
-------------------------------
Every received message costs one dict increment keyed by a small tuple (method or status
class, and transport); every server transaction one increment when it is created and,
when it is answered, one increment and one bucket of the latency histogram. No locks (one
event loop), no label objects, nothing for Prometheus: ``siprouter.mgmt`` reads these
objects when asked (``stats.get``, ``/metrics``) and does the formatting then.

Labels are bounded: a method we do not know is counted as ``OTHER``, so a scanner that
sends ten thousand invented methods cannot grow a dict (or a Prometheus series) per method.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

__all__ = ["CoreStats", "TmStats", "LatencyHistogram", "KNOWN_METHODS", "OTHER_METHOD",
           "LATENCY_BUCKETS", "status_class"]

#: Methods counted by name (RFC 3261, 3262, 3265/6665, 3311, 3428, 3515, 3903, 6086);
#: anything else is ``OTHER_METHOD``.
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "INFO", "UPDATE", "PRACK",
    "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER",
})
OTHER_METHOD = "OTHER"

#: Upper bounds (seconds) of the request → final response histogram, as Prometheus's
#: ``le``: from a proxy's sub-millisecond local answer to a phone ringing for a minute.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)

_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "6xx")


def status_class(status: int) -> str:
    """``"2xx"`` for 200…299 (a status outside 100…699 is clamped to the nearest class)."""
    if 100 <= status < 700:
        return _CLASSES[status // 100 - 1]
    return _CLASSES[0] if status < 100 else _CLASSES[-1]


def _bump(counts: dict[Any, int], key: tuple[str, ...]) -> None:
    """``counts[key] += 1``; a key whose method (its first item) we do not know is
    counted as ``OTHER_METHOD``."""
    try:
        counts[key] += 1
    except KeyError:
        if key[0] not in KNOWN_METHODS:
            key = (OTHER_METHOD, *key[1:])
        counts[key] = counts.get(key, 0) + 1


class _Counters:
    """Int attributes (``__slots__``) and dicts of labelled counts, reset together;
    ``_other`` names attributes that are neither (kept and reset by the subclass)."""

    __slots__ = ()
    _labelled: tuple[str, ...] = ()
    _other: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> int:
        """Every counter back to 0; returns how many ints and labelled series there were."""
        n = 0
        for name in self.__slots__:
            if name in self._other:
                continue
            if name in self._labelled:
                value = getattr(self, name, None)
                n += len(value) if value else 0
                setattr(self, name, {})
            else:
                n += 1
                setattr(self, name, 0)
        return n

    def as_dict(self) -> dict[str, int]:
        """The int counters by name (labelled ones are read on their own)."""
        return {name: getattr(self, name) for name in self.__slots__
                if name not in self._labelled and name not in self._other}


class CoreStats(_Counters):
    """Counters of ``ProxyCore``: messages received, forwarded, answered, dropped.

    ``requests[(method, transport)]`` and ``replies[(class, transport)]`` count what was
    received; ``rcv_requests`` / ``rcv_replies`` are their sums.
    """

    __slots__ = ("requests", "replies", "fwd_requests", "fwd_replies", "sent_replies",
                 "drop_requests", "drop_replies", "bad_msgs", "script_errors")
    _labelled = ("requests", "replies")

    requests: dict[tuple[str, str], int]
    replies: dict[tuple[str, str], int]

    def count_request(self, method: str, transport: str) -> None:
        _bump(self.requests, (method, transport))

    def count_reply(self, status: int, transport: str) -> None:
        key = (status_class(status), transport)
        counts = self.replies
        counts[key] = counts.get(key, 0) + 1

    def as_dict(self) -> dict[str, int]:
        out = {"rcv_requests": sum(self.requests.values()),
               "rcv_replies": sum(self.replies.values())}
        out.update(super().as_dict())
        for name, value in _sum_by(self.requests, 0).items():
            out[f"rcv_requests_{name.lower()}"] = value
        for name, value in _sum_by(self.replies, 0).items():
            out[f"rcv_replies_{name}"] = value
        return out


class LatencyHistogram:
    """Request → final response times by method: bucket counts, sum and count, the
    parts of a Prometheus histogram (cumulated when read, not when observed)."""

    __slots__ = ("bounds", "by_method")

    def __init__(self, bounds: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        #: method -> [bucket counts (one per bound, then +Inf)…, sum]
        self.by_method: dict[str, list[float]] = {}

    def observe(self, method: str, seconds: float) -> None:
        row = self.by_method.get(method)
        if row is None:
            if method not in KNOWN_METHODS:
                method = OTHER_METHOD
            row = self.by_method.get(method)
            if row is None:
                row = self.by_method[method] = [0] * (len(self.bounds) + 2)
        row[bisect_left(self.bounds, seconds)] += 1
        row[-1] += seconds

    def reset(self) -> None:
        self.by_method = {}

    def snapshot(self) -> dict[str, tuple[list[tuple[float, int]], int, float]]:
        """method -> (cumulative ``(le, count)`` pairs ending with ``+Inf``, count, sum)."""
        out = {}
        for method, row in self.by_method.items():
            total = 0
            buckets = []
            for bound, n in zip((*self.bounds, float("inf")), row[:-1], strict=True):
                total += int(n)
                buckets.append((bound, total))
            out[method] = (buckets, total, row[-1])
        return out


class TmStats(_Counters):
    """tm counters (Kamailio ``tm`` statistics).

    ``transactions[method]`` counts server transactions created (``created`` is the sum),
    ``retransmitted[method]`` the request retransmissions they absorbed
    (``retransmissions``), ``finals[(method, class)]`` the final responses sent upstream,
    one per transaction (``replied_2xx`` … are sums by class); ``latency`` times them.
    """

    __slots__ = ("transactions", "retransmitted", "finals", "client_created", "absorbed_acks",
                 "relayed", "local_replies", "timeouts", "cancels", "transport_errors",
                 "originated", "latency")
    _labelled = ("transactions", "retransmitted", "finals")
    _other = ("latency",)

    transactions: dict[tuple[str], int]
    retransmitted: dict[tuple[str], int]
    finals: dict[tuple[str, str], int]
    latency: LatencyHistogram

    def reset(self) -> int:
        try:
            self.latency.reset()
        except AttributeError:
            self.latency = LatencyHistogram()
        return super().reset()

    def count_transaction(self, method: str) -> None:
        _bump(self.transactions, (method,))

    def count_retransmission(self, method: str) -> None:
        _bump(self.retransmitted, (method,))

    def count_final(self, method: str, status: int, seconds: float) -> None:
        _bump(self.finals, (method, status_class(status)))
        self.latency.observe(method, seconds)

    def as_dict(self) -> dict[str, int]:
        out = {"created": sum(self.transactions.values()),
               "retransmissions": sum(self.retransmitted.values())}
        out.update(super().as_dict())
        by_class = _sum_by(self.finals, 1)
        for cls in _CLASSES[1:]:
            out[f"replied_{cls}"] = by_class.get(cls, 0)
        for (method,), value in self.transactions.items():
            out[f"created_{method.lower()}"] = value
        for (method, cls), value in self.finals.items():
            out[f"replied_{cls}_{method.lower()}"] = value
        return out


def _sum_by(counts: dict[tuple[str, ...], int], index: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in counts.items():
        out[key[index]] = out.get(key[index], 0) + value
    return out
