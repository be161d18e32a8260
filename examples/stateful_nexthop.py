# SPDX-License-Identifier: Apache-2.0
"""Stateful relay with Record-Route to one fixed next hop (benchmark scenario S2).

What Kamailio's S2 configuration does (``mf_process_maxfwd_header``, retransmission
handling, ``has_totag`` → ``loose_route`` → ``t_relay``; initial requests
``record_route(); $du = …; t_relay()``):

* retransmissions and ACKs for non-2xx responses never reach this script: the
  transaction layer absorbs them (RFC 3261 §17.2.3);
* in-dialog requests (ACK for 2xx, BYE …) follow their Route set (§16.4);
* a CANCEL is matched to its INVITE's transaction by ``relay()`` (§16.10);
* initial requests are record-routed and relayed to the next hop.

The next hop is ``[routing.params] next_hop`` or, when that is not set, ``[routing]
next_hop``. Like ``stateless_nexthop.py`` this relays everything: for a benchmark or a
test bed, not for a public address.
"""

from __future__ import annotations

from siprouter.script import Context, Request


def request_route(req: Request, ctx: Context) -> None:
    # RFC 3261 §16.3 step 2.
    if req.max_forwards_exceeded():
        if req.method == "ACK":
            return req.drop()
        return req.reply(483, "Too Many Hops")
    if req.method == "CANCEL":
        # Before the in-dialog rule: a CANCEL may carry a To tag (SIPp's does).
        return req.relay()
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        if req.method == "ACK":
            return req.drop()  # an ACK for a 2xx without Route: nothing to route it by
        return req.reply(404, "Not Here")
    next_hop = ctx.params.get("next_hop") or ctx.next_hop
    if next_hop is None:
        return req.reply(500, "No Next Hop Configured")
    req.record_route()
    req.set_destination(next_hop)
    return req.relay()
