# SPDX-License-Identifier: Apache-2.0
"""Dialog tracking for INVITE dialogs as a stateful proxy sees them (RFC 3261 §12, §15;
RFC 6026), in the manner of Kamailio's ``dialog`` module. No I/O, no clock: time is
passed in as monotonic seconds.

How this works
--------------
The stateful proxy (``tm``) tells the tracker what it relays:

* ``create(invite, now)`` for an initial INVITE (no To tag) it relays. The dialog starts
  ``UNCONFIRMED`` (Kamailio state 1). One :class:`Dialog` stands for the whole INVITE,
  whatever the forking downstream, as in Kamailio.
* ``on_response(dlg, res, now)`` for the responses to that INVITE: every 1xx and 2xx
  received, and the final non-2xx response that is forwarded upstream (the best response
  of §16.7 step 6, not each failed branch). A 1xx with a To tag makes it ``EARLY`` (2);
  a 2xx ``CONFIRMED_NA`` (3: answered, ACK not seen yet); 300-699 ``TERMINATED`` (5).
* ``on_request(req, now)`` for every in-dialog request (To tag present) it sees. The ACK
  for the 2xx makes it ``CONFIRMED`` (4); a BYE, in either direction, ``TERMINATED``.
* ``expire(now)`` when ``next_deadline()`` is reached.

Every (state, event) pair is in :data:`TRANSITIONS`: the state it leads to, or ``None``
where the event is deliberately ignored (a test checks that the table is complete).
Listeners added with ``add_listener`` hear of every state change; accounting and call
limits build on that.

Matching (§12.2). A dialog is found by Call-ID and the tag pair, in either order: From
tag = the caller's tag and To tag = the callee's is a request *downstream* (caller to
callee); the reverse is *upstream*. The index is a dict by Call-ID whose value is the
dialog, or a short list in the rare case that several share a Call-ID (an INVITE sent
again after a 401/407 challenge, a spiral, forked second INVITEs). While the dialog is
early, every To tag seen in a 1xx (each fork branch makes its own early dialog, §12.1)
matches; the 2xx fixes the To tag, and later 2xx responses from other branches (RFC 6026
§4: each is a dialog of its own) do not change it: the first confirmed To tag is kept.

Timeouts. Each dialog has ``timeout_at``: ``early_timeout`` after creation while it is
unconfirmed or early; ``noack_timeout`` after the 2xx until the ACK is seen; then
``default_timeout`` (43,200 s, Kamailio's default), which each in-dialog request re-arms
as Kamailio does, unless ``set_timeout`` fixed a limit. A terminated dialog stays
matchable for ``end_timeout`` (32 s = 64*T1, the life of a BYE's client transaction, so
retransmissions and the 200 to the BYE still find it), then ``expire`` forgets it.

The timer heap holds at most one *current* entry per dialog, ``(due, seq, dialog)``, and
the dialog points at it (``_entry``). When a deadline moves later (the common case: a
re-armed timeout) nothing is pushed; the early entry is re-pushed with the later time
when it surfaces. When a deadline moves earlier a new entry is pushed and the old one is
left in the heap, stale (lazy deletion: it is dropped when popped, being no longer the
dialog's ``_entry``). So ``expire`` is O(k log n) for k entries due, and no call scans
every dialog.

Malformed headers. From, To, Call-ID and CSeq identify the dialog: a
:class:`~siprouter.sip.errors.SipParseError` reading them propagates. Contact and
Record-Route are kept as written (cut with ``str.find``, not parsed: this module only
records them), so a malformed one is recorded as it came.
"""

from __future__ import annotations

import heapq
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from itertools import count
from typing import Any

from siprouter.sip.errors import LocalProtocolError, SipParseError
from siprouter.sip.headers import parse_name_addr, split_values

__all__ = [
    "DOWNSTREAM",
    "UPSTREAM",
    "CALLEE",
    "CALLER",
    "InDialogRequest",
    "end_requests",
    "DialogState",
    "DialogEvent",
    "TRANSITIONS",
    "Dialog",
    "DialogListener",
    "DialogTracker",
]

log = logging.getLogger("siprouter.dialogs")

#: Direction of an in-dialog request: from the caller to the callee.
DOWNSTREAM = "downstream"
#: Direction of an in-dialog request: from the callee to the caller.
UPSTREAM = "upstream"


class DialogState(IntEnum):
    """Kamailio's dialog states, with its numbers (dialog module, "Dialog states")."""

    UNCONFIRMED = 1   # INVITE relayed, no tagged response yet
    EARLY = 2         # a 1xx with a To tag (§12.1: "early dialog")
    CONFIRMED_NA = 3  # a 2xx: confirmed, ACK not seen yet
    CONFIRMED = 4     # the ACK for the 2xx seen: call up
    TERMINATED = 5    # BYE, failure, timeout or ended by the API ("deleted")


class DialogEvent(IntEnum):
    """The inputs of the dialog state machine."""

    PROVISIONAL = 0           # 101-199 to the INVITE, with a To tag
    PROVISIONAL_UNTAGGED = 1  # 100, or a 1xx without a To tag
    SUCCESS = 2               # 2xx to the INVITE
    FAILURE = 3               # 300-699 to the INVITE (the one forwarded upstream)
    ACK = 4                   # ACK from the caller
    BYE = 5                   # BYE, either direction
    REQUEST = 6               # any other in-dialog request (re-INVITE, UPDATE, PRACK, ...)
    TIMEOUT = 7               # timeout_at reached
    TERMINATE = 8             # ended through the API


