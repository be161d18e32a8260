# SPDX-License-Identifier: Apache-2.0
"""``stats.get`` / ``stats.reset``: the server's statistics by group, as Kamailio's
``stats.get_statistics`` / ``stats.reset_statistics`` (``all``, ``core:``, ``tm:``,
``dialog:``, ``usrloc:``, ``dispatcher:``, or one ``group:name``).

Nothing is counted here: the counters live where the work is done (plain int
attributes on the hot path: ``ProxyCore.stats``, ``TransactionManager.stats``, the
dialog tracker, the location service, the dispatcher); this module reads them when
asked. Gauges (active transactions, dialogs, registered contacts) are read as they are
and never reset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from siprouter.mgmt.errors import RpcError
from siprouter.modules import rpc

__all__ = ["StatsCommands", "GROUPS", "Labelled", "Snapshot"]

#: The groups, in the order they are listed.
GROUPS = ("core", "tm", "dialog", "usrloc", "dispatcher")


@dataclass(slots=True)
class Labelled:
    """One statistic with labels: ``samples[(label values…)] = value``."""

    name: str
    help: str
    kind: str  # "counter" or "gauge"
    labels: tuple[str, ...]
    samples: dict[tuple[str, ...], float]


@dataclass(slots=True)
class Snapshot:
    """Everything ``/metrics`` shows: the flat groups ``stats.get`` lists, the labelled
    statistics, and the latency histograms (method -> cumulative buckets, count, sum)."""

    groups: dict[str, dict[str, int]]
    labelled: list[Labelled] = field(default_factory=list)
    latency: dict[str, tuple[list[tuple[float, int]], int, float]] = field(
        default_factory=dict)


class StatsCommands:
    """``stats.*`` of one running server (``siprouter.server.Server``)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def _counters(self) -> dict[str, Any]:
        """Group -> the object whose int attributes are resettable counters."""
        core = getattr(self.server, "core", None)
        tm = getattr(core, "tm", None)
        out: dict[str, Any] = {}
        if core is not None:
            out["core"] = core.stats
        if tm is not None:
            out["tm"] = tm.stats
        return out

    async def snapshot(self) -> Snapshot:
        """The groups with the labelled statistics and histograms beside them."""
        snap = Snapshot(await self.collect())
        core = getattr(self.server, "core", None)
        tm = getattr(core, "tm", None)
        if core is not None:
            st = core.stats
            snap.labelled += [
                Labelled("core_rcv_requests", "Requests received, by method and transport",
                         "counter", ("method", "transport"), dict(st.requests)),
                Labelled("core_rcv_replies", "Responses received, by class and transport",
                         "counter", ("class", "transport"), dict(st.replies)),
            ]
        if tm is not None:
            st = tm.stats
            snap.labelled += [
                Labelled("tm_transactions", "Server transactions created, by method",
                         "counter", ("method",), dict(st.transactions)),
                Labelled("tm_retransmissions", "Request retransmissions absorbed by "
                         "server transactions, by method", "counter", ("method",),
                         dict(st.retransmitted)),
                Labelled("tm_replies", "Final responses sent upstream (one per server "
                         "transaction), by method and class", "counter",
                         ("method", "class"), dict(st.finals)),
            ]
            snap.latency = st.latency.snapshot()
        dispatcher = getattr(self.server, "modules", {}).get("dispatcher")
        if dispatcher is not None:
            samples: dict[tuple[str, ...], float] = {}
            for setid, dset in dispatcher.sets.items():
                for d in dset:
                    samples[(str(setid), d.uri, d.state_name)] = 1
            snap.labelled.append(Labelled(
                "dispatcher_destination", "Each dispatcher destination (1) with its set "
                "and state", "gauge", ("setid", "uri", "state"), samples))
        return snap

    async def collect(self) -> dict[str, dict[str, int]]:
        """Every group's statistics now."""
        core = getattr(self.server, "core", None)
        tm = getattr(core, "tm", None)
        modules = getattr(self.server, "modules", {})
        groups: dict[str, dict[str, int]] = {}
        if core is not None:
            groups["core"] = core.stats.as_dict()
        if tm is not None:
            tm_stats = tm.stats.as_dict()
            tm_stats.update({f"active_{k}": v for k, v in tm.counts().items()})
            groups["tm"] = tm_stats
            if tm.dialogs is not None:
                groups["dialog"] = dict(tm.dialogs.stats)
        location = modules.get("location")
        if location is not None:
            counts = await location.stats()
            groups["usrloc"] = {"registered_users": counts.get("aors", 0),
                                "registered_contacts": counts.get("contacts", 0)}
        dispatcher = modules.get("dispatcher")
        if dispatcher is not None:
            ds = dict(dispatcher.stats)
            states = {"active": 0, "inactive": 0, "probing": 0}
            for dset in dispatcher.sets.values():
                for d in dset:
                    states["active" if d.usable else
                           "probing" if d.state & 2 else "inactive"] += 1
            ds.update({f"destinations_{k}": v for k, v in states.items()})
            groups["dispatcher"] = ds
        return groups

    @rpc("stats.get")
    async def get(self, name: str = "all") -> dict[str, int]:
        """Statistics as ``group:name`` → value: ``all``, a group (``tm`` or ``tm:``)
        or one statistic (``core:rcv_requests``). Groups: core, tm, dialog, usrloc,
        dispatcher (those the server runs)."""
        groups = await self.collect()
        flat = {f"{g}:{k}": v for g in GROUPS for k, v in groups.get(g, {}).items()}
        if name in ("all", ""):
            return flat
        group, colon, stat = name.partition(":")
        if group not in GROUPS:
            raise RpcError(f"unknown statistics group {group!r}; expected all or one of "
                           + ", ".join(GROUPS), code=-32602)
        if not stat:
            return {k: v for k, v in flat.items() if k.startswith(group + ":")}
        if name not in flat:
            raise RpcError(f"no statistic {name!r}", code=-32602)
        return {name: flat[name]}

    @rpc("stats.get_statistics")
    async def get_statistics(self, names: str | list[str] = "all") -> dict[str, int]:
        """Kamailio's name: ``all``, groups (``tm:``) or statistics, several at once (a
        list, or one string separated by spaces); a name without its group
        (``rcv_requests``) is looked for in every group."""
        out: dict[str, int] = {}
        flat: dict[str, int] | None = None
        for name in names.split() if isinstance(names, str) else names:
            if ":" in name or name in ("all", "") or name in GROUPS:
                out.update(await self.get(name))
                continue
            if flat is None:
                flat = await self.get("all")
            found = {k: v for k, v in flat.items() if k.partition(":")[2] == name}
            if not found:
                raise RpcError(f"no statistic {name!r}", code=-32602)
            out.update(found)
        return out

    @rpc("stats.reset_statistics")
    def reset_statistics(self, group: str = "all") -> dict[str, int]:
        """Kamailio's name for stats.reset."""
        return self.reset(group)

    @rpc("stats.reset")
    def reset(self, group: str = "all") -> dict[str, int]:
        """Set the counters of ``group`` (core, tm; ``all`` for both) back to 0; gauges
        (active transactions, dialogs, contacts) are not counters and stay. Returns how
        many counters were reset."""
        counters = self._counters()
        if group not in ("all", "") and group.rstrip(":") not in counters:
            raise RpcError(f"cannot reset group {group!r}; expected all, "
                           + ", ".join(counters), code=-32602)
        n = 0
        for name, obj in counters.items():
            if group in ("all", "") or group.rstrip(":") == name:
                n += obj.reset()
        return {"reset": n}
