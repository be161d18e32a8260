# SPDX-License-Identifier: Apache-2.0
"""Memory per active transaction and per tracked dialog (issue 3), measured with
tracemalloc through the real proxy core and the stateful example script.

    python3 bench/tm_memory.py [N]

"Active transaction": an INVITE relayed to one branch that has answered 180 and not yet
its final response (server transaction + client branch + what they keep: the request
for local replies and failure handlers, the branch bytes for retransmission and CANCEL,
the last response, timer entries). "Answered" is the same after the 200 (kept for
Timer L/M, RFC 6026). "Dialog": the same calls with track_dialog(), after the ACK.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siprouter.script.testing import ScriptTester, make_request, make_response, sip_text  # noqa: E402
from siprouter.sip.message import parse_message  # noqa: E402

SCRIPT = '''
def request_route(req, ctx):
    if req.in_dialog:
        ctx.loose_route(req)
        return req.relay()
    req.record_route()
    if ctx.params.get("dialogs"):
        req.track_dialog()
    req.relay("sip:bob@192.0.2.30:5060")
'''


def module() -> types.ModuleType:
    mod = types.ModuleType("tm_memory_script")
    exec(SCRIPT, mod.__dict__)  # noqa: S102
    return mod


async def measure(n: int, dialogs: bool) -> dict[str, float]:
    t = ScriptTester(module(), params={"dialogs": dialogs})
    invites = [make_request("INVITE", "sip:bob@example.com", body="v=0\r\n" * 20)
               for _ in range(n)]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    branches = []
    for text in invites:
        out = await t.request(text)
        branch = out.requests[0][0]
        branches.append(branch)
        await t.response(make_response(branch, 180, to_tag="callee"))
    gc.collect()
    ringing = tracemalloc.get_traced_memory()[0] - base - _size_of_test_data(branches)
    for text, branch in zip(invites, branches, strict=True):
        await t.response(make_response(branch, 200, to_tag="callee"))
        if dialogs:
            inv = parse_message(sip_text(text))
            await t.request(make_request(
                "ACK", "sip:bob@192.0.2.30", call_id=inv.call_id, from_=inv.header("from"),
                to=f"{inv.header('to')};tag=callee",
                headers={"Route": "<sip:127.0.0.1:5060;lr>"}))
    t.transport.sent.clear()
    gc.collect()
    answered = tracemalloc.get_traced_memory()[0] - base - _size_of_test_data(branches)
    tracemalloc.stop()
    return {"ringing": ringing / n, "answered": answered / n}


def _size_of_test_data(objs: list) -> int:
    return 0  # the parsed branch copies are the test's, kept alive here on purpose: see below


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    plain = await measure(n, dialogs=False)
    with_dialogs = await measure(n, dialogs=True)
    # The test keeps one parsed copy of each forwarded INVITE (to answer it); measure
    # that alone and take it off.
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    keep = [parse_message(sip_text(make_request("INVITE", "sip:bob@example.com",
                                                body="v=0\r\n" * 20))) for _ in range(n)]
    for m in keep:
        m.top_via  # noqa: B018 - parsed as the test's copies are
    test_copy = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    print(f"N = {n} calls; the test's own parsed copy of each INVITE: {test_copy:,.0f} B (subtracted)")
    print(f"active INVITE transaction (ringing):      {plain['ringing'] - test_copy:,.0f} B")
    print(f"answered, kept for Timer L/M:             {plain['answered'] - test_copy:,.0f} B")
    print(f"per confirmed dialog (with its answered transaction): "
          f"{with_dialogs['answered'] - test_copy:,.0f} B; dialog alone: "
          f"{with_dialogs['answered'] - plain['answered']:,.0f} B")


if __name__ == "__main__":
    asyncio.run(main())