_S = DialogState
_E = DialogEvent

#: (state, event) -> next state, or None where the event is deliberately ignored.
#: A next state equal to the current one means "handled" (CSeq, contact, timeout updated).
TRANSITIONS: dict[tuple[DialogState, DialogEvent], DialogState | None] = {
    # -- UNCONFIRMED: the INVITE is on its way, nothing came back with a tag.
    (_S.UNCONFIRMED, _E.PROVISIONAL): _S.EARLY,
    (_S.UNCONFIRMED, _E.PROVISIONAL_UNTAGGED): None,   # 100 Trying says nothing of the dialog
    (_S.UNCONFIRMED, _E.SUCCESS): _S.CONFIRMED_NA,
    (_S.UNCONFIRMED, _E.FAILURE): _S.TERMINATED,
    (_S.UNCONFIRMED, _E.ACK): None,                    # no To tag known: cannot match anyway
    (_S.UNCONFIRMED, _E.BYE): None,
    (_S.UNCONFIRMED, _E.REQUEST): None,
    (_S.UNCONFIRMED, _E.TIMEOUT): _S.TERMINATED,
    (_S.UNCONFIRMED, _E.TERMINATE): _S.TERMINATED,
    # -- EARLY: ringing; fork branches may add more early To tags.
    (_S.EARLY, _E.PROVISIONAL): _S.EARLY,
    (_S.EARLY, _E.PROVISIONAL_UNTAGGED): None,
    (_S.EARLY, _E.SUCCESS): _S.CONFIRMED_NA,
    (_S.EARLY, _E.FAILURE): _S.TERMINATED,
    (_S.EARLY, _E.ACK): None,                          # an ACK only follows a final response
    (_S.EARLY, _E.BYE): _S.TERMINATED,                 # §15: the caller may BYE an early dialog
    (_S.EARLY, _E.REQUEST): _S.EARLY,                  # PRACK, UPDATE, INFO (RFC 3262, 3311)
    (_S.EARLY, _E.TIMEOUT): _S.TERMINATED,
    (_S.EARLY, _E.TERMINATE): _S.TERMINATED,
    # -- CONFIRMED_NA: answered, waiting for the ACK.
    (_S.CONFIRMED_NA, _E.PROVISIONAL): None,           # late 1xx of another branch
    (_S.CONFIRMED_NA, _E.PROVISIONAL_UNTAGGED): None,
    (_S.CONFIRMED_NA, _E.SUCCESS): None,               # retransmission, or another branch's
    #                                                    2xx: the first confirmed tag stays
    (_S.CONFIRMED_NA, _E.FAILURE): None,               # a 2xx wins over any failure (§16.7)
    (_S.CONFIRMED_NA, _E.ACK): _S.CONFIRMED,
    (_S.CONFIRMED_NA, _E.BYE): _S.TERMINATED,
    (_S.CONFIRMED_NA, _E.REQUEST): _S.CONFIRMED_NA,
    (_S.CONFIRMED_NA, _E.TIMEOUT): _S.TERMINATED,     # no ACK within noack_timeout
    (_S.CONFIRMED_NA, _E.TERMINATE): _S.TERMINATED,
    # -- CONFIRMED: the call is up.
    (_S.CONFIRMED, _E.PROVISIONAL): None,
    (_S.CONFIRMED, _E.PROVISIONAL_UNTAGGED): None,
    (_S.CONFIRMED, _E.SUCCESS): None,                  # 2xx retransmission (or another fork's)
    (_S.CONFIRMED, _E.FAILURE): None,
    (_S.CONFIRMED, _E.ACK): _S.CONFIRMED,              # ACK retransmission, ACK of a re-INVITE
    (_S.CONFIRMED, _E.BYE): _S.TERMINATED,
    (_S.CONFIRMED, _E.REQUEST): _S.CONFIRMED,          # re-INVITE, UPDATE, INFO ...: re-arms
    (_S.CONFIRMED, _E.TIMEOUT): _S.TERMINATED,
    (_S.CONFIRMED, _E.TERMINATE): _S.TERMINATED,
    # -- TERMINATED: final; kept for end_timeout so late messages still match.
    (_S.TERMINATED, _E.PROVISIONAL): None,
    (_S.TERMINATED, _E.PROVISIONAL_UNTAGGED): None,
    (_S.TERMINATED, _E.SUCCESS): None,   # TODO(issue 3): a 2xx after the 408/487 went up
    #                                      (Timer C race, RFC 6026 §7.1) is not tracked
    (_S.TERMINATED, _E.FAILURE): None,
    (_S.TERMINATED, _E.ACK): None,
    (_S.TERMINATED, _E.BYE): None,       # BYE retransmission
    (_S.TERMINATED, _E.REQUEST): None,
    (_S.TERMINATED, _E.TIMEOUT): None,
    (_S.TERMINATED, _E.TERMINATE): None,
}

# The table as nested tuples indexed by int(state), int(event): one lookup per message.
# (A KeyError here at import means the table above misses a pair.)
_NEXT: tuple[tuple[DialogState | None, ...], ...] = ((),) + tuple(
    tuple(TRANSITIONS[(state, event)] for event in DialogEvent) for state in DialogState
)
assert [int(s) for s in DialogState] == list(range(1, len(_NEXT)))

