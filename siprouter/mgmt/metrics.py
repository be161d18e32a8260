# SPDX-License-Identifier: Apache-2.0
"""``GET /metrics``: the server's statistics in the Prometheus text format, made with
prometheus_client from the same snapshot ``stats.get`` reads (``siprouter.mgmt.stats``).

Nothing is counted for Prometheus on the hot path: at each scrape the counters the core,
tm, dialog tracker, location service and dispatcher keep are read once and turned into
metric families:

- flat counters are ``siprouter_<group>_<name>_total``; gauges (active transactions and
  dialogs, registered contacts) keep their names;
- labelled: ``siprouter_core_rcv_requests_total{method,transport}``,
  ``siprouter_core_rcv_replies_total{class,transport}``,
  ``siprouter_tm_transactions_total{method}``, ``siprouter_tm_retransmissions_total{method}``,
  ``siprouter_tm_replies_total{method,class}`` (final responses sent upstream),
  ``siprouter_dispatcher_destination{setid,uri,state}`` and
  ``siprouter_dispatcher_destinations{state}``;
- the histogram ``siprouter_tm_final_response_seconds{method}``: request → final response
  of each server transaction.

A flat statistic that is the sum of a labelled one (``core:rcv_requests``) is left out:
Prometheus sums labels itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from siprouter.mgmt.stats import Snapshot

__all__ = ["CONTENT_TYPE", "render_metrics"]

#: What ``/metrics`` answers with (the Prometheus text exposition format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# group -> names that are gauges (values now), not counters (totals since start).
_GAUGES = {
    "tm": {"active_server", "active_client", "active_cancels"},
    "dialog": {"active", "early"},
    "usrloc": {"registered_users", "registered_contacts"},
}

# Flat statistics that are sums of a labelled one (``stats.get`` lists both; Prometheus
# sums labels itself, and one name cannot be both): left out of /metrics.
_SUMMED = {
    "core": re.compile(r"rcv_(requests|replies)(_.*)?"),
    "tm": re.compile(r"created(_.*)?|retransmissions|replied_.*"),
}

#: The request → final response histogram.
LATENCY_METRIC = "siprouter_tm_final_response_seconds"


class _Collector:
    """A one-off prometheus_client collector over a ``stats`` snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap

    def collect(self) -> Iterator[Metric]:
        snap = self.snap
        for group, values in snap.groups.items():
            gauges = _GAUGES.get(group, set())
            summed = _SUMMED.get(group)
            states = None
            for name, value in values.items():
                metric = f"siprouter_{group}_{name}"
                if group == "dispatcher" and name.startswith("destinations_"):
                    if states is None:
                        states = GaugeMetricFamily(
                            "siprouter_dispatcher_destinations",
                            "Dispatcher destinations by state", labels=["state"])
                    states.add_metric([name.removeprefix("destinations_")], value)
                elif summed is not None and summed.fullmatch(name):
                    continue
                elif name in gauges:
                    yield GaugeMetricFamily(metric, f"{group} {name}", value=value)
                else:
                    yield CounterMetricFamily(metric, f"{group} {name}", value=value)
            if states is not None:
                yield states
        for stat in snap.labelled:
            cls = CounterMetricFamily if stat.kind == "counter" else GaugeMetricFamily
            family = cls(f"siprouter_{stat.name}", stat.help, labels=list(stat.labels))
            for labels, value in sorted(stat.samples.items()):
                family.add_metric(list(labels), value)
            yield family
        hist = HistogramMetricFamily(
            LATENCY_METRIC, "Time from a request to the final response sent upstream, "
            "by method (server transactions)", labels=["method"])
        for method, (buckets, _count, total) in sorted(snap.latency.items()):
            hist.add_metric([method], [(floatToGoString(le), n) for le, n in buckets], total)
        yield hist


def render_metrics(snap: Snapshot) -> bytes:
    """The Prometheus text for a ``StatsCommands.snapshot()``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snap))  # type: ignore[arg-type]
    return generate_latest(registry)
