# SPDX-License-Identifier: Apache-2.0
"""The example routing scripts (examples/), through the real proxy core with no sockets
(siprouter.script.testing). Not marked e2e: these run in milliseconds; the same script
carries real SIPp traffic in test_sipp_relay.py."""

from __future__ import annotations

from e2e_support import EXAMPLES

from siprouter.script.testing import ScriptTester, make_request, make_response
from siprouter.transport.types import Target

NEXTHOP = EXAMPLES / "stateless_nexthop.py"


async def test_nexthop_from_params_wins_over_routing_next_hop() -> None:
    tester = ScriptTester(NEXTHOP, params={"next_hop": "sip:10.0.0.7:5070;transport=tcp"},
                          next_hop="sip:10.0.0.1:5060",
                          listen=["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    out = await tester.request(make_request("INVITE", "sip:bob@example.com"))
    assert out.replied is None
    assert out.forwarded_to == Target("tcp", "10.0.0.7", 5070)
    assert out.forwarded.max_forwards == 69
    assert out.forwarded.ruri == "sip:bob@example.com"  # the R-URI is left alone


async def test_routing_next_hop_is_the_fallback() -> None:
    tester = ScriptTester(NEXTHOP, next_hop="sip:10.0.0.1:5060")
    out = await tester.request(make_request("OPTIONS", "sip:carol@elsewhere.example"))
    assert out.forwarded_to == Target("udp", "10.0.0.1", 5060)


async def test_every_method_is_relayed_even_for_our_own_domain() -> None:
    tester = ScriptTester(NEXTHOP, params={"next_hop": "sip:10.0.0.7"},
                          domains=["example.com"])
    for method in ("INVITE", "ACK", "BYE", "REGISTER", "MESSAGE", "CANCEL"):
        out = await tester.request(make_request(method, "sip:bob@example.com"))
        assert out.forwarded_to == Target("udp", "10.0.0.7", 5060), method


async def test_max_forwards_0_gets_483() -> None:
    tester = ScriptTester(NEXTHOP, params={"next_hop": "sip:10.0.0.7"})
    out = await tester.request(make_request("INVITE", headers={"Max-Forwards": "0"}))
    assert out.replied == 483
    assert out.forwarded is None


async def test_no_next_hop_configured_gets_500() -> None:
    tester = ScriptTester(NEXTHOP)
    out = await tester.request(make_request("INVITE"))
    assert out.replied == 500


async def test_responses_go_back_by_via() -> None:
    tester = ScriptTester(NEXTHOP, params={"next_hop": "sip:10.0.0.7"})
    out = await tester.request(make_request("INVITE", via_host="192.0.2.10:5062"))
    back = await tester.response(make_response(out.forwarded, 180), source="udp:10.0.0.7:5060")
    assert back.forwarded_to == Target("udp", "192.0.2.10", 5062)
    assert len(back.forwarded.vias) == 1
