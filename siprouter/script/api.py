# SPDX-License-Identifier: Apache-2.0
"""What an operator's routing script sees: ``Request``, ``Response`` and ``Context``.

A routing script is a Python module with::

    async def request_route(req: Request, ctx: Context) -> None: ...
    async def reply_route(res: Response, ctx: Context) -> None: ...     # optional

(plain ``def`` works too and is a little cheaper). ``request_route`` must end the
handling of the request with one *terminal verb*: ``req.reply(...)``, ``req.forward(...)``
or ``req.drop()``. A second terminal verb on the same request is an error
(``LocalProtocolError``). A request the script leaves without one is dropped, with a
debug log line. ``reply_route`` sees every response before it is forwarded back by
Via; ``res.drop()`` stops it.

The verbs only *record* what the script decided; the proxy core carries it out when the
route function returns. That keeps scripts testable without sockets
(``siprouter.script.testing``) and keeps the order of effects obvious.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from siprouter.proxy.actions import (
    DROP,
    BranchTarget,
    Drop,
    Forward,
    ProxyRequest,
    ProxyResponse,
    Relay,
    Reply,
)
from siprouter.proxy.core import ProxyCore
from siprouter.proxy.dialogs import DialogTracker
from siprouter.proxy.myself import Myself
from siprouter.proxy.tm import TransactionManager
from siprouter.sip.errors import LocalProtocolError
from siprouter.transaction.timers import Timers

if TYPE_CHECKING:
    from siprouter.transport.types import Source

__all__ = ["Request", "Response", "Context", "Reply", "Forward", "Relay", "Drop", "DROP",
           "make_proxy_core", "PHASES"]

#: Where each verb means something. A verb used elsewhere raises LocalProtocolError naming
#: the verb and the phase (a reply() in on_branch, a forward() in on_failure …).
PHASES: dict[str, frozenset[str]] = {
    "reply": frozenset({"request_route", "on_failure"}),
    "redirect": frozenset({"request_route", "on_failure"}),
    "forward": frozenset({"request_route"}),
    "relay": frozenset({"request_route", "on_failure"}),
    "append_branch": frozenset({"request_route", "on_failure"}),
    "drop": frozenset({"request_route", "on_branch"}),
    "record_route": frozenset({"request_route"}),
    "track_dialog": frozenset({"request_route"}),
}

_WHY = {
    "on_branch": "on_branch edits one outgoing branch; the transaction answers and relays",
    "on_failure": "on_failure runs after the transaction was relayed: it may relay() new "
                  "branches or reply()",
    "request_route": "",
}


#: ``relay()`` with no arguments: one shared, never-modified outcome.
_PLAIN_RELAY = Relay()


def _check_phase(verb: str, phase: str) -> None:
    if phase not in PHASES[verb]:
        allowed = " and ".join(sorted(PHASES[verb]))
        why = _WHY.get(phase, "")
        raise LocalProtocolError(
            f"{verb}() cannot be used in {phase}" + (f" ({why})" if why else "")
            + f"; it is meant for {allowed}")


class Request(ProxyRequest):
    """A received request, with the verbs of a routing script.

    Reading: ``method``, ``ruri``, ``uri`` (parsed R-URI), ``header(name)``,
    ``header_all(name)``, typed headers (``from_``, ``to``, ``call_id``, ``cseq``,
    ``vias``, ``routes``, ``contacts``, ``max_forwards`` …), ``body``, ``source``
    (``.proto``, ``.ip``, ``.port``).

    Editing: ``set_ruri(uri)``, ``destination`` (``$du``), ``add_header``,
    ``set_header``, ``remove_header``.

    Terminal verbs: ``reply``, ``forward``, ``drop``.
    """

    __slots__ = ()

    source: Source

    def _phase(self, verb: str) -> None:
        _check_phase(verb, getattr(self, "phase", "request_route"))

    def _settle(self, outcome: Reply | Forward | Relay | Drop) -> None:
        if getattr(self, "outcome", None) is not None:
            raise LocalProtocolError(
                f"{self.method} already handled ({self.outcome!r}); a request takes one of "
                "reply(), redirect(), forward(), relay() or drop(), once"
            )
        self.outcome = outcome

    def reply(self, status: int, reason: str | None = None, *,
              headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
              body: bytes = b"") -> None:
        """Answer statelessly with ``status`` (RFC 3261 §8.2.6; a To-tag is added).

        An ACK is never answered (§17.1.1.3): replying to one is an error.
        """
        self._phase("reply")
        if self.method == "ACK":
            raise LocalProtocolError("an ACK is never answered (RFC 3261 §17); use drop()")
        if not isinstance(status, int) or not 100 <= status <= 699:
            raise LocalProtocolError(f"reply status must be an int in 100-699, not {status!r}")
        if isinstance(headers, Mapping):
            headers = headers.items()
        self._settle(Reply(status, reason, tuple(headers), body))

    def forward(self, destination: str | None = None) -> None:
        """Forward statelessly (RFC 3261 §16.11) to ``destination`` (a SIP URI such as
        ``"sip:10.0.0.2:5060;transport=tcp"``), else to ``req.destination``, else by
        Route or the Request-URI. Max-Forwards is decremented; at 0 the proxy answers 483."""
        self._phase("forward")
        if destination is not None:
            destination = str(destination)
        self._settle(Forward(destination))

    def relay(self, *targets: str, on_branch: Any = None, on_reply: Any = None,
              on_failure: Any = None, serial: bool = False, fr_timer: float | None = None,
              fr_inv_timer: float | None = None, on_3xx: str = "forward") -> None:
        """Relay statefully (RFC 3261 §16; Kamailio ``t_relay``).

        ``targets``: Request-URIs of the branches; none: one branch to ``req.ruri`` (plus
        those added with ``append_branch``). Each goes to ``req.destination`` when set,
        else by Route or its Request-URI. ``serial=True`` tries one q-value group at a
        time, highest first (§16.6); otherwise all branches go at once (parallel forking).

        Handlers, each called with ``ctx`` last, plain or ``async def``:
        ``on_branch(req, ctx)`` for each outgoing branch (edit it, or ``req.drop()`` it);
        ``on_reply(res, ctx)`` for each response of this transaction;
        ``on_failure(req, res, ctx)`` when every branch failed (``res``: the best
        response): ``req.relay(...)`` new branches or ``req.reply(...)``; doing nothing
        sends ``res`` upstream.

        ``on_3xx``: ``"forward"`` (a 3xx is a final response like any other),
        ``"block"`` (the caller gets 404 instead, as Kamailio's WITH_BLOCK3XX) or
        ``"follow"`` (the 3xx Contacts become new branches, §16.5).
        ``fr_timer`` / ``fr_inv_timer``: this transaction's Timer B/F and Timer C.

        A CANCEL is matched to its INVITE's transaction (§16.10); an ACK is forwarded
        without a transaction."""
        self._phase("relay")
        if not targets and on_branch is None and on_reply is None and on_failure is None \
                and not serial and fr_timer is None and fr_inv_timer is None \
                and on_3xx == "forward":
            self._settle(_PLAIN_RELAY)  # the common case: nothing to check or build
            return
        if on_3xx not in ("forward", "block", "follow"):
            raise LocalProtocolError(f'on_3xx must be "forward", "block" or "follow", not {on_3xx!r}')
        for name, value in (("fr_timer", fr_timer), ("fr_inv_timer", fr_inv_timer)):
            if value is not None and (not isinstance(value, int | float) or value <= 0):
                raise LocalProtocolError(f"{name} must be a positive number of seconds, not {value!r}")
        for name, fn in (("on_branch", on_branch), ("on_reply", on_reply),
                         ("on_failure", on_failure)):
            if fn is not None and not callable(fn):
                raise LocalProtocolError(f"{name} must be a function, not {fn!r}")
        self._settle(Relay(tuple(BranchTarget(str(t)) for t in targets), on_branch=on_branch,
                           on_reply=on_reply, on_failure=on_failure, serial=serial,
                           fr_timer=fr_timer, fr_inv_timer=fr_inv_timer, on_3xx=on_3xx))

    def append_branch(self, uri: str, *, destination: str | None = None,
                      q: float | None = None, path: Iterable[str] = ()) -> None:
        """Add a branch for the next ``relay()`` (Kamailio ``append_branch``): its
        Request-URI, optional next hop, q-value (for ``relay(serial=True)``) and Path
        URIs (RFC 3327: they become the branch's topmost Route headers)."""
        self._phase("append_branch")
        if q is not None and not (isinstance(q, int | float) and 0 <= q <= 1):
            raise LocalProtocolError(f"q must be a number from 0 to 1, not {q!r}")
        if isinstance(path, str):
            raise LocalProtocolError("path is a sequence of URIs, not one string")
        if getattr(self, "branches", None) is None:
            self.branches = []
        self.branches.append(BranchTarget(str(uri), None if destination is None else str(destination),
                                          None if q is None else float(q),
                                          tuple(str(p) for p in path)))

    def record_route(self) -> None:
        """Put this proxy on the dialog's route (RFC 3261 §16.6 step 4, Kamailio
        ``record_route``): a Record-Route with ``lr``, two when the request leaves on
        another transport or interface than it came in on."""
        self._phase("record_route")
        self.record_route_on = True

    def track_dialog(self) -> None:
        """Track the dialog this INVITE creates (Kamailio ``dlg_manage``); see
        ``ctx.dialogs``."""
        self._phase("track_dialog")
        if self.method != "INVITE" or self.in_dialog:
            raise LocalProtocolError("track_dialog() is for an initial INVITE")
        self.track_dialog_on = True

    def redirect(self, *contacts: str, status: int = 302, reason: str | None = None) -> None:
        """Answer as a redirect server (RFC 3261 §8.3): ``status`` (3xx) with one Contact
        per URI (a ``;q=`` parameter may follow a URI: ``"<sip:a@b>;q=0.5"``)."""
        self._phase("redirect")
        if not isinstance(status, int) or not 300 <= status <= 399:
            raise LocalProtocolError(f"redirect status must be 300-399, not {status!r}")
        if not contacts:
            raise LocalProtocolError("redirect() needs at least one Contact URI")
        values = []
        for c in contacts:
            c = str(c)
            values.append(c if c.startswith("<") or "<" in c else f"<{c}>")
        self.reply(status, reason, headers=[("Contact", ", ".join(values))])

    @property
    def is_canceled(self) -> bool:
        """True when the caller CANCELed this request's transaction (Kamailio
        ``t_is_canceled``), e.g. in ``on_failure``."""
        txn = getattr(self, "transaction", None)
        return bool(txn is not None and txn.canceled)

    def drop(self) -> None:
        """Send nothing (in ``on_branch``: do not send this branch)."""
        self._phase("drop")
        self._settle(DROP)

    def set_destination(self, uri: str | None) -> None:
        """Set where the request goes next without changing the R-URI (Kamailio ``$du``)."""
        self.destination = None if uri is None else str(uri)

    def max_forwards_exceeded(self) -> bool:
        """True when Max-Forwards is 0: the request must not be forwarded (§16.3 step 2)."""
        mf = self.max_forwards
        return mf is not None and mf <= 0

    @property
    def handled(self) -> bool:
        return getattr(self, "outcome", None) is not None


class Response(ProxyResponse):
    """A received response, in ``reply_route``. ``drop()`` keeps it from being forwarded."""

    __slots__ = ()

    source: Source

    def drop(self) -> None:
        """Do not send this response on. In ``on_reply`` only a provisional response can
        be dropped (the transaction needs its final response)."""
        phase = getattr(self, "phase", "reply_route")
        if phase == "on_failure":
            raise LocalProtocolError("drop() cannot be used on the response in on_failure "
                                     "(reply() or relay() the request instead)")
        if phase == "on_reply" and self.status >= 200:
            raise LocalProtocolError(
                f"drop() of a final response ({self.status}) cannot be used in on_reply; "
                "a provisional can be dropped, a final one is handled in on_failure")
        self.outcome = DROP

    @property
    def dropped(self) -> bool:
        return getattr(self, "outcome", None) is not None


class Context:
    """The server as a script sees it; one per server, shared by every call.

    ``params``: the ``[routing.params]`` table of the configuration.
    ``domains``: the domains this server is responsible for (configured ones only).
    ``next_hop``: the configured outbound next hop URI, or None.
    ``log``: the script's logger.

    The feature modules the server runs are attributes: ``ctx.auth``, ``ctx.registrar``,
    ``ctx.location`` … (``siprouter.modules``); ``ctx.modules`` maps their names to them.
    """

    def __init__(self, core: ProxyCore | None = None, *, params: Mapping[str, Any] | None = None,
                 next_hop: str | None = None, log: logging.Logger | None = None,
                 modules: Mapping[str, Any] | None = None) -> None:
        self._core = core
        self.params = dict(params or {})
        self.next_hop = next_hop
        self.log = log or logging.getLogger("siprouter.script")
        self.modules: dict[str, Any] = dict(modules or {})
        for name, module in self.modules.items():
            if name in _CONTEXT_NAMES:
                raise LocalProtocolError(f"a module cannot be called {name!r}: Context has that name")
            setattr(self, name, module)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not set: a module this server does not run.
        if name.startswith("_"):
            raise AttributeError(name)
        loaded = ", ".join(sorted(self.__dict__.get("modules", {}))) or "none"
        raise AttributeError(
            f"ctx.{name}: no module {name!r} is loaded in this server (loaded: {loaded}); "
            "modules are set up from siprouter.toml")

    @property
    def dialogs(self) -> DialogTracker | None:
        """The dialog tracker (``len(ctx.dialogs)``, ``ctx.dialogs.match(req)`` …);
        dialogs are tracked for INVITEs whose script called ``req.track_dialog()``."""
        tm = self._core.tm if self._core else None
        return tm.dialogs if tm is not None else None

    @property
    def domains(self) -> frozenset[str]:
        return self._core.local.domains if self._core else frozenset()

    def is_myself(self, uri_or_host: Any, port: int | None = None) -> bool:
        """Kamailio's ``myself``: is this URI (or host) one of ours — a configured domain,
        a listen address (and port, when given) or the host name?"""
        if self._core is None:
            return False
        return self._core.local.is_myself(uri_or_host, port)

    def transaction_of(self, req: Request) -> Any:
        """The server transaction ``req`` belongs to (Kamailio ``t_check_trans``): for a
        CANCEL, its INVITE's (§9.2); None when there is none."""
        tm = self._core.tm if self._core else None
        if tm is None:
            return None
        return tm.find(req)

    def loose_route(self, req: Request) -> bool:
        """Process the Route header (RFC 3261 §16.4, Kamailio ``loose_route``).

        Removes the topmost Route if it is ours; when the previous hop was a strict
        router (R-URI is ours and was a Route), restores the R-URI from the last Route.
        Sets ``req.destination`` to the next Route when one remains. Returns True when the
        request is to be routed by its Route set (no location or domain decisions)."""
        if self._core is None:
            raise LocalProtocolError("loose_route needs a running proxy core")
        return self._core.loose_route(req)


# Names a module may not take (they are Context's own).
_CONTEXT_NAMES = frozenset({"params", "next_hop", "log", "modules", "dialogs", "domains",
                            "is_myself", "transaction_of", "loose_route"})


def make_proxy_core(transport: Any, *, myself: Myself, script: Any = None,
                    params: Mapping[str, Any] | None = None, next_hop: str | None = None,
                    secret: bytes | None = None, timers: Timers | None = None,
                    timer_queue: Any = None, modules: Mapping[str, Any] | None = None) -> ProxyCore:
    """A ``ProxyCore`` that parses into this module's ``Request``/``Response`` (with the
    script verbs), hands route functions a ``Context`` (with ``modules`` as its
    attributes) and has the transaction layer and dialog tracker — what the server and
    the testing kit run."""
    core = ProxyCore(
        transport, myself=myself, script=script, request_cls=Request, response_cls=Response,
        context_factory=lambda core: Context(core, params=params, next_hop=next_hop,
                                             modules=modules),
        secret=secret)
    core.tm = TransactionManager(core, timers, queue=timer_queue, dialogs=DialogTracker())
    return core
