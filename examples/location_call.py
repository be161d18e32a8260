# SPDX-License-Identifier: Apache-2.0
"""Registrar plus calls to registered users (benchmark scenario S5).

What Kamailio's S5 configuration does: S2's stateful relay with Record-Route, where an
initial request's destination comes from the location service (``lookup("location")``)
instead of a fixed next hop, and ``save("location")`` for REGISTER. No authentication:
for a benchmark or a test bed only.
"""

from __future__ import annotations

from siprouter.script import Context, Request


async def request_route(req: Request, ctx: Context) -> None:
    # RFC 3261 §16.3 step 2.
    if req.max_forwards_exceeded():
        if req.method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")
    method = req.method
    if method == "CANCEL":
        return req.relay()  # matched to its INVITE's transaction (§16.10)
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        if method == "ACK":
            return req.drop()
        return req.reply(404, "Not Here")
    if method == "REGISTER":
        return await ctx.registrar.save(req)
    found = await ctx.registrar.lookup(req)
    if not found:
        return req.reply(found.status or 404, "Not Found" if found.status in (None, 404) else None)
    req.record_route()
    return req.relay()
