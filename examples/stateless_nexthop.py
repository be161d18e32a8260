# SPDX-License-Identifier: Apache-2.0
"""Stateless relay to one fixed next hop (benchmark scenario S1, and the e2e tests' script).

Every request that passes the Max-Forwards check is forwarded statelessly (RFC 3261 §16.11)
to the next hop; responses find their way back by Via without any help from the script.
The equivalent Kamailio route is ``$du = "sip:127.0.0.1:15070"; forward();``.

The next hop is ``[routing.params] next_hop`` or, when that is not set, ``[routing]
next_hop``::

    [routing]
    script = "examples/stateless_nexthop.py"
    params = { next_hop = "sip:127.0.0.1:15070" }          # or ";transport=tcp"

This script relays *everything*, including requests for foreign domains: run it only
where the senders are trusted (a benchmark, a test bed, behind a border element).
"""

from __future__ import annotations

from siprouter.script import Context, Request


async def request_route(req: Request, ctx: Context) -> None:
    # RFC 3261 §16.3 step 2: a request with Max-Forwards 0 is not forwarded.
    if req.max_forwards_exceeded():
        return req.reply(483, "Too Many Hops")
    next_hop = ctx.params.get("next_hop") or ctx.next_hop
    if next_hop is None:
        return req.reply(500, "No Next Hop Configured")
    return req.forward(next_hop)
