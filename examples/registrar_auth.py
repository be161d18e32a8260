# SPDX-License-Identifier: Apache-2.0
"""A registrar that authenticates every REGISTER (benchmark scenario S4).

What Kamailio's S4 configuration does: ``auth_check`` against the ``subscriber`` table
(the authenticated user must be the To user), a 401 challenge with ``qop=auth`` when the
credentials are missing or wrong, then ``consume_credentials(); save("location")``.
"""

from __future__ import annotations

from siprouter.script import Context, Request


async def request_route(req: Request, ctx: Context) -> None:
    if req.method != "REGISTER":
        if req.method == "ACK":
            return req.drop()
        return req.reply(405, "Method Not Allowed", headers=[("Allow", "REGISTER")])
    result = await ctx.auth.auth_check(req)
    if not result:
        return ctx.auth.challenge(req, result)
    ctx.auth.consume_credentials(req)
    return await ctx.registrar.save(req)
