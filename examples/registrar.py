# SPDX-License-Identifier: Apache-2.0
"""A registrar and nothing else (benchmark scenario S3).

What Kamailio's S3 configuration does: ``save("location")`` for every REGISTER (RFC 3261
§10.3: the bindings are kept by the location service, ``[usrloc] db_mode``), 405 for
any other method. No authentication: for a benchmark or a test bed only.
"""

from __future__ import annotations

from siprouter.script import Context, Request


async def request_route(req: Request, ctx: Context) -> None:
    if req.method == "REGISTER":
        return await ctx.registrar.save(req)
    if req.method == "ACK":
        return req.drop()
    return req.reply(405, "Method Not Allowed", headers=[("Allow", "REGISTER")])
