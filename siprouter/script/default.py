# SPDX-License-Identifier: Apache-2.0
"""The shipped default routing script: safe on a public address.

Modelled on Kamailio's default configuration: ``request_route`` with ``REQINIT``,
CANCEL handling, ``WITHINDLG``, Record-Route for dialog-forming requests and ``RELAY``
with a failure route (``MANAGE_FAILURE``). The proxy core has already checked the
request (the sanity stage: mandatory headers, CSeq, Content-Length, Proxy-Require …)
and the transaction layer has absorbed retransmissions and ACKs for non-2xx responses
(RFC 3261 §17.2.3) before this runs. The core refuses by itself to forward to one of
its own sockets (482) or to a broadcast or multicast address.

What it does, in order:

1. ``OPTIONS`` addressed to this server with no user part (``sip:sip.example.com``) is
   answered 200 here (a keep-alive / monitoring ping), even at Max-Forwards 0.
2. ``REQINIT``: Max-Forwards 0: 483 "Too Many Hops" (ACK: dropped).
3. ``CANCEL``: when its INVITE's transaction is here, ``relay()`` answers it 200 and
   CANCELs the branches (§16.10); otherwise it goes where its INVITE would have gone
   (the next hop) or gets 481 when that is us.
4. ``WITHINDLG`` (To tag): routed by the Route set that Record-Route built
   (``loose_route``, statefully relayed); an ACK without one is dropped (an ACK for a
   non-2xx never gets here: the transaction absorbed it); anything else 404 "Not Here".
   In-dialog requests are not challenged (as in Kamailio's default configuration).
5. Preloaded Route headers are removed from initial requests (a Route chosen by the
   sender must not make us a relay to wherever it likes), and INVITE and SUBSCRIBE are
   record-routed so the dialog's requests come back through us.
6. ``AUTH`` (``[routing.params] auth``, on by default): a REGISTER, and any request
   from one of our own domains, must carry valid digest credentials of a subscriber
   (``siprouter user add``): 401 / 407 challenge otherwise, 403 when the authenticated
   user is not the one in To (REGISTER) or From. Credentials of a request we relay are
   removed (``consume_credentials``). Then a request neither from nor to one of our
   domains is refused 403 "Not relaying": no open relay. With ``auth = false`` nothing is
   challenged and every request is routed (Kamailio without WITH_AUTH).
7. ``REGISTRAR``: a REGISTER for one of our domains is saved in the location service
   (RFC 3261 §10.3); for another domain: 403.
8. Requests for one of our own domains (configured domains, listen addresses, host
   name): no user in the Request-URI: 484 "Address Incomplete"; ``LOCATION``: the user's
   registered contacts become the branches (several: parallel forking); not registered:
   404 "Not Found", registered but every contact expired: 480 "Temporarily Unavailable",
   the contact does not accept the method: 405.
9. Requests for any other domain: relayed statefully to the outbound next hop
   (``[routing] next_hop``) with the failure route below, or 403 "Not relaying" when none
   is configured.

``MANAGE_FAILURE`` (``manage_failure``): nothing for a CANCELed call; with
``[routing.params] block_3xx = true`` a redirect becomes 404 "Not Found" (Kamailio's
WITH_BLOCK3XX); with ``[routing.params] voicemail = "sip:host:port"`` a call that got 486
Busy or 408 timeout is sent there instead (WITH_VOICEMAIL, serial forking).

Copy this file to start a script of your own (``siprouter run --script route.py``);
``tests/script/test_default.py`` shows how to test it with ``siprouter.script.testing``.
"""

from __future__ import annotations

from siprouter.proxy.sanity import SUPPORTED_OPTION_TAGS, UnsupportedExtension, check_require
from siprouter.script import Context, Request, Response
from siprouter.sip.uri import SipUri

__all__ = ["request_route", "manage_failure", "ALLOW", "ACCEPT"]

#: Methods this server handles (answers or routes); sent in Allow (RFC 3261 §20.5).
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
#: Bodies are passed through untouched, whatever their type (§20.1).
ACCEPT = "*/*"


