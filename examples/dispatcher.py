# SPDX-License-Identifier: Apache-2.0
"""A load balancer in front of a set of gateways (Kamailio's dispatcher configuration).

Initial INVITEs are record-routed and sent to a destination of set ``[routing.params]
ds_set`` (default 1) chosen by algorithm ``ds_alg`` (default 4, round robin) with
``ctx.dispatcher.ds_select_dst``; when it fails (no answer, 408, 5xx) the failure handler
marks it probing (``ds_mark_dst``) and tries the next one (``ds_next_dst``, needs
``[dispatcher] flags = 2``) until the set is exhausted. In-dialog requests follow their
Route set; CANCEL goes to its INVITE's transaction. No authentication: put it behind
something that checks callers, or add ``ctx.auth`` as in the default script.

    [dispatcher]
    list_file = "dispatcher.list"   # 1 sip:10.0.0.1:5060 ... per line
    flags = 2                       # failover
"""

from __future__ import annotations

from siprouter.script import Context, Request, Response

#: Answers after which the next destination is tried (the destination is at fault).
FAIL_OVER_ON = frozenset({408, 500, 502, 503, 504})


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
    if req.method == "ACK":
        return req.drop()
    req.record_route()
    ds_set = int(ctx.params.get("ds_set", 1))
    ds_alg = int(ctx.params.get("ds_alg", 4))
    if ds_alg == 10:
        req.track_dialog()  # call load: a call counts until its dialog ends
    if not ctx.dispatcher.ds_select_dst(req, ds_set, ds_alg):
        return req.reply(503, "No Destination Available")
    return req.relay(on_failure=fail_over)


def fail_over(req: Request, res: Response, ctx: Context) -> None:
    """Every branch failed: mark the destination and try the next one of the set."""
    if req.is_canceled or res.status not in FAIL_OVER_ON:
        return None  # the caller gave up, or the callee's answer goes back as it is
    ctx.dispatcher.ds_mark_dst(req, "p")
    if ctx.dispatcher.ds_next_dst(req):  # (algorithm 10: the call now counts there)
        return req.relay(on_failure=fail_over)
    return None
