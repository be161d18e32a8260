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

__all__ = ["Reply", "Forward", "Drop", "DROP", "ProxyRequest", "ProxyResponse"]


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


class Drop:
    """The script dropped the message: nothing is sent."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Drop()"


DROP = Drop()


class ProxyRequest(_message.Request):
    """A request on its way through the proxy: where it goes next (``destination``,
    Kamailio's ``$du``) and what was decided (``outcome``)."""

    __slots__ = ("destination", "outcome")

    destination: str | None
    outcome: Reply | Forward | Drop | None


class ProxyResponse(_message.Response):
    """A response on its way back; ``outcome`` is ``DROP`` when it must not go on."""

    __slots__ = ("outcome",)

    outcome: Drop | None
