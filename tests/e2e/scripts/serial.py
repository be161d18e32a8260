# SPDX-License-Identifier: Apache-2.0
"""Serial forking: try ``[routing.params] uas1`` first and ``uas2`` when it fails.

``mode = "failure_route"`` (the default): relay to ``uas1`` with an ``on_failure``
handler that relays to ``uas2`` when the first callee is busy, unavailable or does not
answer (Kamailio's failure_route with ``t_relay`` again: voicemail, call forwarding on
busy). ``mode = "q"``: ``uas1`` as the Request-URI (no q: 1.0), ``uas2`` appended with
q 0.5 and ``relay(serial=True)``: one q group after the other (RFC 3261 §16.6, Kamailio
``t_load_contacts`` / ``t_next_contacts``). A ``relay()`` without targets always has the
Request-URI as a branch: leaving it as it came (this proxy) would make a branch to
ourselves.
"""

from __future__ import annotations

from siprouter.script import Context, Request, Response

#: Final responses after which the second callee is tried.
TRY_NEXT_ON = frozenset({408, 480, 486, 487, 500, 503})


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
    if ctx.params.get("mode", "failure_route") == "q":
        req.set_ruri(ctx.params["uas1"])
        req.append_branch(ctx.params["uas2"], q=0.5)
        return req.relay(serial=True)
    return req.relay(ctx.params["uas1"], on_failure=try_second)


def try_second(req: Request, res: Response, ctx: Context) -> None:
    # A caller who CANCELed gets the 487, not a call to the next callee.
    if res.status in TRY_NEXT_ON and not req.is_canceled:
        return req.relay(ctx.params["uas2"])
    # Doing nothing sends ``res`` (the best response) upstream.
    return None