async def request_route(req: Request, ctx: Context) -> None:
    """Route one request; see the module docstring."""
    method = req.method
    uri = req.uri

    # §11 / §16.3 step 2: an OPTIONS for the server itself is answered here, even at
    # Max-Forwards 0 ("the element MAY act as the final recipient of the request").
    if method == "OPTIONS" and type(uri) is SipUri and uri.user is None and ctx.is_myself(uri):
        return _options(req)

    # REQINIT. §16.3 step 2: a request that may not be forwarded any further.
    if req.max_forwards_exceeded():
        if method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")

    # §16.10: a CANCEL for a transaction of ours is handled by it.
    if method == "CANCEL":
        if ctx.transaction_of(req) is not None:
            return req.relay()
        return _unmatched_cancel(req, ctx)

    if req.in_dialog:
        return _within_dialog(req, ctx)

    if method == "ACK":
        return req.drop()  # an ACK outside any dialog and transaction: nothing to do

    # A Route chosen by the sender must not make us a relay (Kamailio: remove_hf("Route")).
    if req.has_header("Route"):
        req.remove_header("Route")
    # §16.6 step 4: stay on the path of the dialogs this request may create.
    if method == "INVITE" or method == "SUBSCRIBE":
        req.record_route()

    to_us = ctx.is_myself(uri)
    if ctx.params.get("auth", True):
        # AUTH: REGISTERs and our own users' requests are authenticated; no open relay.
        from_us = ctx.is_myself(req.from_.uri)
        if method == "REGISTER" or from_us:
            result = await ctx.auth.auth_check(req)
            if not result:
                return ctx.auth.challenge(req, result)
            if method != "REGISTER" and method != "PUBLISH":
                ctx.auth.consume_credentials(req)
        elif not to_us:
            return req.reply(403, "Not relaying")

    if method == "REGISTER":
        # REGISTRAR (RFC 3261 §10.3 step 1: only for a domain this registrar serves).
        if not to_us:
            return req.reply(403, "Not our domain")
        return await ctx.registrar.save(req)

    if to_us:
        if type(uri) is not SipUri or not uri.user:
            return req.reply(484, "Address Incomplete")
        return await _location(req, ctx)

    if ctx.next_hop:
        req.set_destination(ctx.next_hop)
        return _relay(req)
    return req.reply(403, "Not relaying")


async def _location(req: Request, ctx: Context) -> None:
    """LOCATION: the user's registered contacts become the branches (RFC 3261 §16.5)."""
    found = await ctx.registrar.lookup(req)
    if not found:
        status = found.status
        if status == 405:
            return req.reply(405, "Method Not Allowed")
        if status == 480:
            return req.reply(480, "Temporarily Unavailable")
        if status == 404 or status is None:
            return req.reply(404, "Not Found")
        return req.reply(status, "Server Error" if status >= 500 else None)
    return _relay(req)


def _within_dialog(req: Request, ctx: Context) -> None:
    """WITHINDLG: §16.4 / §12.2: follow the Route set that Record-Route built."""
    if ctx.loose_route(req):
        if req.method == "NOTIFY":
            req.record_route()  # RFC 6665 §4.1.3: NOTIFY may update the route set
        return _relay(req)
    if req.method == "ACK":
        return req.drop()  # no Route: an ACK for a 2xx from a UA that did not record-route
    return req.reply(404, "Not Here")


def _relay(req: Request) -> None:
    """RELAY: stateful, with the failure route for INVITEs."""
    if req.method == "INVITE":
        return req.relay(on_failure=manage_failure)
    return req.relay()


def manage_failure(req: Request, res: Response, ctx: Context) -> None:
    """MANAGE_FAILURE: every branch of an INVITE failed (``res`` is the best response)."""
    if req.is_canceled:
        return None  # the caller gave up: the 487 goes back
    status = res.status
    if 300 <= status < 400 and ctx.params.get("block_3xx"):
        return req.reply(404, "Not Found")  # Kamailio WITH_BLOCK3XX
    voicemail = ctx.params.get("voicemail")
    if voicemail and status in (486, 408):
        # Kamailio WITH_VOICEMAIL: serial forking to the voicemail server.
        user = req.uri.user if type(req.uri) is SipUri else None
        target = str(voicemail)
        if user and "@" not in target:
            target = target.replace("sip:", f"sip:{user}@", 1)
        req.set_destination(None)
        return req.relay(target)
    return None


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


def _unmatched_cancel(req: Request, ctx: Context) -> None:
    """A CANCEL with no transaction here: §16.10 says forward it statelessly — where its
    INVITE would have gone (the next hop); when that is us, there is nothing to cancel
    (§9.2: 481)."""
    if ctx.next_hop and not ctx.is_myself(req.uri):
        if req.has_header("Route"):
            req.remove_header("Route")
        return req.forward(ctx.next_hop)
    return req.reply(481, "Call/Transaction Does Not Exist")
