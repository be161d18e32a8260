# SPDX-License-Identifier: Apache-2.0
"""Redirect server (RFC 3261 §8.3): every initial INVITE is answered 302 with the
Contacts in ``[routing.params] contacts``, separated by ``|`` (a Contact may carry
parameters: ``"<sip:bob@192.0.2.20;transport=tcp>;q=0.5"``). Nothing is relayed.
"""

from __future__ import annotations

from siprouter.script import Context, Request


def request_route(req: Request, ctx: Context) -> None:
    if req.method == "ACK":
        return req.drop()  # an ACK for the 302 that the transaction layer let through
    if req.method == "INVITE" and not req.in_dialog:
        return req.redirect(*ctx.params["contacts"].split("|"))
    return req.reply(405, "Method Not Allowed", headers={"Allow": "INVITE, ACK"})
