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

from siprouter.proxy.actions import DROP, Drop, Forward, ProxyRequest, ProxyResponse, Reply
from siprouter.proxy.core import ProxyCore
from siprouter.proxy.myself import Myself
from siprouter.sip.errors import LocalProtocolError

if TYPE_CHECKING:
    from siprouter.transport.types import Source

__all__ = ["Request", "Response", "Context", "Reply", "Forward", "Drop", "DROP",
           "make_proxy_core"]


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

    def _settle(self, outcome: Reply | Forward | Drop) -> None:
        if getattr(self, "outcome", None) is not None:
            raise LocalProtocolError(
                f"{self.method} already handled ({self.outcome!r}); a request takes one of "
                "reply(), forward() or drop(), once"
            )
        self.outcome = outcome

    def reply(self, status: int, reason: str | None = None, *,
              headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
              body: bytes = b"") -> None:
        """Answer statelessly with ``status`` (RFC 3261 §8.2.6; a To-tag is added).

        An ACK is never answered (§17.1.1.3): replying to one is an error.
        """
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
        if destination is not None:
            destination = str(destination)
        self._settle(Forward(destination))

    def drop(self) -> None:
        """Send nothing."""
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
    """

    def __init__(self, core: ProxyCore | None = None, *, params: Mapping[str, Any] | None = None,
                 next_hop: str | None = None, log: logging.Logger | None = None) -> None:
        self._core = core
        self.params = dict(params or {})
        self.next_hop = next_hop
        self.log = log or logging.getLogger("siprouter.script")

    @property
    def domains(self) -> frozenset[str]:
        return self._core.local.domains if self._core else frozenset()

    def is_myself(self, uri_or_host: Any, port: int | None = None) -> bool:
        """Kamailio's ``myself``: is this URI (or host) one of ours — a configured domain,
        a listen address (and port, when given) or the host name?"""
        if self._core is None:
            return False
        return self._core.local.is_myself(uri_or_host, port)

    def loose_route(self, req: Request) -> bool:
        """Process the Route header (RFC 3261 §16.4, Kamailio ``loose_route``).

        Removes the topmost Route if it is ours; when the previous hop was a strict
        router (R-URI is ours and was a Route), restores the R-URI from the last Route.
        Sets ``req.destination`` to the next Route when one remains. Returns True when the
        request is to be routed by its Route set (no location or domain decisions)."""
        if self._core is None:
            raise LocalProtocolError("loose_route needs a running proxy core")
        return self._core.loose_route(req)


def make_proxy_core(transport: Any, *, myself: Myself, script: Any = None,
                    params: Mapping[str, Any] | None = None, next_hop: str | None = None,
                    secret: bytes | None = None) -> ProxyCore:
    """A ``ProxyCore`` that parses into this module's ``Request``/``Response`` (with the
    script verbs) and hands route functions a ``Context`` — what the server and the
    testing kit run."""
    return ProxyCore(
        transport, myself=myself, script=script, request_cls=Request, response_cls=Response,
        context_factory=lambda core: Context(core, params=params, next_hop=next_hop),
        secret=secret)
