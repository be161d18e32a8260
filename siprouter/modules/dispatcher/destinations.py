# SPDX-License-Identifier: Apache-2.0
"""Destination sets: what the dispatcher balances over, loaded from a list file or from
database rows (Kamailio's ``dispatcher`` table).

The list file has one destination per line::

    # setid  destination             flags  priority  attributes
    1        sip:10.0.0.1:5060
    1        sip:10.0.0.2:5060       0      10        weight=50;duid=gw2;maxload=20
    2        sip:pstn.example.com    2

``flags`` is 1 (inactive) and/or 2 (probing), OR-ed; ``priority`` orders a set (higher
first; equal priorities keep the file's order); ``attributes`` are ``name=value`` pairs
separated by ``;`` of which ``weight``, ``maxload`` (integers) and ``duid`` mean
something to the algorithms. Blank lines and lines starting with ``#`` are ignored.

Loading is all or nothing: every bad line is reported as ``path:line: expected …`` in
one :class:`DispatcherListError` and no set is returned, so the caller keeps the sets it
had (a reload of a half-edited file changes nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from siprouter.sip.errors import SipParseError
from siprouter.sip.uri import SipUri, parse_uri

__all__ = [
    "INACTIVE",
    "PROBING",
    "STATE_MASK",
    "Destination",
    "DestinationSet",
    "DispatcherListError",
    "parse_list",
    "load_list_file",
    "sets_from_rows",
    "parse_attrs",
    "parse_state",
]

# Destination flags (the list file's third field, the table's flags column).
INACTIVE = 1
PROBING = 2
STATE_MASK = INACTIVE | PROBING

# Attributes that are integers; anything else is kept as text.
_INT_ATTRS = ("weight", "maxload")


class DispatcherListError(Exception):
    """A destination list (file or table) was rejected as a whole. ``problems`` holds one
    ``where: expected …`` line per bad entry."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class Destination:
    """One address of a destination set.

    ``flags`` are the flags it was loaded with; ``state`` its current state bits
    (``INACTIVE`` / ``PROBING``, 0 = active), changed by ``ds_mark_dst``, probing and
    management. ``failures`` counts failed probes since the last success.
    """

    __slots__ = ("setid", "uri", "sip_uri", "flags", "priority", "attrs", "state",
                 "failures", "weight", "maxload", "duid")

    def __init__(self, setid: int, uri: str, flags: int = 0, priority: int = 0,
                 attrs: Mapping[str, Any] | None = None) -> None:
        self.setid = setid
        self.uri = uri
        self.sip_uri: SipUri = _sip_uri(uri)
        self.flags = flags
        self.priority = priority
        self.attrs: dict[str, Any] = dict(attrs) if attrs else {}
        self.state = flags & STATE_MASK
        self.failures = 0
        self.weight: int = self.attrs.get("weight", 0)
        self.maxload: int = self.attrs.get("maxload", 0)
        self.duid: str | None = self.attrs.get("duid")

    @property
    def usable(self) -> bool:
        """Active: neither inactive nor probing (those are skipped by selection)."""
        return not self.state & STATE_MASK

    @property
    def state_name(self) -> str:
        """``"active"``, ``"inactive"``, ``"probing"`` or ``"inactive,probing"``."""
        s = self.state & STATE_MASK
        if not s:
            return "active"
        return ",".join(n for bit, n in ((INACTIVE, "inactive"), (PROBING, "probing"))
                        if s & bit)

    def as_dict(self) -> dict[str, Any]:
        """What ``ds.list`` shows of it (JSON-serialisable)."""
        return {"uri": self.uri, "state": self.state_name, "flags": self.state,
                "priority": self.priority, "attrs": dict(self.attrs)}

    def __repr__(self) -> str:
        return f"Destination({self.setid}, {self.uri!r}, state={self.state_name})"


class DestinationSet:
    """The destinations of one set id, ordered by priority (higher first, then as
    loaded). Holds the set's own algorithm state (the round-robin position and the
    weighted round-robin credits), so each set rotates on its own."""

    __slots__ = ("setid", "destinations", "rr_last", "wrr_credit")

    def __init__(self, setid: int, destinations: Iterable[Destination]) -> None:
        self.setid = setid
        # sorted() is stable: equal priorities keep the order they were loaded in.
        self.destinations: tuple[Destination, ...] = tuple(
            sorted(destinations, key=lambda d: -d.priority))
        self.rr_last = -1
        self.wrr_credit: list[int] = [0] * len(self.destinations)

    def __len__(self) -> int:
        return len(self.destinations)

    def __iter__(self):
        return iter(self.destinations)

    def find(self, uri: str) -> Destination | None:
        """The destination whose URI is ``uri`` (text as loaded), or None."""
        for d in self.destinations:
            if d.uri == uri:
                return d
        return None

    def __repr__(self) -> str:
        return f"DestinationSet({self.setid}, {list(self.destinations)!r})"


_STATE_LETTERS = {"a": 0, "1": 0, "i": INACTIVE, "0": INACTIVE, "p": PROBING, "2": PROBING}


