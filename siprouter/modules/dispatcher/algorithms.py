# SPDX-License-Identifier: Apache-2.0
"""Choosing destinations from a set: the dispatcher's algorithms, pure (no I/O, no clock).

How this works: an algorithm gives a *start index* into the set (a hash of a message
field modulo the set's size, the set's round-robin position, a random draw …). From
there the selection walks the set in order, wrapping, skipping destinations that are
inactive or probing; the first usable one is the selected destination and the usable
ones after it, in that walking order, are the failover candidates ``ds_next_dst()``
takes one by one. With ``use_default`` the set's last destination takes no part in the
walk: it is appended at the end as the last resort (chosen even when every other one is
down, and whatever its own state, as Kamailio does).

Algorithms (the overview's 0–7, plus what operators use beyond them):

===  ======================================================================
0    hash over the Call-ID
1    hash over the From URI
2    hash over the To URI
3    hash over the Request-URI
4    round robin, per set (exactly fair over the usable destinations)
5    hash over the authorization username (Proxy-Authorization first, then
     Authorization); round robin when the request carries no credentials
6    random
7    hash over the configured string (``hash_pvar``: a template or a callable)
8    first by priority (the set is ordered by priority, higher first)
9    weight-based (``weight`` attribute; smooth weighted round robin, so the
     shares are exact over every run of ``sum(weights)`` calls)
10   call load: the usable destination with the fewest active calls below its
     ``maxload`` (0: no limit); the counts are supplied by the caller
12   all usable destinations, in parallel
any  other: the first (usable) entry
===  ======================================================================

URI hashes (1, 2, 3) use the username, host and port — the port only when it is not the
scheme's default (5060 for sip:, 5061 for sips:) — or only the username when ``flags``
has bit 1. Hashes are CRC-32 (stable across processes and restarts, unlike ``hash()``),
spread over the set with a multiplicative mix so that keys differing only in their last
characters do not fall into a pattern.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from typing import Any
from zlib import crc32

from siprouter.sip.digest import parse_credentials
from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.uri import SipUri, TelUri

from .destinations import Destination, DestinationSet

__all__ = [
    "ALG_CALLID",
    "ALG_FROM_URI",
    "ALG_TO_URI",
    "ALG_RURI",
    "ALG_ROUND_ROBIN",
    "ALG_AUTH_USERNAME",
    "ALG_RANDOM",
    "ALG_HASH_STRING",
    "ALG_PRIORITY",
    "ALG_WEIGHT",
    "ALG_CALL_LOAD",
    "ALG_PARALLEL",
    "FLAG_HASH_USER_ONLY",
    "FLAG_FAILOVER",
    "HashKey",
    "Selection",
    "Selector",
    "compile_hash_template",
    "uri_hash_key",
    "stable_hash",
]

ALG_CALLID = 0
ALG_FROM_URI = 1
ALG_TO_URI = 2
ALG_RURI = 3
ALG_ROUND_ROBIN = 4
ALG_AUTH_USERNAME = 5
ALG_RANDOM = 6
ALG_HASH_STRING = 7
ALG_PRIORITY = 8
ALG_WEIGHT = 9
ALG_CALL_LOAD = 10
ALG_PARALLEL = 12

# The module's ``flags`` parameter.
FLAG_HASH_USER_ONLY = 1
FLAG_FAILOVER = 2

_DEFAULT_PORT = {"sip": 5060, "sips": 5061}

# What algorithm 7 hashes: a function of the request giving text (None/"" = no key).
HashKey = Callable[[Any], "str | bytes | None"]


def stable_hash(key: str | bytes) -> int:
    """A 32-bit hash that is the same in every process (CRC-32, then a multiplicative
    mix so consecutive keys spread evenly modulo small set sizes)."""
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogateescape")
    return (crc32(key) * 0x9E3779B1) & 0xFFFFFFFF


def _index(h: int, n: int) -> int:
    # The mixed hash's high bits, scaled to 0..n-1 (better spread than h % n).
    return (h * n) >> 32


def uri_hash_key(uri: Any, flags: int = 0) -> str:
    """The text a URI hash is computed over: the username only with
    ``FLAG_HASH_USER_ONLY``, else username, host and — when not 5060 (sip:) / 5061
    (sips:) — port."""
    if isinstance(uri, SipUri):
        user = uri.user or ""
        if flags & FLAG_HASH_USER_ONLY:
            return user
        port = uri.port
        if port is None or port == _DEFAULT_PORT.get(uri.scheme):
            return f"{user}@{uri.host}"
        return f"{user}@{uri.host}:{port}"
    if isinstance(uri, TelUri):
        return uri.number
    return str(uri)


def _auth_username(req: Any) -> str | None:
    for name in ("Proxy-Authorization", "Authorization"):
        value = req.header(name)
        if value is not None:
            try:
                return parse_credentials(value, name).username or None
            except SipParseError:
                continue
    return None


# -- algorithm 7: the configured string --------------------------------------------------

def _sip_field(getter: Callable[[Any], Any], part: str) -> Callable[[Any], str]:
    def field(req: Any) -> str:
        uri = getter(req)
        if part == "uri":
            return str(uri)
        if part == "user":
            return (uri.user or "") if isinstance(uri, SipUri) else (
                uri.number if isinstance(uri, TelUri) else "")
        return uri.host if isinstance(uri, SipUri) else ""
    return field


_TEMPLATE_FIELDS: dict[str, Callable[[Any], str]] = {
    "call_id": lambda req: req.call_id,
    "method": lambda req: req.method,
    "ruri": lambda req: req.ruri,
    "ruri_user": _sip_field(lambda req: req.uri, "user"),
    "ruri_host": _sip_field(lambda req: req.uri, "host"),
    "from_uri": _sip_field(lambda req: req.from_.uri, "uri"),
    "from_user": _sip_field(lambda req: req.from_.uri, "user"),
    "from_host": _sip_field(lambda req: req.from_.uri, "host"),
    "from_tag": lambda req: req.from_.tag or "",
    "to_uri": _sip_field(lambda req: req.to.uri, "uri"),
    "to_user": _sip_field(lambda req: req.to.uri, "user"),
    "to_host": _sip_field(lambda req: req.to.uri, "host"),
    "auth_username": lambda req: _auth_username(req) or "",
    "source_ip": lambda req: str(getattr(req.source, "ip", "") or ""),
}


def compile_hash_template(template: str) -> HashKey:
    """Turn a ``hash_pvar`` template into a key function. Fields are written
    ``{name}``: ``call_id``, ``method``, ``ruri``, ``ruri_user``, ``ruri_host``,
    ``from_uri``, ``from_user``, ``from_host``, ``from_tag``, ``to_uri``, ``to_user``,
    ``to_host``, ``auth_username``, ``source_ip``, or ``{header:Name}`` for the first
    value of a header ("" when absent); other text is kept as written.

    :raises LocalProtocolError: for an unknown field or a malformed template.
    """
    parts: list[str | Callable[[Any], str]] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise LocalProtocolError(f"hash_pvar template {template!r}: {exc}") from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append(literal)
        if field is None:
            continue
        if conversion:
            raise LocalProtocolError(f"hash_pvar template {template!r}: no !{conversion}")
        if field == "header":
            if not spec:
                raise LocalProtocolError(f"hash_pvar template {template!r}: "
                                         "expected {header:Name}")
            parts.append(lambda req, _n=spec: req.header(_n) or "")
            continue
        getter = _TEMPLATE_FIELDS.get(field)
        if getter is None or spec:
            raise LocalProtocolError(f"hash_pvar template {template!r}: unknown field "
                                     f"{{{field}}}; expected one of "
                                     f"{', '.join(sorted(_TEMPLATE_FIELDS))} or header:Name")
        parts.append(getter)

    def key(req: Any) -> str:
        return "".join(p if isinstance(p, str) else p(req) for p in parts)
    return key


# -- selection ----------------------------------------------------------------------------

class Selection:
    """The outcome of one selection: ``candidates`` in the order they are to be tried
    (the selected destination first, the ``use_default`` one last), ``parallel`` when
    they are all to be tried at once (algorithm 12). ``position`` is the index of the
    destination in use; :meth:`next_destination` moves on for failover."""

    __slots__ = ("setid", "alg", "candidates", "parallel", "position")

    def __init__(self, setid: int, alg: int, candidates: list[Destination],
                 parallel: bool = False) -> None:
        self.setid = setid
        self.alg = alg
        self.candidates = candidates
        self.parallel = parallel
        self.position = 0

    @property
    def current(self) -> Destination | None:
        """The destination in use (None once exhausted)."""
        c = self.candidates
        return c[self.position] if self.position < len(c) else None

    @property
    def remaining(self) -> list[Destination]:
        """The candidates not tried yet (after the current one)."""
        return self.candidates[self.position + 1:]

    def next_destination(self) -> Destination | None:
        """Move to the next candidate and return it, or None when none is left
        (``ds_next_dst()``)."""
        if self.position < len(self.candidates):
            self.position += 1
        return self.current

    def __bool__(self) -> bool:
        return bool(self.candidates)

    def __repr__(self) -> str:
        return (f"Selection(set={self.setid}, alg={self.alg}, "
                f"{[d.uri for d in self.candidates]!r}, position={self.position})")


class Selector:
    """Runs the algorithms with the module's configuration.

    :param flags: the module's ``flags`` (``FLAG_HASH_USER_ONLY``; ``FLAG_FAILOVER`` is
        the caller's business: the candidates are always computed).
    :param use_default: keep each set's last destination as the last resort only.
    :param hash_key: algorithm 7's string — a template (see
        :func:`compile_hash_template`) or a callable taking the request.
    :param active_calls: algorithm 10's counts — a callable taking a destination, or a
        mapping from its ``duid`` (else its URI) to the number of active calls.
    :param rng: algorithm 6's random source (a seeded ``random.Random`` in tests).
    """

    __slots__ = ("flags", "use_default", "hash_key", "active_calls", "rng")

    def __init__(self, *, flags: int = 0, use_default: bool = False,
                 hash_key: str | HashKey | None = None,
                 active_calls: Callable[[Destination], int] | Mapping[str, int] | None = None,
                 rng: random.Random | None = None) -> None:
        self.flags = flags
        self.use_default = bool(use_default)
        if isinstance(hash_key, str):
            hash_key = compile_hash_template(hash_key) if hash_key else None
        self.hash_key: HashKey | None = hash_key
        if isinstance(active_calls, Mapping):
            counts = active_calls
            active_calls = lambda d: counts.get(d.duid or d.uri, 0)  # noqa: E731
        self.active_calls = active_calls
        self.rng = rng or random.Random()

    def select(self, dset: DestinationSet, alg: int, req: Any) -> Selection:
        """Choose from ``dset`` for ``req`` with algorithm ``alg``. An empty selection
        (false) means no destination is usable.

        :raises SipParseError: when the header an algorithm hashes is missing or
            malformed (the request is bad: answer with its ``status_hint``).
        :raises LocalProtocolError: algorithm 7 without a configured ``hash_key``.
        """
        dests = dset.destinations
        n = len(dests)
        if not n:
            return Selection(dset.setid, alg, [])
        default: Destination | None = None
        if self.use_default and n > 1:
            default = dests[-1]
            n -= 1
        if alg == ALG_PARALLEL:
            chosen = [d for d in dests[:n] if not d.state & 3]
            if not chosen and default is not None:
                chosen = [default]
            return Selection(dset.setid, alg, chosen, parallel=True)

        rotate = alg == ALG_ROUND_ROBIN
        if rotate:
            start: int | None = (dset.rr_last + 1) % n
        elif alg == ALG_AUTH_USERNAME:
            user = _auth_username(req)
            rotate = user is None  # no credentials: round robin (the overview's rule)
            start = (dset.rr_last + 1) % n if rotate else _index(stable_hash(user), n)
        else:
            start = self._start(dset, alg, req, n)
        if start is None:
            return Selection(dset.setid, alg, [])
        # The walk from start, wrapping; state bits 1|2 (inactive, probing) skip.
        candidates = [d for d in dests[start:n] if not d.state & 3]
        if start:
            candidates += [d for d in dests[:start] if not d.state & 3]
        if alg == ALG_CALL_LOAD:
            candidates = self._by_load(candidates)
        if rotate and candidates:
            # Recording the one actually chosen (not the start) keeps the rotation
            # exactly fair over the usable destinations when some are skipped.
            dset.rr_last = dests.index(candidates[0])
        if default is not None:
            candidates.append(default)
        return Selection(dset.setid, alg, candidates)

    def _start(self, dset: DestinationSet, alg: int, req: Any, n: int) -> int | None:
        if alg == ALG_CALLID:
            return _index(stable_hash(req.call_id), n)
        if alg == ALG_FROM_URI:
            return _index(stable_hash(uri_hash_key(req.from_.uri, self.flags)), n)
        if alg == ALG_TO_URI:
            return _index(stable_hash(uri_hash_key(req.to.uri, self.flags)), n)
        if alg == ALG_RURI:
            return _index(stable_hash(uri_hash_key(req.uri, self.flags)), n)
        if alg == ALG_RANDOM:
            return self.rng.randrange(n)
        if alg == ALG_HASH_STRING:
            if self.hash_key is None:
                raise LocalProtocolError("dispatcher algorithm 7 needs hash_pvar "
                                         "(a template or a callable)")
            key = self.hash_key(req)
            if not key:
                return None
            return _index(stable_hash(key), n)
        if alg == ALG_WEIGHT:
            return _next_weighted(dset, n)
        # ALG_PRIORITY: the set is ordered by priority; ALG_CALL_LOAD orders afterwards;
        # an unknown algorithm picks the first entry.
        return 0

    def _by_load(self, candidates: list[Destination]) -> list[Destination]:
        count = self.active_calls
        if count is None:
            raise LocalProtocolError("dispatcher algorithm 10 needs active_calls")
        loads = [(count(d), i, d) for i, d in enumerate(candidates)]
        under = [t for t in loads if not t[2].maxload or t[0] < t[2].maxload]
        # Fewest calls first; equal loads keep the set's order.
        under.sort(key=lambda t: (t[0], t[1]))
        return [d for _, _, d in under]


def _next_weighted(dset: DestinationSet, n: int) -> int:
    """Smooth weighted round robin over the usable destinations: each gains its weight,
    the richest is chosen and pays the total. Over ``sum(weights)`` calls each is
    chosen exactly ``weight`` times, interleaved. All weights 0: equal weights."""
    dests = dset.destinations
    credit = dset.wrr_credit
    weights = [(i, dests[i].weight) for i in range(n) if dests[i].usable]
    if not weights:
        return 0
    if not any(w for _, w in weights):
        weights = [(i, 1) for i, _ in weights]
    total = 0
    best = -1
    for i, w in weights:
        if not w:
            continue  # weight 0: only a failover candidate, never chosen first
        credit[i] += w
        total += w
        if best < 0 or credit[i] > credit[best]:
            best = i
    credit[best] -= total
    return best
