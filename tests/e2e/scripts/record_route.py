# SPDX-License-Identifier: Apache-2.0
"""Stateful relay with Record-Route to one next hop (the e2e tests' plain call, timeouts,
CANCEL and retransmission tests).

``[routing.params] next_hop`` is where initial requests go, e.g.
``"sip:uas@127.0.0.1:5070;transport=tcp"``; in-dialog requests follow their Route set
(the ``Record-Route`` this script adds puts the proxy on it). ``fr_timer`` /
``fr_inv_timer`` params, when present, set this transaction's timers (seconds)
over the ``[transaction]`` configuration. ``track_dialog = true`` tracks every initial
INVITE's dialog (``dlg.list``, ``dlg.terminate``).
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
    if req.method == "INVITE" and ctx.params.get("track_dialog"):
        req.track_dialog()
    req.set_destination(ctx.params["next_hop"])
    timers = {name: float(ctx.params[name]) for name in ("fr_timer", "fr_inv_timer")
              if name in ctx.params}
    return req.relay(**timers)
