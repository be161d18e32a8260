# SPDX-License-Identifier: Apache-2.0
"""Stateful relay with Record-Route and dialog tracking to one next hop (the e2e test of
``dlg.terminate``): like ``record_route.py``, plus ``req.track_dialog()`` on every
initial INVITE so the call shows in ``dlg.list`` and can be ended from management.

``[routing.params] next_hop`` is where initial requests go."""

from __future__ import annotations

from siprouter.script import Context, Request


def request_route(req: Request, ctx: Context) -> None:
    if req.max_forwards_exceeded():
        if req.method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")
    if req.method == "CANCEL":
        return req.relay()
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        if req.method == "ACK":
            return req.drop()
        return req.reply(404, "Not Here")
    req.record_route()
    if req.method == "INVITE":
        req.track_dialog()
    req.set_destination(ctx.params["next_hop"])
    return req.relay()