# Module-level names for the members: on CPython 3.11 ``DialogState.EARLY`` is an
# attribute lookup through the enum metaclass (~0.2 µs); a global is ~0.02 µs.
_UNCONFIRMED, _EARLY, _CONFIRMED_NA, _CONFIRMED, _TERMINATED = DialogState
(_EV_PROVISIONAL, _EV_PROVISIONAL_UNTAGGED, _EV_SUCCESS, _EV_FAILURE, _EV_ACK, _EV_BYE,
 _EV_REQUEST, _EV_TIMEOUT, _EV_TERMINATE) = DialogEvent

#: ``fn(dialog, old_state, new_state)``; ``old_state`` is None when the dialog was created.
DialogListener = Callable[["Dialog", "DialogState | None", "DialogState"], None]


class Dialog:
    """One INVITE dialog as the proxy tracks it.

    Fields are read freely; change them only through :class:`DialogTracker` (``vars``
    is the exception: it belongs to modules, e.g. accounting and call limits). Times
    are the monotonic seconds the tracker was given. ``route_set`` holds the
    Record-Route values of the response that established the dialog, top first (the
    callee's route set, §12.1.1; the caller's is its reverse, §12.1.2).
    """

    __slots__ = (
        "id", "call_id", "from_tag", "to_tag", "from_uri", "to_uri", "request_uri",
        "caller_contact", "callee_contact", "caller_cseq", "callee_cseq", "route_set",
        "state", "created", "confirmed_at", "ended_at", "timeout_at", "end_reason",
        "max_duration", "caller_source", "_vars", "_early_tags", "_entry",
    )

    id: str
    call_id: str
    from_tag: str
    to_tag: str | None
    from_uri: str
    to_uri: str
    request_uri: str
    caller_contact: str | None
    callee_contact: str | None
    caller_cseq: int
    callee_cseq: int | None
    route_set: list[str]
    state: DialogState
    created: float
    confirmed_at: float | None
    ended_at: float | None
    timeout_at: float
    end_reason: str | None
    max_duration: float | None
    caller_source: Any

    def __init__(self, id: str, call_id: str, from_tag: str, from_uri: str, to_uri: str,
                 request_uri: str, caller_contact: str | None, caller_cseq: int,
                 caller_source: Any, created: float, timeout_at: float) -> None:
        self.id = id
        self.call_id = call_id
        self.from_tag = from_tag
        self.to_tag = None
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.request_uri = request_uri
        self.caller_contact = caller_contact
        self.callee_contact = None
        self.caller_cseq = caller_cseq
        self.callee_cseq = None
        self.route_set = []
        self.state = _UNCONFIRMED
        self.created = created
        self.confirmed_at = None
        self.ended_at = None
        self.timeout_at = timeout_at
        self.end_reason = None
        self.max_duration = None
        self.caller_source = caller_source
        self._vars: dict[str, Any] | None = None
        self._early_tags: list[str] | None = None
        self._entry: tuple[float, int, Dialog] | None = None

    @property
    def vars(self) -> dict[str, Any]:
        """Free-form per-dialog values for modules (Kamailio's ``$dlg_var``); made on
        first use so dialogs nobody annotates carry no dict."""
        v = self._vars
        if v is None:
            v = self._vars = {}
        return v

    @property
    def is_live(self) -> bool:
        """True until the dialog is terminated."""
        return self.state is not _TERMINATED

    @property
    def early_to_tags(self) -> tuple[str, ...]:
        """Every To tag of the early dialogs seen so far (forking), in order of arrival;
        empty once confirmed or before any tagged 1xx."""
        if self.state is not _EARLY or self.to_tag is None:
            return ()
        extra = self._early_tags
        return (self.to_tag, *extra) if extra else (self.to_tag,)

    def duration(self, now: float) -> float | None:
        """Seconds from the 2xx to the end (or to ``now`` while live); None if never
        answered. Kamailio's ``$DLG_lifetime``."""
        if self.confirmed_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return end - self.confirmed_at

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, the fields of Kamailio's ``dlg.list``."""
        vars_ = self._vars
        return {
            "id": self.id,
            "call_id": self.call_id,
            "state": int(self.state),
            "state_name": self.state.name,
            "from_uri": self.from_uri,
            "to_uri": self.to_uri,
            "request_uri": self.request_uri,
            "created": self.created,
            "confirmed_at": self.confirmed_at,
            "ended_at": self.ended_at,
            "timeout_at": self.timeout_at,
            "max_duration": self.max_duration,
            "end_reason": self.end_reason,
            "caller": {
                "tag": self.from_tag,
                "contact": self.caller_contact,
                "cseq": self.caller_cseq,
                "source": _source_text(self.caller_source),
            },
            "callee": {
                "tag": self.to_tag,
                "contact": self.callee_contact,
                "cseq": self.callee_cseq,
                "early_tags": list(self.early_to_tags),
            },
            "route_set": list(self.route_set),
            "vars": {str(k): _jsonable(v) for k, v in vars_.items()} if vars_ else {},
        }

    def __repr__(self) -> str:
        return (f"<Dialog {self.id} {self.state.name} call_id={self.call_id!r} "
                f"tags={self.from_tag!r}/{self.to_tag!r}>")


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _source_text(source: Any) -> str | None:
    if source is None:
        return None
    proto = getattr(source, "proto", None)
    ip = getattr(source, "ip", None)
    port = getattr(source, "port", None)
    if proto is None or ip is None or port is None:
        return str(source)
    host = f"[{ip}]" if ":" in ip else ip
    return f"{proto}:{host}:{port}"


