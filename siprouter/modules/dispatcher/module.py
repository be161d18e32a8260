# SPDX-License-Identifier: Apache-2.0
"""The dispatcher module the routing script sees as ``ctx.dispatcher``: the load balancer
of the overview's "Dispatcher Module", on the pure sets and algorithms of this package.

How this works
--------------
The module holds the current sets (``setid -> DestinationSet``), loaded from a list file
or from a table through ``storage``. A reload builds new sets aside and swaps them in one
assignment; a bad list leaves the old sets in place.

``ds_select_dst(req, set, alg)`` runs the algorithm (a :class:`Selection`: the chosen
destination first, the failover candidates after it) and points the request at the
first candidate: its next hop (``req.destination``, Kamailio's ``$du``) or, for
``ds_select_domain``, the host and port of its Request-URI. What Kamailio keeps in AVPs
(``dst_avp``, ``grp_avp``, ``cnt_avp``) is kept here per request, in a weak dictionary
keyed by the request the transaction holds: ``on_failure`` receives that very request,
so ``ds_next_dst(req)`` there moves on to the next candidate, and ``ds_mark_dst(req)``
marks the one last used. :meth:`Dispatcher.selected` reads those values. A call in
progress keeps its own Selection, so a reload never changes what it fails over to.

State changes (``ds_mark_dst``, ``ds.set_state``, probes) are logged at INFO and
counted in :attr:`Dispatcher.stats`.

Health probing: every ``ds_ping_interval`` seconds the destinations in probing state
(``ds_probing_mode`` 0) or all of them (1) get a ``ds_ping_method`` request from
``ds_ping_from``. Sending it is the server's part: :meth:`Dispatcher.start` takes a
``pinger`` coroutine function giving the final status (408 when none came);
:meth:`Dispatcher.probe_result` applies it (200 or ``options_reply_codes``: active;
``ds_probing_threshhold`` failures in a row: active -> probing).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import ipaddress
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from siprouter.modules import RpcError, rpc
from siprouter.proxy.dialogs import DialogState
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.uri import SipUri, parse_uri, uri_equal
from siprouter.storage.base import StorageError

from .algorithms import (
    ALG_CALL_LOAD,
    FLAG_FAILOVER,
    FLAG_HASH_USER_ONLY,
    HashKey,
    Selection,
    Selector,
)
from .destinations import (
    INACTIVE,
    PROBING,
    STATE_MASK,
    Destination,
    DestinationSet,
    DispatcherListError,
    load_list_file,
    parse_state,
    sets_from_rows,
)

__all__ = ["Dispatcher", "Selected", "Pinger", "PARAM_ALIASES"]

log = logging.getLogger("siprouter.dispatcher")

#: Kamailio's current parameter names -> the overview's (OpenSIPS's older) names.
PARAM_ALIASES: dict[str, str] = {
    "ds_probing_threshold": "ds_probing_threshhold",
    "ds_ping_reply_codes": "options_reply_codes",
    "setid_pvname": "setid_pvar",
    "hash_pvname": "hash_pvar",
}

# Parameters accepted for configuration compatibility that mean nothing here: the AVPs
# are values read with Dispatcher.selected(); db_url is opened by the server, which
# passes the storage.
_IGNORED_PARAMS = frozenset({"dst_avp", "grp_avp", "cnt_avp", "db_url"})

#: Sends one probe and gives its final status: ``pinger(method, destination_uri,
#: from_uri)`` -> 200, 404 … or 408 when no final response came in time. The server
#: provides it (a UAC transaction of the proxy); tests pass a plain function.
Pinger = Callable[[str, str, str], Awaitable[int]]

_STATE_NAMES = {0: "active", INACTIVE: "inactive", PROBING: "probing",
                INACTIVE | PROBING: "inactive,probing"}


_DIALOG_TERMINATED = DialogState.TERMINATED


class Selected(NamedTuple):
    """What Kamailio keeps in the dispatcher AVPs for one request: the set id
    (``grp_avp``), the destination in use (``dst_avp``'s first value), the URIs of the
    candidates not tried yet, and how many candidates there were (``cnt_avp``)."""

    setid: int
    destination: str | None
    remaining: tuple[str, ...]
    count: int


def _root(req: Any) -> Any:
    """The request the dispatcher's values are kept on: the transaction's request when
    there is a transaction (on_branch works on a copy), else the request itself."""
    txn = getattr(req, "transaction", None)
    return req if txn is None else txn.request


def _int_param(name: str, value: Any, allowed: Iterable[int] | None = None,
               minimum: int | None = None) -> int:
    if isinstance(value, bool):
        value = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise LocalProtocolError(f"dispatcher {name}: expected an integer, got {value!r}")
    if allowed is not None and value not in allowed:
        raise LocalProtocolError(f"dispatcher {name}: expected one of "
                                 f"{', '.join(map(str, allowed))}, got {value}")
    if minimum is not None and value < minimum:
        raise LocalProtocolError(f"dispatcher {name}: expected an integer >= {minimum}, "
                                 f"got {value}")
    return value


def _reply_codes(value: Any) -> frozenset[int]:
    if value is None or value == "":
        return frozenset()
    items: Iterable[Any]
    if isinstance(value, str):
        items = [v for v in value.replace(";", ",").split(",") if v.strip()]
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        items = value
    codes = set()
    for item in items:
        code = item.strip() if isinstance(item, str) else item
        if isinstance(code, str) and code.isdigit():
            code = int(code)
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 699:
            raise LocalProtocolError(f"dispatcher options_reply_codes: expected status codes "
                                     f"100-699 (\"501, 403\" or a list), got {item!r}")
        codes.add(code)
    return frozenset(codes)


def _ip_key(host: str) -> str:
    """An IP address in one spelling (IPv6 compressed, lower case, no brackets)."""
    if host[:1] == "[":
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host).compressed
        except ValueError:
            return host.lower()
    return host


class Dispatcher:
    """The dispatcher module (``ctx.dispatcher``): destination sets and the script
    functions over them. Parameters carry the overview's names and defaults.

    :param list_file: the destination list file (see ``destinations``); or
    :param storage: an opened :class:`~siprouter.storage.Storage` holding the table
        ``table_name`` with the columns ``setid_col``, ``destination_col``,
        ``flags_col``, ``priority_col``, ``attrs_col`` (not both; neither: no sets).
    :param force_dst: 1: ``ds_select_dst`` overwrites a destination already set; 0: it
        fails (returns False) when ``req.destination`` is set.
    :param flags: 1 hash over the username only; 2 failover (``ds_next_dst``).
    :param use_default: the last destination of a set is only the last resort.
    :param hash_pvar: algorithm 7's key: a template (``"{from_user}{header:X-Key}"``,
        see ``compile_hash_template``) or a callable taking the request.
    :param setid_pvar: where ``ds_is_from_list()`` stores the set id: kept as a name
        for configuration compatibility; the value is read with :meth:`matched_setid`.
    :param ds_ping_method, ds_ping_from, ds_ping_interval, ds_probing_threshhold,
        ds_probing_mode, options_reply_codes: health probing (see the module docstring;
        ``ds_probing_mode`` 1 also makes ``ds_mark_dst()`` mark probing).
    :param ds_probing_threshold, ds_ping_reply_codes: Kamailio's names, as aliases.
    :param active_calls: algorithm 10's counts (see ``Selector``).
    :param rng: algorithm 6's random source.
    :raises LocalProtocolError: a parameter out of range, naming it and what is expected.
    """

    def __init__(self, *, list_file: str | Path | None = None, storage: Any = None,
                 table_name: str = "dispatcher", setid_col: str = "setid",
                 destination_col: str = "destination", flags_col: str = "flags",
                 priority_col: str = "priority", attrs_col: str = "attrs",
                 force_dst: int = 0, flags: int = 0, use_default: int = 0,
                 hash_pvar: str | HashKey | None = None, setid_pvar: str | None = None,
                 ds_ping_method: str = "OPTIONS",
                 ds_ping_from: str = "sip:dispatcher@localhost",
                 ds_ping_interval: int = 10, ds_probing_threshhold: int = 3,
                 ds_probing_mode: int = 0, options_reply_codes: Any = None,
                 ds_probing_threshold: int | None = None, ds_ping_reply_codes: Any = None,
                 active_calls: Callable[[Destination], int] | Mapping[str, int] | None = None,
                 rng: random.Random | None = None) -> None:
        if list_file is not None and storage is not None:
            raise LocalProtocolError("dispatcher: expected list_file or a database "
                                     "(db_url), not both")
        self.list_file = None if list_file is None else Path(list_file)
        self.storage = storage
        for name, value in (("table_name", table_name), ("setid_col", setid_col),
                            ("destination_col", destination_col), ("flags_col", flags_col),
                            ("priority_col", priority_col), ("attrs_col", attrs_col)):
            if not isinstance(value, str) or not value.replace("_", "a").isalnum():
                raise LocalProtocolError(f"dispatcher {name}: expected a table or column "
                                         f"name, got {value!r}")
        self.table_name = table_name
        self.columns = {"setid_col": setid_col, "destination_col": destination_col,
                        "flags_col": flags_col, "priority_col": priority_col,
                        "attrs_col": attrs_col}
        self.force_dst = bool(_int_param("force_dst", force_dst, (0, 1)))
        self.flags = _int_param("flags", flags, range(4))
        self.use_default = bool(_int_param("use_default", use_default, (0, 1)))
        if hash_pvar is not None and not isinstance(hash_pvar, str) and not callable(hash_pvar):
            raise LocalProtocolError(f"dispatcher hash_pvar: expected a template string or "
                                     f"a callable, got {hash_pvar!r}")
        if isinstance(hash_pvar, str) and "{" not in hash_pvar:
            # Kamailio's "$avp(i:273)" here would hash every request alike.
            raise LocalProtocolError(f"dispatcher hash_pvar: expected a template with "
                                     f"{{fields}} such as \"{{from_user}}\" or a callable, "
                                     f"got {hash_pvar!r}")
        self.hash_pvar = hash_pvar
        if setid_pvar is not None and not isinstance(setid_pvar, str):
            raise LocalProtocolError(f"dispatcher setid_pvar: expected a name, got {setid_pvar!r}")
        self.setid_pvar = setid_pvar
        if not isinstance(ds_ping_method, str) or not ds_ping_method.isalpha():
            raise LocalProtocolError(f"dispatcher ds_ping_method: expected a SIP method "
                                     f"(OPTIONS), got {ds_ping_method!r}")
        self.ds_ping_method = ds_ping_method.upper()
        if not isinstance(ds_ping_from, str):
            raise LocalProtocolError(f"dispatcher ds_ping_from: expected a SIP URI, "
                                     f"got {ds_ping_from!r}")
        if ds_ping_from:
            try:
                ok = isinstance(parse_uri(ds_ping_from), SipUri)
            except SipParseError:
                ok = False
            if not ok:
                raise LocalProtocolError(f"dispatcher ds_ping_from: expected a SIP URI, "
                                         f"got {ds_ping_from!r}")
        self.ds_ping_from = ds_ping_from
        if isinstance(ds_ping_interval, bool) or not isinstance(ds_ping_interval, int | float) \
                or not ds_ping_interval >= 0:
            raise LocalProtocolError(f"dispatcher ds_ping_interval: expected seconds >= 0 "
                                     f"(0: no probing), got {ds_ping_interval!r}")
        self.ds_ping_interval = ds_ping_interval
        if ds_probing_threshold is not None:
            ds_probing_threshhold = ds_probing_threshold
        self.ds_probing_threshhold = _int_param("ds_probing_threshhold",
                                                ds_probing_threshhold, minimum=1)
        self.ds_probing_mode = _int_param("ds_probing_mode", ds_probing_mode, (0, 1))
        if ds_ping_reply_codes is not None:
            options_reply_codes = ds_ping_reply_codes
        self.options_reply_codes = _reply_codes(options_reply_codes)
        # Algorithm 10's calls per destination (duid, else URI) and which destination each
        # call (Call-ID) holds: Kamailio's ds_load_update / ds_load_unset. Kept here unless
        # the caller gives its own counts.
        self.call_load: dict[str, int] = {}
        self._load_of_call: dict[str, str] = {}
        self._own_load = active_calls is None
        self.selector = Selector(flags=self.flags & FLAG_HASH_USER_ONLY,
                                 use_default=self.use_default, hash_key=hash_pvar,
                                 active_calls=self.call_load if active_calls is None
                                 else active_calls, rng=rng)
        self._sets: dict[int, DestinationSet] = {}
        self._loaded = False
        # Source IP -> [(setid, port or None, transport or None)] for ds_is_from_list.
        self._by_ip: dict[str, list[tuple[int, int | None, str | None]]] = {}
        # Per request (the transaction's): its Selection, and the set id ds_is_from_list
        # matched. Weak: they go with the request.
        self._selections: weakref.WeakKeyDictionary[Any, Selection] = weakref.WeakKeyDictionary()
        self._matched: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        #: Counters: selections, failovers, state changes, reloads.
        self.stats: dict[str, int] = {
            "selected": 0, "select_failed": 0, "next": 0, "exhausted": 0, "marked": 0,
            "state_changes": 0, "reloads": 0, "reload_failures": 0, "probes": 0,
            "probe_failures": 0,
        }
        self._pinger: Pinger | None = None
        self._probing: asyncio.Task[None] | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], storage: Any = None,
                    **extra: Any) -> Dispatcher:
        """Build from a mapping of module parameters (the overview's names or Kamailio's:
        ``ds_probing_threshold``, ``ds_ping_reply_codes``, ``setid_pvname``,
        ``hash_pvname``), e.g. ``dataclasses.asdict(config.dispatcher)``.
        ``dst_avp`` / ``grp_avp`` / ``cnt_avp`` / ``db_url`` are accepted and ignored
        (the server opens ``db_url`` and passes ``storage``).

        :raises LocalProtocolError: an unknown parameter (with the closest names) or a
            bad value.
        """
        known = {"list_file", "table_name", "setid_col", "destination_col", "flags_col",
                 "priority_col", "attrs_col", "force_dst", "flags", "use_default",
                 "hash_pvar", "setid_pvar", "ds_ping_method", "ds_ping_from",
                 "ds_ping_interval", "ds_probing_threshhold", "ds_probing_mode",
                 "options_reply_codes"}
        kwargs: dict[str, Any] = {}
        for key, value in params.items():
            name = PARAM_ALIASES.get(key, key)
            if name in _IGNORED_PARAMS:
                continue
            if name not in known:
                close = difflib.get_close_matches(key, sorted(known | set(PARAM_ALIASES)), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise LocalProtocolError(f"dispatcher: unknown parameter {key!r}{hint}")
            if name in kwargs:
                raise LocalProtocolError(f"dispatcher: parameter {name!r} given twice "
                                         f"(as {key!r} too)")
            kwargs[name] = value
        return cls(storage=storage, **kwargs, **extra)

    # -- loading ---------------------------------------------------------------------------

    @property
    def sets(self) -> dict[int, DestinationSet]:
        """The current sets by set id (replaced as a whole by a reload: do not edit)."""
        return self._sets

    async def _read(self) -> dict[int, DestinationSet]:
        if self.list_file is not None:
            return load_list_file(self.list_file)
        if self.storage is not None:
            try:
                rows = await self.storage.select(self.table_name)
            except StorageError as exc:
                raise DispatcherListError([f"table {self.table_name}: expected a readable "
                                           f"table, {exc}"]) from None
            return sets_from_rows(rows, table_name=self.table_name, **self.columns)
        return {}

    def _install(self, sets: dict[int, DestinationSet]) -> None:
        by_ip: dict[str, list[tuple[int, int | None, str | None]]] = {}
        for setid in sorted(sets):
            for d in sets[setid]:
                u = d.sip_uri
                t = u.params.get("transport")
                by_ip.setdefault(_ip_key(u.host), []).append(
                    (setid, u.port or None, t.lower() if t else None))
        # One assignment each: a selection running now sees the old or the new sets.
        self._sets = sets
        self._by_ip = by_ip

    async def load(self) -> None:
        """Load the sets (list file or table).

        :raises DispatcherListError: every problem (``file:line: expected …``); the
            sets loaded before are kept.
        """
        self._install(await self._read())
        self._loaded = True

    async def start(self, pinger: Pinger | None = None) -> None:
        """Load the sets unless ``load`` already did (the server loads them before it
        listens, to refuse a bad list at start) and, given a ``pinger`` and a
        ``ds_ping_interval`` above 0, probe every ``ds_ping_interval`` seconds."""
        if not self._loaded:
            await self.load()
        self._pinger = pinger
        if pinger is not None and self.ds_ping_interval > 0 and self._probing is None:
            self._probing = asyncio.get_running_loop().create_task(
                self._probe_loop(pinger), name="dispatcher probing")

    async def stop(self) -> None:
        """Stop probing."""
        task, self._probing = self._probing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reload(self) -> dict[str, int]:
        """Read the list again and swap it in atomically; calls in progress keep their
        selections. Destinations take the state their list entry gives.

        :returns: ``{"sets": …, "destinations": …}`` of the new list.
        :raises DispatcherListError: the new list is bad; the old sets stay in use.
        """
        try:
            sets = await self._read()
        except DispatcherListError as exc:
            self.stats["reload_failures"] += 1
            log.error("dispatcher: reload rejected, keeping the old sets:\n%s", exc)
            raise
        self._install(sets)
        self.stats["reloads"] += 1
        summary = {"sets": len(sets), "destinations": sum(len(s) for s in sets.values())}
        log.info("dispatcher: reloaded %(sets)d sets, %(destinations)d destinations", summary)
        return summary

    # -- script functions -----------------------------------------------------------------

    def _selection(self, req: Any) -> Selection | None:
        return self._selections.get(_root(req))

    def _select(self, req: Any, setid: int, alg: int, limit: int | None,
                domain: bool) -> bool:
        dset = self._sets.get(setid)
        if dset is None:
            self.stats["select_failed"] += 1
            return False
        sel = self.selector.select(dset, alg, req)
        if limit is not None and limit > 0 and len(sel.candidates) > limit:
            sel.candidates = sel.candidates[:limit]
        if not sel.candidates:
            self.stats["select_failed"] += 1
            return False
        first = sel.candidates[0]
        if domain:
            if not self._rewrite_ruri(req, first):
                self.stats["select_failed"] += 1
                return False
        else:
            req.set_destination(first.uri)
        if sel.parallel:
            for d in sel.candidates[1:]:
                if domain:
                    uri = req.uri.replace(host=d.sip_uri.host, port=d.sip_uri.port)
                    req.append_branch(str(uri))
                else:
                    req.append_branch(req.ruri, destination=d.uri)
        txn = getattr(req, "transaction", None)
        self._selections[req if txn is None else txn.request] = sel
        self.stats["selected"] += 1
        if alg == ALG_CALL_LOAD and self._own_load:
            self._load_call(req, first)
        return True

    # -- call load (algorithm 10) --------------------------------------------------------------

    @staticmethod
    def _load_key(d: Destination) -> str:
        return d.duid or d.uri

    def _load_call(self, req: Any, d: Destination) -> None:
        """Count this call (its Call-ID) against ``d``, moving it from the destination it
        was counted against before (a failover)."""
        try:
            call_id = req.call_id
        except SipParseError:
            return
        self._unload(call_id)
        key = self._load_key(d)
        self._load_of_call[call_id] = key
        self.call_load[key] = self.call_load.get(key, 0) + 1

    def _unload(self, call_id: str) -> bool:
        key = self._load_of_call.pop(call_id, None)
        if key is None:
            return False
        left = self.call_load.get(key, 1) - 1
        if left > 0:
            self.call_load[key] = left
        else:
            self.call_load.pop(key, None)
        return True

    def ds_load_update(self, req: Any) -> bool:
        """Algorithm 10: count the call against the destination now in use (after
        ``ds_next_dst`` in a failure handler; Kamailio's ``ds_load_update``).

        :returns: False when the request has no destination in use."""
        sel = self._selection(req)
        if sel is None or sel.current is None:
            return False
        self._load_call(req, sel.current)
        return True

    def ds_load_unset(self, req: Any) -> bool:
        """Algorithm 10: the call ended (BYE, or its INVITE failed): its destination has
        one call less (Kamailio's ``ds_load_unset``). Done by itself for calls whose
        dialog is tracked (``req.track_dialog()``), through :meth:`dialog_changed`.

        :returns: False when the call was not counted."""
        try:
            return self._unload(req.call_id)
        except SipParseError:
            return False

    def dialog_changed(self, dialog: Any, old: Any, new: Any) -> None:
        """Dialog tracker listener (the server adds it): a call counted for algorithm 10
        stops counting when its dialog is terminated (BYE, failure, timeout)."""
        if new == _DIALOG_TERMINATED:
            self._unload(dialog.call_id)

    @staticmethod
    def _rewrite_ruri(req: Any, d: Destination) -> bool:
        try:
            uri = req.uri
        except SipParseError:
            return False
        if not isinstance(uri, SipUri):
            return False
        req.set_ruri(str(uri.replace(host=d.sip_uri.host, port=d.sip_uri.port)))
        return True

    def ds_select_dst(self, req: Any, set: int, alg: int, limit: int | None = None) -> bool:
        """Choose a destination of set ``set`` with algorithm ``alg`` and make it the
        request's next hop (``req.destination``); the others are kept for
        ``ds_next_dst``. With ``force_dst`` 0 a destination already set is kept and
        False returned (Kamailio's "destination already set"). Algorithm 12 adds every
        other destination as a branch (``req.append_branch``).

        :param limit: keep at most this many candidates (Kamailio's ``limit``).
        :returns: False when the set is unknown or has no usable destination.
        :raises SipParseError: the header an algorithm hashes is missing or malformed.
        """
        if not self.force_dst and getattr(req, "destination", None):
            self.stats["select_failed"] += 1
            return False
        return self._select(req, int(set), int(alg), limit, False)

    def ds_select_domain(self, req: Any, set: int, alg: int,
                         limit: int | None = None) -> bool:
        """As :meth:`ds_select_dst`, but the destination's host and port replace those
        of the Request-URI (user and parameters kept).

        :returns: False when nothing is usable or the Request-URI is not a SIP URI.
        """
        return self._select(req, int(set), int(alg), limit, True)

    def _next(self, req: Any) -> Destination | None:
        if not self.flags & FLAG_FAILOVER:
            return None
        sel = self._selection(req)
        if sel is None or sel.parallel:
            return None  # algorithm 12 tried them all at once
        d = sel.next_destination()
        if d is None:
            self.stats["exhausted"] += 1
        else:
            self.stats["next"] += 1
        return d

    def ds_next_dst(self, req: Any) -> bool:
        """Make the next failover candidate the request's next hop (in ``on_failure``:
        then ``req.relay()``). Needs ``flags`` 2 (failover).

        :returns: False when none is left (or failover is off, nothing was selected, or
            algorithm 12 sent to all at once).
        """
        d = self._next(req)
        if d is None:
            return False
        req.set_destination(d.uri)
        sel = self._selection(req)
        if self._own_load and sel is not None and sel.alg == ALG_CALL_LOAD:
            self._load_call(req, d)  # the call moves to the next destination
        return True

    def ds_next_domain(self, req: Any) -> bool:
        """As :meth:`ds_next_dst`, rewriting the Request-URI's host and port instead."""
        d = self._next(req)
        return d is not None and self._rewrite_ruri(req, d)

    def ds_mark_dst(self, req: Any, state: str | None = None) -> bool:
        """Set the state of the destination last used for ``req`` (in ``on_failure``,
        after a timeout or a 503): ``"i"`` inactive, ``"a"`` active, ``"p"`` probing
        (also ``I``/``0``, ``A``/``1``, ``P``/``2``). Without ``state``: inactive, and
        probing too when ``ds_probing_mode`` is 1 (as Kamailio). Inactive and probing
        destinations are skipped by later selections.

        :returns: False when the request has no destination in use.
        :raises LocalProtocolError: an unknown state letter.
        """
        if state is None:
            bits = INACTIVE | (PROBING if self.ds_probing_mode == 1 else 0)
        else:
            try:
                bits = parse_state(state)
            except ValueError as exc:
                raise LocalProtocolError(f"ds_mark_dst: {exc}") from None
        sel = self._selection(req)
        used = sel.current if sel is not None else None
        if used is None:
            return False
        # The destination of the current sets (a reload may have replaced the object).
        dset = self._sets.get(used.setid)
        target = dset.find(used.uri) if dset is not None else None
        if target is None:
            return False
        self.stats["marked"] += 1
        self._set_state(target, bits, "ds_mark_dst")
        return True

    def ds_is_from_list(self, req: Any, group: int | None = None) -> bool:
        """Did ``req`` come from a destination of the list (of set ``group``)? The source
        IP must be the destination's host (an IP address: host names are not resolved),
        the source port its port when the URI has one, and the transport its
        ``transport`` parameter when it has one. The matching set id is kept:
        :meth:`matched_setid`."""
        if group is not None:
            group = int(group)
        src = req.source
        ip = src.ip
        entries = self._by_ip.get(_ip_key(ip) if ":" in ip else ip)
        if not entries:
            return False
        port = src.port
        proto = src.proto
        for setid, dport, dproto in entries:
            if group is not None and setid != group:
                continue
            if dport is not None and dport != port:
                continue
            if dproto is not None and dproto != proto:
                continue
            self._matched[_root(req)] = setid
            return True
        return False

    def matched_setid(self, req: Any) -> int | None:
        """The set id the last true ``ds_is_from_list`` found for ``req`` (what
        ``setid_pvar`` holds in Kamailio), or None."""
        return self._matched.get(_root(req))

    def selected(self, req: Any) -> Selected | None:
        """The values Kamailio keeps in ``grp_avp`` / ``dst_avp`` / ``cnt_avp`` for
        ``req``: a :class:`Selected` (set id, destination in use or None once exhausted,
        candidates not tried yet, candidate count), or None when nothing was selected."""
        sel = self._selection(req)
        if sel is None:
            return None
        cur = sel.current
        return Selected(sel.setid, cur.uri if cur is not None else None,
                        tuple(d.uri for d in sel.remaining), len(sel.candidates))

    # -- state --------------------------------------------------------------------------

    def _set_state(self, d: Destination, bits: int, why: str) -> None:
        old = d.state & STATE_MASK
        bits &= STATE_MASK
        if old == bits:
            return
        d.state = (d.state & ~STATE_MASK) | bits
        if not bits:
            d.failures = 0
        self.stats["state_changes"] += 1
        log.info("dispatcher: %s set %d %s -> %s (%s)", d.uri, d.setid, _STATE_NAMES[old],
                 _STATE_NAMES[bits], why)

    def _find(self, group: int, address: str) -> Destination:
        dset = self._sets.get(group)
        if dset is None:
            raise RpcError(f"no dispatcher set {group}")
        d = dset.find(address)
        if d is None:
            try:
                uri = parse_uri(address)
            except SipParseError:
                uri = None
            if uri is not None:
                d = next((x for x in dset if uri_equal(x.sip_uri, uri)), None)
        if d is None:
            raise RpcError(f"no destination {address} in dispatcher set {group}")
        return d

    def set_state(self, state: str, group: int, address: str) -> Destination:
        """Set a destination's state by set id and URI (``ds.set_state``).

        :raises RpcError: an unknown state letter, set or address.
        """
        try:
            bits = parse_state(state)
        except ValueError as exc:
            raise RpcError(str(exc)) from None
        d = self._find(group, address)
        self._set_state(d, bits, "ds.set_state")
        return d

    # -- health probing ----------------------------------------------------------------

    def probe_targets(self) -> list[Destination]:
        """The destinations to probe now: those in probing state (``ds_probing_mode``
        0), or all (1)."""
        everyone = self.ds_probing_mode == 1
        return [d for setid in sorted(self._sets) for d in self._sets[setid]
                if everyone or d.state & PROBING]

    def probe_result(self, d: Destination, status: int) -> None:
        """Apply one probe's final status to ``d`` (408: no answer in time). 200 or a
        code of ``options_reply_codes``: active again. Anything else: one more failure;
        an active destination turns probing after ``ds_probing_threshhold`` failures in
        a row (it is then skipped by selections and probed until it answers)."""
        dset = self._sets.get(d.setid)
        current = dset.find(d.uri) if dset is not None else None
        if current is None:
            return  # no longer in the list (a reload)
        self.stats["probes"] += 1
        if status == 200 or status in self.options_reply_codes:
            current.failures = 0
            self._set_state(current, 0, f"probe: {status}")
            return
        self.stats["probe_failures"] += 1
        current.failures += 1
        if not current.state & STATE_MASK and current.failures >= self.ds_probing_threshhold:
            self._set_state(current, PROBING,
                            f"probe: {status}, {current.failures} failures in a row")

    async def probe_once(self, pinger: Pinger | None = None) -> int:
        """Probe :meth:`probe_targets` at once (concurrently) with ``pinger`` (default:
        the one given to :meth:`start`) and apply the results; returns how many were
        probed. A pinger that raises is logged and counts as no answer (408)."""
        pinger = pinger or self._pinger
        if pinger is None:
            raise LocalProtocolError("dispatcher probing needs a pinger (start(pinger=...))")
        targets = self.probe_targets()
        if not targets:
            return 0
        results = await asyncio.gather(
            *(pinger(self.ds_ping_method, d.uri, self.ds_ping_from) for d in targets),
            return_exceptions=True)
        for d, status in zip(targets, results, strict=True):
            if isinstance(status, BaseException):
                if isinstance(status, asyncio.CancelledError):
                    raise status
                log.error("dispatcher: probing %s failed: %s", d.uri, status,
                          exc_info=status)
                status = 408
            self.probe_result(d, status)
        return len(targets)

    async def _probe_loop(self, pinger: Pinger) -> None:
        while True:
            await asyncio.sleep(self.ds_ping_interval)
            try:
                await self.probe_once(pinger)
            except Exception as exc:  # a bug: log it and keep probing
                log.error("dispatcher: probing failed: %s", exc, exc_info=exc)

    # -- management -----------------------------------------------------------------------

    @rpc("ds.list")
    async def rpc_list(self) -> list[dict]:
        """The destination sets: each set id with its destinations (URI, state, flags,
        priority, attributes)."""
        return [{"setid": setid, "destinations": [d.as_dict() for d in self._sets[setid]]}
                for setid in sorted(self._sets)]

    @rpc("ds.set_state")
    async def rpc_set_state(self, state: str, group: int, address: str) -> dict:
        """Set the state of destination ``address`` of set ``group``: ``a`` active,
        ``i`` inactive, ``p`` probing."""
        d = self.set_state(state, group, address)
        return {"setid": d.setid, **d.as_dict()}

    @rpc("ds.reload")
    async def rpc_reload(self) -> dict:
        """Load the list file (or table) again; a bad list changes nothing and its
        problems are returned as the error's data."""
        try:
            return await self.reload()
        except DispatcherListError as exc:
            raise RpcError("dispatcher list rejected, old sets kept",
                           data=exc.problems) from None

    @rpc("ds.stats")
    async def rpc_stats(self) -> dict[str, int]:
        """The dispatcher's counters: selections (and those that found nothing),
        failovers and exhausted sets, marks, state changes, probes and failed probes,
        reloads and rejected reloads."""
        return dict(self.stats)

    @rpc("dispatcher.list")
    async def rpc_kamailio_list(self) -> list[dict]:
        """Kamailio's name for ds.list."""
        return await self.rpc_list()

    @rpc("dispatcher.set_state")
    async def rpc_kamailio_set_state(self, state: str, group: int, address: str) -> dict:
        """Kamailio's name for ds.set_state."""
        return await self.rpc_set_state(state, group, address)

    @rpc("dispatcher.reload")
    async def rpc_kamailio_reload(self) -> dict:
        """Kamailio's name for ds.reload."""
        return await self.rpc_reload()

