# SPDX-License-Identifier: Apache-2.0
"""What a routing decision looks like to the proxy core: outcomes, and the message
classes that carry them.

The script layer (``siprouter.script.api``) gives operators verbs that *record* one of
these outcomes on the request; ``ProxyCore`` carries it out when the route function
returns. Keeping the records here lets the proxy layer act on them without importing
the script layer above it (DESIGN.md: lower layers never import upper ones).
"""

from __future__ import annotations

from siprouter.sip import message as _message

__all__ = ["Reply", "Forward", "Relay", "Drop", "DROP", "BranchTarget", "ProxyRequest", "ProxyResponse"]


class Reply:
    """The script answered the request statelessly (Kamailio's ``sl_send_reply``)."""

    __slots__ = ("status", "reason", "headers", "body")

    def __init__(self, status: int, reason: str | None, headers: tuple[tuple[str, str], ...],
                 body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.reason!r})"


class Forward:
    """The script forwarded the request statelessly to ``destination`` (a SIP URI), or,
    when it is None, to the request's destination (``$du``), its Route set or its R-URI."""

    __slots__ = ("destination",)

    def __init__(self, destination: str | None) -> None:
        self.destination = destination

    def __repr__(self) -> str:
        return f"Forward({self.destination!r})"


class BranchTarget:
    """One more destination for a stateful relay (Kamailio ``append_branch``): the branch's
    Request-URI, its next hop (``$du``, None: by Route or R-URI), its q-value and its
    ``path``: the Path URIs a registrar stored with the contact (RFC 3327 §5.3), which
    become the branch's topmost Route headers, in order."""

    __slots__ = ("uri", "destination", "q", "path")

    def __init__(self, uri: str, destination: str | None = None, q: float | None = None,
                 path: tuple[str, ...] = ()) -> None:
        self.uri = uri
        self.destination = destination
        self.q = q
        self.path = path

    def __repr__(self) -> str:
        extra = f", path={self.path!r}" if self.path else ""
        return (f"BranchTarget({self.uri!r}, destination={self.destination!r}, "
                f"q={self.q!r}{extra})")


class Relay:
    """The script relayed the request statefully (Kamailio ``t_relay``): one branch per
    target, with per-transaction handlers (``on_branch``, ``on_reply``, ``on_failure``)."""

    __slots__ = ("targets", "on_branch", "on_reply", "on_failure", "serial", "fr_timer",
                 "fr_inv_timer", "on_3xx")

    def __init__(self, targets: tuple[BranchTarget, ...] = (), *, on_branch=None,
                 on_reply=None, on_failure=None, serial: bool = False,
                 fr_timer: float | None = None, fr_inv_timer: float | None = None,
                 on_3xx: str = "forward") -> None:
        self.targets = targets
        self.on_branch = on_branch
        self.on_reply = on_reply
        self.on_failure = on_failure
        self.serial = serial
        self.fr_timer = fr_timer
        self.fr_inv_timer = fr_inv_timer
        self.on_3xx = on_3xx

    def __repr__(self) -> str:
        return f"Relay({list(self.targets)!r})"


class Drop:
    """The script dropped the message: nothing is sent."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Drop()"


DROP = Drop()


class ProxyRequest(_message.Request):
    """A request on its way through the proxy: where it goes next (``destination``,
    Kamailio's ``$du``) and what was decided (``outcome``)."""

    __slots__ = ("destination", "path", "outcome", "transaction", "branches",
                 "record_route_on", "track_dialog_on", "phase")

    destination: str | None
    #: Path URIs for the Request-URI's branch (set by a registrar lookup, RFC 3327): they
    #: become its topmost Route headers when relayed statefully.
    path: tuple[str, ...]
    outcome: Reply | Forward | Relay | Drop | None
    #: The server transaction (``siprouter.proxy.tm``) this request belongs to, if any.
    transaction: object | None
    #: Extra branches added with ``append_branch`` (None: none).
    branches: list[BranchTarget] | None
    record_route_on: bool
    track_dialog_on: bool
    #: Which script function is handling it: "request_route", "on_branch", "on_failure".
    phase: str


class ProxyResponse(_message.Response):
    """A response on its way back; ``outcome`` is ``DROP`` when it must not go on."""

    __slots__ = ("outcome", "phase")

    outcome: Drop | None
    #: "reply_route" or "on_reply".
    phase: str