def _first_contact(msg: Any) -> str | None:
    """The URI of the first Contact as written; None if there is none (or ``*``).

    Cut out with ``str.find`` (this runs for every INVITE and 2xx): the URI is kept for
    listing and for later requests, not acted on here, so it is not validated. A
    value with a quoted display name or several contacts goes through the parser.
    """
    value = msg.header("contact")
    if value is None:
        return None
    if '"' in value or "," in value:
        try:
            contacts = msg.contacts
        except SipParseError:
            return None
        uri = getattr(contacts[0], "uri", None) if contacts else None  # ContactStar: none
        return uri.raw if uri is not None else None
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        uri_text = value[lt + 1:gt].strip() if gt > lt else ""
    else:
        uri_text = value.partition(";")[0].strip()
    return uri_text if uri_text and uri_text != "*" else None


def _record_route_values(msg: Any) -> list[str]:
    """Every Record-Route value as written, top first (one per element of a
    comma-separated line)."""
    out: list[str] = []
    for line in msg.header_all("record-route"):
        if "," in line:
            out.extend(split_values(line))
        else:
            out.append(line)
    return out


def _match_one(dlg: Dialog, from_tag: str, to_tag: str) -> tuple[Dialog, str] | None:
    if from_tag == dlg.from_tag:
        if to_tag == dlg.to_tag or (dlg._early_tags is not None and to_tag in dlg._early_tags):
            return dlg, DOWNSTREAM
    if to_tag == dlg.from_tag:
        if from_tag == dlg.to_tag or (dlg._early_tags is not None
                                      and from_tag in dlg._early_tags):
            return dlg, UPSTREAM
    return None


