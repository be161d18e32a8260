# SPDX-License-Identifier: Apache-2.0
"""Parallel forking (RFC 3261 §16.7): every initial request rings two callees at once,
``[routing.params] uas1`` and ``uas2`` (Request-URIs of the two branches, e.g.
``"sip:alice@127.0.0.1:5071"``). The first 2xx goes to the caller and the other branch is
CANCELed; a 2xx from the other branch before its CANCEL goes to the caller as well.
"""

from __future__ import annotations

from siprouter.script import Context, Request


def request_route(req: Request, ctx: Context) -> None:
    if req.max_forwards_exceeded():
        if req.method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")
    # A CANCEL goes to its INVITE's transaction (§16.10), whatever its To says (as in
    # Kamailio's default configuration, before the in-dialog handling).
    if req.method == "CANCEL":
        return req.relay()
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        if req.method == "ACK":
            return req.drop()
        return req.reply(404, "Not Here")
    req.record_route()
    return req.relay(ctx.params["uas1"], ctx.params["uas2"])
