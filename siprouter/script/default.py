# SPDX-License-Identifier: Apache-2.0
"""The shipped default routing script: safe on a public address.

Modelled on Kamailio's default configuration (``request_route`` with ``REQINIT``,
``WITHINDLG`` and the "Not relaying" rule), cut down to what a stateless proxy without
a registrar can do. The proxy core has already checked the request (the sanity stage:
mandatory headers, CSeq, Content-Length, Proxy-Require …) before this runs, and it
refuses by itself to forward to one of its own sockets (482) or to a broadcast or
multicast address.

What it does, in order:

1. ``OPTIONS`` addressed to this server with no user part (``sip:sip.example.com``) is
   answered 200 here (a keep-alive / monitoring ping), even at Max-Forwards 0.
2. Max-Forwards 0: 483 "Too Many Hops" (ACK: dropped).
3. In-dialog requests (To tag): routed by their Route set (``loose_route``); without
   one, an ACK or CANCEL goes the way the initial request went (see 5), other
   requests get 404 "Not Here".
4. Initial requests for one of our own domains (configured domains, listen addresses,
   host name): 404 "Not Found" — there is no registrar or location service yet.
5. Initial requests for any other domain: 403 "Not relaying", unless an outbound next
   hop is configured (``[routing] next_hop``): then they are forwarded there, after
   removing preloaded Route headers (as Kamailio's default does: a Route chosen by the
   sender must not make us a relay to wherever it likes).

Statelessness shapes ACK and CANCEL. There are no transactions to match them to, so
they are routed by the same rules as the INVITE they belong to (same Request-URI, same
Route): when the INVITE was forwarded to the next hop, so are its CANCEL and its ACK
for a non-2xx response (RFC 3261 §16.11 — the next hop's transaction needs both). When
this server answered the INVITE itself, the ACK is absorbed (dropped) and a CANCEL gets
481 "Call/Transaction Does Not Exist" (§9.2: no transaction is pending here — the
INVITE was already answered statelessly). ACK is never answered (§17.1.1.3).

Copy this file to start a script of your own (``siprouter run --script route.py``);
``tests/script/test_default.py`` shows how to test it with ``siprouter.script.testing``.
"""

from __future__ import annotations

from siprouter.proxy.sanity import SUPPORTED_OPTION_TAGS, UnsupportedExtension, check_require
from siprouter.script import Context, Request
from siprouter.sip.uri import SipUri

__all__ = ["request_route", "ALLOW", "ACCEPT"]

#: Methods this server handles (answers or routes); sent in Allow (RFC 3261 §20.5).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
#: Bodies are passed through untouched, whatever their type (§20.1).
ACCEPT = "*/*"


def request_route(req: Request, ctx: Context) -> None:
    """Route one request; see the module docstring. A plain ``def``: nothing here waits,
    and the core runs a plain function without creating a coroutine."""
    method = req.method
    uri = req.uri

    # §11 / §16.3 step 2: an OPTIONS for the server itself is answered here, even at
    # Max-Forwards 0 ("the element MAY act as the final recipient of the request").
    if method == "OPTIONS" and type(uri) is SipUri and uri.user is None and ctx.is_myself(uri):
        return _options(req)

    # §16.3 step 2: a request that may not be forwarded any further.
    if req.max_forwards_exceeded():
        if method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")

    if req.in_dialog:
        # §16.4 / §12.2: follow the Route set that Record-Route built.
        if ctx.loose_route(req):
            return req.forward()
        if method == "ACK" or method == "CANCEL":
            return _follow_the_invite(req, ctx)
        return req.reply(404, "Not Here")

    if method == "ACK" or method == "CANCEL":
        return _follow_the_invite(req, ctx)

    if ctx.is_myself(uri):
        # TODO(issue 5): registrar and location service; until then nobody is here.
        return req.reply(404, "Not Found")

    if ctx.next_hop:
        return _to_next_hop(req, ctx.next_hop)
    return req.reply(403, "Not relaying")


def _options(req: Request) -> None:
    # §8.2.2.3: we are the UAS here, so an unsupported Require is refused.
    try:
        check_require(req)
    except UnsupportedExtension as e:
        return req.reply(420, "Bad Extension", headers=[("Unsupported", ", ".join(e.unsupported))])
    headers = [("Allow", ALLOW), ("Accept", ACCEPT), ("Accept-Language", "en")]
    if SUPPORTED_OPTION_TAGS:
        headers.append(("Supported", ", ".join(sorted(SUPPORTED_OPTION_TAGS))))
    return req.reply(200, "OK", headers=headers)


def _follow_the_invite(req: Request, ctx: Context) -> None:
    """ACK or CANCEL with no Route of its own: go where its INVITE went (forwarded to the
    next hop), or, when we answered the INVITE here, drop the ACK / answer the CANCEL."""
    if ctx.next_hop and not ctx.is_myself(req.uri):
        return _to_next_hop(req, ctx.next_hop)
    if req.method == "ACK":
        return req.drop()
    return req.reply(481, "Call/Transaction Does Not Exist")


def _to_next_hop(req: Request, next_hop: str) -> None:
    if req.has_header("Route"):
        req.remove_header("Route")  # preloaded Route (Kamailio: remove_hf("Route"))
    return req.forward(next_hop)
