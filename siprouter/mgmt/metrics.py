# SPDX-License-Identifier: Apache-2.0
"""``GET /metrics``: the server's statistics in the Prometheus text format, made with
prometheus_client from the same snapshot ``stats.get`` reads (``siprouter.mgmt.stats``).

Nothing is counted for Prometheus on the hot path: at each scrape the counters the core,
tm, dialog tracker, location service and dispatcher keep are read once and turned into
metric families. Counters are ``siprouter_<group>_<name>_total``; the tm replies by
class are one family with a ``class`` label, the dispatcher's destinations one with a
``state`` label; gauges (active transactions and dialogs, registered contacts) keep
their names.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["CONTENT_TYPE", "render_metrics"]

#: What ``/metrics`` answers with (the Prometheus text exposition format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# group -> names that are gauges (values now), not counters (totals since start).
_GAUGES = {
    "tm": {"active_server", "active_client", "active_cancels"},
    "dialog": {"active", "early"},
    "usrloc": {"registered_users", "registered_contacts"},
}


class _Snapshot:
    """A one-off prometheus_client collector over a ``stats`` snapshot."""

    def __init__(self, groups: dict[str, dict[str, int]]) -> None:
        self.groups = groups

    def collect(self) -> Iterator[Metric]:
        for group, values in self.groups.items():
            gauges = _GAUGES.get(group, set())
            replied = None
            states = None
            for name, value in values.items():
                metric = f"siprouter_{group}_{name}"
                if group == "tm" and name.startswith("replied_"):
                    if replied is None:
                        replied = CounterMetricFamily(
                            "siprouter_tm_replies", "Final responses sent upstream, by class",
                            labels=["class"])
                    replied.add_metric([name.removeprefix("replied_")], value)
                elif group == "dispatcher" and name.startswith("destinations_"):
                    if states is None:
                        states = GaugeMetricFamily(
                            "siprouter_dispatcher_destinations",
                            "Dispatcher destinations by state", labels=["state"])
                    states.add_metric([name.removeprefix("destinations_")], value)
                elif name in gauges:
                    yield GaugeMetricFamily(metric, f"{group} {name}", value=value)
                else:
                    yield CounterMetricFamily(metric, f"{group} {name}", value=value)
            if replied is not None:
                yield replied
            if states is not None:
                yield states


def render_metrics(groups: dict[str, dict[str, int]]) -> bytes:
    """The Prometheus text for a ``StatsCommands.collect()`` snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(groups))  # type: ignore[arg-type]
    return generate_latest(registry)