def parse_state(text: str) -> int:
    """State bits from the letters ``ds_mark_dst`` and ``ds.set_state`` take: ``a`` /
    ``A`` / ``1`` active, ``i`` / ``I`` / ``0`` inactive, ``p`` / ``P`` / ``2`` probing;
    ``ip`` (both) as Kamailio accepts.

    :raises ValueError: with an ``expected …`` message for anything else.
    """
    t = text.strip().lower()
    if t in _STATE_LETTERS:
        return _STATE_LETTERS[t]
    if t in ("ip", "pi"):
        return INACTIVE | PROBING
    raise ValueError(f'expected a state "a" (active), "i" (inactive) or "p" (probing), '
                     f"got {text!r}")


def _sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError("Bad destination", None, f"not a sip:/sips: URI: {text!r}")
    return uri


def parse_attrs(text: str) -> dict[str, Any]:
    """``weight=50;duid=gw1;maxload=20`` → ``{"weight": 50, "duid": "gw1", "maxload": 20}``.

    :raises ValueError: with an ``expected …`` message for a pair without ``=``, an empty
        name, or a weight / maxload that is not a non-negative integer.
    """
    attrs: dict[str, Any] = {}
    for pair in text.split(";"):
        pair = pair.strip()
        if not pair:
            continue
        name, eq, value = pair.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise ValueError(f"expected attributes as name=value;…, got {pair!r}")
        value = value.strip()
        if name in _INT_ATTRS:
            if not value.isdigit():
                raise ValueError(f"expected {name} as a non-negative integer, got {value!r}")
            attrs[name] = int(value)
        else:
            attrs[name] = value
    return attrs


def _int(text: str) -> int | None:
    t = text.strip()
    if t[:1] in ("-", "+"):
        return int(t) if t[1:].isdigit() else None
    return int(t) if t.isdigit() else None


def _destination(setid_text: Any, uri_text: Any, flags_text: Any, priority_text: Any,
                 attrs_text: Any) -> Destination:
    """One destination from its fields (text or numbers); ValueError("expected …")."""
    setid = setid_text if isinstance(setid_text, int) else _int(str(setid_text))
    if setid is None:
        raise ValueError(f"expected an integer set id, got {setid_text!r}")
    uri = str(uri_text).strip() if uri_text is not None else ""
    flags = 0
    if flags_text not in (None, ""):
        flags = flags_text if isinstance(flags_text, int) else _int(str(flags_text))
        if flags is None or flags < 0:
            raise ValueError(f"expected flags as a non-negative integer "
                             f"(1 inactive, 2 probing), got {flags_text!r}")
    priority = 0
    if priority_text not in (None, ""):
        priority = priority_text if isinstance(priority_text, int) else _int(str(priority_text))
        if priority is None:
            raise ValueError(f"expected an integer priority, got {priority_text!r}")
    attrs = parse_attrs(str(attrs_text)) if attrs_text else {}
    try:
        if not uri:
            raise SipParseError("Bad destination", None, "empty")
        return Destination(setid, uri, flags, priority, attrs)
    except SipParseError:
        raise ValueError(f"expected a SIP URI as destination, got {uri_text!r}") from None


def _group(dests: list[Destination]) -> dict[int, DestinationSet]:
    by_set: dict[int, list[Destination]] = {}
    for d in dests:
        by_set.setdefault(d.setid, []).append(d)
    return {setid: DestinationSet(setid, ds) for setid, ds in by_set.items()}


def parse_list(text: str, path: str = "<list>") -> dict[int, DestinationSet]:
    """Parse list-file text into sets keyed by set id.

    :param path: the name problems are reported under (``path:line: expected …``).
    :raises DispatcherListError: naming every bad line; nothing is returned then.
    """
    dests: list[Destination] = []
    problems: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2:
            problems.append(f"{path}:{lineno}: expected a set id and a SIP URI, got {line!r}")
            continue
        if len(fields) > 5:
            problems.append(f"{path}:{lineno}: expected at most 5 fields (set id, URI, "
                            f"flags, priority, attributes), got {len(fields)}")
            continue
        fields += [None] * (5 - len(fields))
        try:
            dests.append(_destination(*fields))
        except ValueError as exc:
            problems.append(f"{path}:{lineno}: {exc}")
    if problems:
        raise DispatcherListError(problems)
    return _group(dests)


def load_list_file(path: str | Path) -> dict[int, DestinationSet]:
    """Read and parse a list file.

    :raises DispatcherListError: for bad lines (all of them), or a file that cannot be
        read (``path: expected a readable file, …``).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DispatcherListError([f"{path}: expected a readable UTF-8 file, {exc}"]) from None
    return parse_list(text, str(path))


def sets_from_rows(rows: Iterable[Mapping[str, Any]], *, setid_col: str = "setid",
                   destination_col: str = "destination", flags_col: str = "flags",
                   priority_col: str = "priority", attrs_col: str = "attrs",
                   table_name: str = "dispatcher") -> dict[int, DestinationSet]:
    """Build sets from database rows (Kamailio's ``dispatcher`` table; the column names
    are the module's ``setid_col`` / ``destination_col`` / ``flags_col`` … parameters).
    A missing priority or attrs column counts as 0 / none.

    :raises DispatcherListError: naming every bad row (``table_name row N: expected …``).
    """
    dests: list[Destination] = []
    problems: list[str] = []
    for n, row in enumerate(rows, 1):
        try:
            dests.append(_destination(row.get(setid_col), row.get(destination_col),
                                      row.get(flags_col), row.get(priority_col),
                                      row.get(attrs_col)))
        except ValueError as exc:
            problems.append(f"{table_name} row {n}: {exc}")
    if problems:
        raise DispatcherListError(problems)
    return _group(dests)