#: ``side`` of an :class:`InDialogRequest` toward the callee, and toward the caller.
CALLEE = "callee"
CALLER = "caller"


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """A request the proxy sends inside a dialog itself, toward one party, as that
    party's peer would (RFC 3261 §12.2.1.1): Kamailio's ``dlg_end_dlg`` BYEs.

    ``routes`` are the Route values in order, ``next_hop`` the URI it is sent to (the
    first Route when that is a loose router, else the Request-URI), ``source`` the
    address it came from (the caller's, or None) when the request may be sent there
    instead (no proxy between us and that party: symmetric signalling, RFC 3581 §4).
    """

    side: str
    method: str
    ruri: str
    routes: tuple[str, ...]
    next_hop: str
    call_id: str
    from_uri: str
    from_tag: str
    to_uri: str
    to_tag: str
    cseq: int
    source: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: what was sent (the management API's answer)."""
        return {"side": self.side, "method": self.method, "ruri": self.ruri,
                "route": list(self.routes), "next_hop": self.next_hop,
                "from": f"<{self.from_uri}>;tag={self.from_tag}",
                "to": f"<{self.to_uri}>;tag={self.to_tag}", "cseq": self.cseq,
                "source": _source_text(self.source)}


def _route_uri(value: str) -> Any:
    """The URI of one Route / Record-Route value, or None when it cannot be read."""
    try:
        return parse_name_addr(value, "Route").uri
    except SipParseError:
        return None


def _beyond_us(route_set: list[str], is_myself: Callable[[Any], bool]) -> list[str]:
    """The part of a route set (in the order a request follows it) after our own
    entries: what a request we send ourselves still has to pass. Without an entry of
    ours (we did not record-route) the whole set."""
    last = -1
    for i, value in enumerate(route_set):
        uri = _route_uri(value)
        if uri is not None and is_myself(uri):
            last = i  # a double Record-Route (r2=on) gives two entries of ours
    return route_set[last + 1:]


def _target_and_routes(remote_target: str, routes: list[str]) -> tuple[str, list[str], str]:
    """§12.2.1.1: Request-URI, Route values and next hop for a remote target and a
    route set. A loose first route (``lr``): R-URI = remote target, Route = the set.
    A strict one: R-URI = that route's URI, Route = the rest plus the remote target."""
    if not routes:
        return remote_target, [], remote_target
    first = _route_uri(routes[0])
    if first is None or getattr(first, "lr", False):
        return remote_target, list(routes), str(first) if first is not None else remote_target
    ruri = str(first)
    return ruri, [*routes[1:], f"<{remote_target}>"], ruri


def end_requests(dlg: Dialog, is_myself: Callable[[Any], bool], method: str = "BYE",
                 fresh_cseq: int | None = None) -> tuple[InDialogRequest, InDialogRequest]:
    """The two requests (BYE) with which the proxy itself ends a confirmed dialog, one
    toward the callee and one toward the caller (Kamailio ``dlg.end_dlg``), built from
    what the tracker recorded (RFC 3261 §12.2.1.1, §15.1.1):

    * toward the callee, as the caller would send it: R-URI = callee contact; Route =
      the caller's route set (§12.1.2: the 2xx's Record-Route reversed) past our own
      entries; From = caller URI with ``from_tag``, To = callee with ``to_tag``; CSeq =
      the caller's last + 1 (§12.2.1.1).
    * toward the caller, as the callee would: R-URI = caller contact; Route = the
      callee's route set (§12.1.1: the Record-Route in order) past our own entries;
      From = callee URI with ``to_tag``, To = caller with ``from_tag``; CSeq = the
      callee's last + 1, or ``fresh_cseq`` (default: a random number below 2**31,
      §8.1.1.5) when the callee never sent a request. ``source`` is the caller's
      source address when no proxy lies between us and the caller.

    ``is_myself(uri)`` tells which route entries are ours (``Myself.is_myself``).

    :raises LocalProtocolError: the dialog is not confirmed (state 3 or 4) — an early
        dialog is ended by CANCEL, not BYE (§15), and Kamailio refuses too — or a
        contact is missing.
    """
    if dlg.state is not _CONFIRMED and dlg.state is not _CONFIRMED_NA:
        raise LocalProtocolError(
            f"dialog {dlg.id} is {dlg.state.name}, not confirmed: only a confirmed dialog "
            f"can be ended with BYE (§15; an early one is ended by CANCEL)")
    if dlg.to_tag is None or dlg.callee_contact is None or dlg.caller_contact is None:
        raise LocalProtocolError(f"dialog {dlg.id}: no {'callee' if dlg.caller_contact else 'caller'}"
                                 f" contact recorded, cannot send {method} (§12.2.1.1)")
    call_id = dlg.call_id
    # Toward the callee: the caller's route set, reversed Record-Route (§12.1.2).
    ruri, routes, hop = _target_and_routes(
        dlg.callee_contact, _beyond_us(dlg.route_set[::-1], is_myself))
    to_callee = InDialogRequest(CALLEE, method, ruri, tuple(routes), hop, call_id,
                                dlg.from_uri, dlg.from_tag, dlg.to_uri, dlg.to_tag,
                                dlg.caller_cseq + 1)
    # Toward the caller: the callee's route set, Record-Route in order (§12.1.1).
    beyond = _beyond_us(list(dlg.route_set), is_myself)
    ruri, routes, hop = _target_and_routes(dlg.caller_contact, beyond)
    if dlg.callee_cseq is not None:
        cseq = dlg.callee_cseq + 1
    else:
        cseq = fresh_cseq if fresh_cseq is not None else secrets.randbelow(2**31 - 1) + 1
    to_caller = InDialogRequest(CALLER, method, ruri, tuple(routes), hop, call_id,
                                dlg.to_uri, dlg.to_tag, dlg.from_uri, dlg.from_tag, cseq,
                                dlg.caller_source if not beyond else None)
    return to_callee, to_caller


class DialogTracker:
    """The INVITE dialogs this proxy relays, their states and their timeouts.

    :param default_timeout: seconds a confirmed dialog lives without in-dialog requests
        (Kamailio ``default_timeout``, 12 h); each in-dialog request re-arms it.
    :param early_timeout: seconds an unconfirmed or early dialog may wait for its 2xx
        (Kamailio ``early_timeout``).
    :param noack_timeout: seconds from the 2xx to the ACK (Kamailio ``noack_timeout``).
        A proxy that does not Record-Route never sees the ACK: such dialogs end here.
    :param end_timeout: seconds a terminated dialog stays matchable before it is
        forgotten (Kamailio ``end_timeout`` is 300; 64*T1 covers BYE retransmissions).
    :param id_prefix: start of every dialog id; default: 8 random hex digits and ".",
        so ids stay unique across restarts and processes (CDRs keep them).
    """

    __slots__ = ("default_timeout", "early_timeout", "noack_timeout", "end_timeout",
                 "_id_prefix", "_ids", "_seq", "_by_id", "_by_call", "_heap",
                 "_listeners", "_counts", "_processed", "_expired", "_failed",
                 "listener_errors")

    def __init__(self, default_timeout: float = 43200.0, early_timeout: float = 300.0, *,
                 noack_timeout: float = 60.0, end_timeout: float = 32.0,
                 id_prefix: str | None = None) -> None:
        for name, value in (("default_timeout", default_timeout),
                            ("early_timeout", early_timeout),
                            ("noack_timeout", noack_timeout), ("end_timeout", end_timeout)):
            if not value >= 0:  # also refuses NaN
                raise LocalProtocolError(f"{name} must be a number of seconds >= 0, not {value!r}")
        self.default_timeout = float(default_timeout)
        self.early_timeout = float(early_timeout)
        self.noack_timeout = float(noack_timeout)
        self.end_timeout = float(end_timeout)
        self._id_prefix = id_prefix if id_prefix is not None else secrets.token_hex(4) + "."
        self._ids = count(1)
        self._seq = count()
        self._by_id: dict[str, Dialog] = {}
        # Call-ID -> the dialog, or a list of them when several share the Call-ID.
        self._by_call: dict[str, Dialog | list[Dialog]] = {}
        self._heap: list[tuple[float, int, Dialog]] = []
        self._listeners: list[DialogListener] = []
        self._counts = [0] * (max(DialogState) + 1)
        self._processed = 0
        self._expired = 0
        self._failed = 0
        #: Exceptions raised by listeners (logged with their traceback, then ignored).
        self.listener_errors = 0

    # -- the proxy's inputs ---------------------------------------------------------------

    def create(self, invite: Any, now: float) -> Dialog:
        """Start tracking the dialog of an initial INVITE being relayed (Kamailio
        ``dlg_manage``). The dialog is UNCONFIRMED and times out after
        ``early_timeout`` unless answered.

        A spiral (the same INVITE — Call-ID, From tag, CSeq — back through this proxy
        while its dialog is still unanswered) returns the dialog already tracked, as
        Kamailio's ``detect_spirals`` does.

        :raises LocalProtocolError: for a request that is not an INVITE or has a To tag
            (in-dialog requests go to :meth:`on_request`).
        :raises SipParseError: when From, To, Call-ID or CSeq cannot be read.
        """
        if invite.method != "INVITE":
            raise LocalProtocolError(f"dialogs are created by an INVITE, not {invite.method}")
        to = invite.to
        if to.tag is not None:
            raise LocalProtocolError("create() needs an initial INVITE; this one has a To tag "
                                     "(in-dialog: use on_request)")
        call_id = invite.call_id
        from_ = invite.from_
        from_tag = from_.tag or ""  # RFC 2543 peers may omit it
        cseq = invite.cseq.seq
        found = self._by_call.get(call_id)
        if found is not None:
            for old in (found,) if type(found) is Dialog else found:
                if (old.from_tag == from_tag and old.caller_cseq == cseq
                        and (old.state is _UNCONFIRMED or old.state is _EARLY)):
                    return old
        dlg = Dialog(f"{self._id_prefix}{next(self._ids):x}", call_id, from_tag,
                     from_.uri.raw, to.uri.raw, invite.ruri, _first_contact(invite), cseq,
                     invite.source, now, now + self.early_timeout)
        self._by_id[dlg.id] = dlg
        if found is None:
            self._by_call[call_id] = dlg
        elif type(found) is Dialog:
            self._by_call[call_id] = [found, dlg]
        else:
            found.append(dlg)
        self._push(dlg, dlg.timeout_at)
        self._processed += 1
        self._counts[_UNCONFIRMED] += 1
        self._notify(dlg, None, _UNCONFIRMED)
        return dlg

    def on_response(self, dlg: Dialog, res: Any, now: float) -> None:
        """A response to the dialog's INVITE (RFC 3261 §12.1, §16.7).

        Call it for every 1xx and 2xx received on any branch, and for the final non-2xx
        response forwarded upstream — not for each branch that fails, or a fork would
        end the dialog while other branches still ring. Responses to other methods are
        ignored.

        * 101-199 with a To tag: EARLY. The first tag becomes ``to_tag``; tags of other
          fork branches are matched too while early.
        * 2xx: CONFIRMED_NA; ``to_tag``, ``callee_contact`` and ``route_set`` (its
          Record-Route) come from it. Later 2xx responses (retransmissions, other
          branches, RFC 6026) change nothing: the first confirmed To tag is kept.
        * 300-699: TERMINATED, ``end_reason`` "rejected <status>" ("cancelled" for 487),
          unless a 2xx came first; ``to_tag``, if still None, is the response's.
        """
        if res.cseq.method != "INVITE":
            return
        status = res.status
        tag = None
        if status < 200:
            if status > 100:
                tag = res.to.tag
            event = _EV_PROVISIONAL if tag is not None else _EV_PROVISIONAL_UNTAGGED
        elif status < 300:
            event = _EV_SUCCESS
        else:
            event = _EV_FAILURE
        old = dlg.state
        new = _NEXT[old][event]
        if new is None:
            return
        if event is _EV_PROVISIONAL:
            if dlg.to_tag is None:
                dlg.to_tag = tag
                self._learn_callee(dlg, res)
            elif tag != dlg.to_tag:
                # §12.1 / §16.7: each fork branch that answers with its own tag is an
                # early dialog of its own; match them all until one is confirmed.
                extra = dlg._early_tags
                if extra is None:
                    dlg._early_tags = [tag]
                elif tag not in extra:
                    extra.append(tag)
        elif event is _EV_SUCCESS:
            dlg.to_tag = res.to.tag
            dlg._early_tags = None
            self._learn_callee(dlg, res)
            dlg.confirmed_at = now
            timeout_at = now + self.noack_timeout
            if dlg.max_duration is not None:
                timeout_at = min(timeout_at, now + dlg.max_duration)
            self._set_timeout_at(dlg, timeout_at)
        else:  # FAILURE
            if dlg.to_tag is None:
                # The failure's To tag, for the failed-call record (Kamailio's acc logs
                # it too); the ACK for it (§17.1.1.3) then matches the ended dialog.
                dlg.to_tag = res.to.tag
            self._fail(dlg, status, now)
            return
        if new is not old:
            self._set_state(dlg, new)

    def fail(self, dlg: Dialog, status: int, now: float) -> None:
        """A final 300-699 the proxy itself sent upstream for the INVITE (the 408 of
        Timer C or of ``fr_inv_timer``, a 487, a 503 when no branch could be sent ...):
        what :meth:`on_response` does for a received one, without a parsed response.
        No effect once a 2xx was seen or the dialog ended.

        :raises LocalProtocolError: for a status outside 300-699.
        """
        if not 300 <= status <= 699:
            raise LocalProtocolError(f"a failed INVITE ends with 300-699, not {status!r}")
        if _NEXT[dlg.state][_EV_FAILURE] is not None:
            self._fail(dlg, status, now)

    def match(self, req: Any) -> tuple[Dialog, str] | None:
        """The dialog of an in-dialog request (§12.2: Call-ID, and the tags in either
        order) and its direction, :data:`DOWNSTREAM` (caller to callee) or
        :data:`UPSTREAM`; None for a request without a To tag or of no known dialog.

        Terminated dialogs still match for ``end_timeout`` (check ``dlg.state``).

        :raises SipParseError: when From, To or Call-ID cannot be read.
        """
        to_tag = req.to.tag
        if to_tag is None:
            return None
        found = self._by_call.get(req.call_id)
        if found is None:
            return None
        from_tag = req.from_.tag or ""
        if type(found) is Dialog:
            return _match_one(found, from_tag, to_tag)
        # Newest first: a live dialog beats an older terminated one with the same tags.
        for dlg in reversed(found):
            hit = _match_one(dlg, from_tag, to_tag)
            if hit is not None:
                return hit
        return None

    def on_request(self, req: Any, now: float) -> Dialog | None:
        """An in-dialog request seen by the proxy; returns its dialog, or None if it
        belongs to none.

        * ACK from the caller: CONFIRMED_NA -> CONFIRMED.
        * BYE, either direction (§15): TERMINATED, ``end_reason`` "bye".
        * Any other request (re-INVITE, UPDATE, INFO, PRACK ...): the sender's CSeq is
          recorded; a re-INVITE or UPDATE with a Contact refreshes the sender's contact
          (§12.2, target refresh); in CONFIRMED the timeout is re-armed (Kamailio resets
          it on every sequential request) unless ``set_timeout`` fixed it.

        :raises SipParseError: when From, To, Call-ID or CSeq cannot be read.
        """
        hit = self.match(req)
        if hit is None:
            return None
        dlg, direction = hit
        method = req.method
        if method == "BYE":
            event = _EV_BYE
        elif method == "ACK" and direction is DOWNSTREAM:
            event = _EV_ACK
        else:
            event = _EV_REQUEST
        old = dlg.state
        new = _NEXT[old][event]
        if new is None:
            return dlg
        seq = req.cseq.seq
        if direction is DOWNSTREAM:
            if seq > dlg.caller_cseq:
                dlg.caller_cseq = seq
        elif dlg.callee_cseq is None or seq > dlg.callee_cseq:
            dlg.callee_cseq = seq
        if event is _EV_BYE:
            self._end(dlg, "bye", now)
            return dlg
        if method == "INVITE" or method == "UPDATE":
            contact = _first_contact(req)
            if contact is not None:
                if direction is DOWNSTREAM:
                    dlg.caller_contact = contact
                else:
                    dlg.callee_contact = contact
        if new is _CONFIRMED:
            if dlg.max_duration is None:
                self._set_timeout_at(dlg, now + self.default_timeout)
            elif old is _CONFIRMED_NA:
                self._set_timeout_at(dlg, dlg.confirmed_at + dlg.max_duration)
        if new is not old:
            self._set_state(dlg, new)
        return dlg

    def terminate(self, dlg: Dialog, reason: str, now: float) -> None:
        """End a dialog from the script or a module (Kamailio ``dlg.end_dlg``; sending
        the BYEs is the caller's business). No effect on a terminated dialog."""
        if _NEXT[dlg.state][_EV_TERMINATE] is None:
            return
        self._end(dlg, reason, now)

    def set_timeout(self, dlg: Dialog, seconds: float, now: float) -> None:
        """Fix when a dialog ends (Kamailio ``dlg_set_timeout``; a prepaid limit).

        Before the 2xx: the dialog will end ``seconds`` after it is answered. Once
        answered: ``seconds`` from ``now``. In-dialog requests do not re-arm a fixed
        timeout. No effect on a terminated dialog.

        :raises LocalProtocolError: for a negative or NaN ``seconds``.
        """
        if not seconds >= 0:
            raise LocalProtocolError(f"timeout must be seconds >= 0, not {seconds!r}")
        state = dlg.state
        if state is _TERMINATED:
            return
        if dlg.confirmed_at is None:
            dlg.max_duration = float(seconds)
            return
        end = now + seconds
        dlg.max_duration = end - dlg.confirmed_at
        if state is _CONFIRMED_NA:
            end = min(end, dlg.confirmed_at + self.noack_timeout)
        self._set_timeout_at(dlg, end)

    def expire(self, now: float) -> list[Dialog]:
        """Time out the dialogs whose ``timeout_at`` is ``now`` or earlier: they become
        TERMINATED (``end_reason`` "timeout") and are returned, oldest deadline first.
        Terminated dialogs whose ``end_timeout`` has passed are forgotten (no longer
        matched, listed or counted). O(k log n) for k heap entries due.
        """
        heap = self._heap
        expired: list[Dialog] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            dlg = entry[2]
            if dlg._entry is not entry:
                continue  # stale: the deadline moved earlier and was pushed again
            dlg._entry = None
            due = self._due(dlg)
            if due > now:
                self._push(dlg, due)  # the deadline moved later since this was pushed
            elif _NEXT[dlg.state][_EV_TIMEOUT] is None:  # TERMINATED: done lingering
                self._forget(dlg)
            else:
                self._expired += 1
                expired.append(dlg)
                self._end(dlg, "timeout", now)
        return expired

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has work next: the earliest ``timeout_at`` of a live
        dialog, or the time a terminated one is to be forgotten; None when there is
        nothing to wait for. The proxy arms one timer for it."""
        heap = self._heap
        while heap:
            entry = heap[0]
            dlg = entry[2]
            if dlg._entry is not entry:
                heapq.heappop(heap)
                continue
            due = self._due(dlg)
            if due > entry[0]:
                new = (due, next(self._seq), dlg)
                dlg._entry = new
                heapq.heapreplace(heap, new)
                continue
            return entry[0]
        return None

    # -- listeners, lookups, statistics -----------------------------------------------------

    def add_listener(self, fn: DialogListener) -> None:
        """Call ``fn(dialog, old_state, new_state)`` on every state change, and with
        ``old_state`` None when a dialog is created. Listeners run after the tracker
        has updated itself. A listener that raises is a bug in that module: the error
        is logged with its traceback and counted in ``listener_errors``, and the call
        goes on (a broken accounting hook must not stop calls being routed)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: DialogListener) -> None:
        """Stop calling ``fn``; no effect if it was not added."""
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def get(self, key: Any) -> Dialog | None:
        """The dialog with this id (a str), or, given an in-dialog request, the dialog it
        belongs to; None if unknown. Terminated dialogs are found until forgotten."""
        if isinstance(key, str):
            return self._by_id.get(key)
        hit = self.match(key)
        return hit[0] if hit is not None else None

    def __len__(self) -> int:
        """Live (not terminated) dialogs."""
        c = self._counts
        return c[1] + c[2] + c[3] + c[4]

    def __iter__(self) -> Iterator[Dialog]:
        """Live dialogs, oldest first (a snapshot: the tracker may change meanwhile)."""
        return iter([d for d in self._by_id.values() if d.state is not _TERMINATED])

    @property
    def stats(self) -> dict[str, int]:
        """Kamailio's dialog statistics: ``active`` (confirmed, ACK seen or not),
        ``early``, ``processed`` (created since start), ``expired`` (timed out) and
        ``failed`` (ended by a 3xx-6xx, 487 included)."""
        c = self._counts
        return {
            "active": c[_CONFIRMED_NA] + c[_CONFIRMED],
            "early": c[_EARLY],
            "processed": self._processed,
            "expired": self._expired,
            "failed": self._failed,
        }

    def as_dict(self, dlg: Dialog) -> dict[str, Any]:
        """``dlg.to_dict()``: one entry of the management API's dialog list."""
        return dlg.to_dict()

    # -- internals --------------------------------------------------------------------------

    def _learn_callee(self, dlg: Dialog, res: Any) -> None:
        """Remote target and route set from the response that made the dialog
        (§12.1.2: the route set is taken from Record-Route, the target from Contact)."""
        contact = _first_contact(res)
        if contact is not None:
            dlg.callee_contact = contact
        dlg.route_set = _record_route_values(res)

    def _due(self, dlg: Dialog) -> float:
        if dlg.state is _TERMINATED:
            return dlg.ended_at + self.end_timeout  # type: ignore[operator]
        return dlg.timeout_at

    def _push(self, dlg: Dialog, due: float) -> None:
        entry = (due, next(self._seq), dlg)
        dlg._entry = entry
        heapq.heappush(self._heap, entry)

    def _set_timeout_at(self, dlg: Dialog, at: float) -> None:
        dlg.timeout_at = at
        self._reschedule(dlg, at)

    def _reschedule(self, dlg: Dialog, due: float) -> None:
        # Later than the current entry: leave it, it is re-pushed when it surfaces.
        entry = dlg._entry
        if entry is None or due < entry[0]:
            self._push(dlg, due)

    def _end(self, dlg: Dialog, reason: str, now: float) -> None:
        dlg.ended_at = now
        dlg.end_reason = reason
        dlg._early_tags = None
        self._reschedule(dlg, now + self.end_timeout)
        self._set_state(dlg, _TERMINATED)

    def _fail(self, dlg: Dialog, status: int, now: float) -> None:
        self._failed += 1
        self._end(dlg, "cancelled" if status == 487 else f"rejected {status}", now)

    def _forget(self, dlg: Dialog) -> None:
        dlg._entry = None
        if self._by_id.get(dlg.id) is dlg:
            del self._by_id[dlg.id]
        found = self._by_call.get(dlg.call_id)
        if found is dlg:
            del self._by_call[dlg.call_id]
        elif type(found) is list and dlg in found:
            found.remove(dlg)
            if len(found) == 1:
                self._by_call[dlg.call_id] = found[0]

    def _set_state(self, dlg: Dialog, new: DialogState) -> None:
        old = dlg.state
        counts = self._counts
        counts[old] -= 1
        counts[new] += 1
        dlg.state = new
        self._notify(dlg, old, new)

    def _notify(self, dlg: Dialog, old: DialogState | None, new: DialogState) -> None:
        for fn in self._listeners:
            try:
                fn(dlg, old, new)
            except Exception:
                self.listener_errors += 1
                log.exception("dialog listener %r failed on %r (%s -> %s)", fn, dlg,
                              old.name if old is not None else None, new.name)
