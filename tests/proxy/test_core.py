"""The proxy core through the testing kit: sanity, stateless forwarding (RFC 3261 §16.11),
responses routed by Via (§18.2.2, RFC 3581), loose routing (§16.4), script failures."""

from __future__ import annotations

import asyncio
import types

import pytest

from siprouter.script.testing import ScriptTester, make_cancel, make_request, make_response
from siprouter.transport.types import Target

NEXT_HOP = "sip:10.0.0.2:5070"


def script(request_route, reply_route=None) -> types.ModuleType:
    mod = types.ModuleType("test_script")
    mod.request_route = request_route
    if reply_route is not None:
        mod.reply_route = reply_route
    return mod


def forward_to(dest: str | None = NEXT_HOP):
    async def request_route(req, ctx):
        req.forward(dest)
    return script(request_route)


def make_tester(mod, **kw) -> ScriptTester:
    kw.setdefault("listen", ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"))
    kw.setdefault("domains", ("example.org",))
    return ScriptTester(mod, **kw)


async def test_forward_inserts_via_decrements_max_forwards_and_keeps_the_rest():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com", headers={"X-Untouched": "a  ,b"})
    out = await t.request(req)
    assert out.forwarded_to == Target("udp", "10.0.0.2", 5070)
    fwd = out.forwarded
    top, second = fwd.vias[0], fwd.vias[1]
    assert (top.transport, top.host, top.port) == ("UDP", "127.0.0.1", 5060)
    assert top.branch.startswith("z9hG4bK")
    assert second.host == "192.0.2.10"
    assert fwd.max_forwards == 69
    assert fwd.header("X-Untouched") == "a  ,b"
    assert fwd.ruri == "sip:bob@example.com"


async def test_missing_max_forwards_gets_70():
    t = make_tester(forward_to())
    req = make_request("OPTIONS", "sip:bob@example.com").replace("Max-Forwards: 70\r\n", "")
    out = await t.request(req)
    assert out.forwarded.max_forwards == 70


async def test_max_forwards_zero_is_483():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com", headers={"Max-Forwards": "0"})
    out = await t.request(req)
    assert out.replied == 483 and out.forwarded is None


async def test_branch_is_stable_for_retransmissions_and_cancel_but_not_for_new_targets():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com")
    first = (await t.request(req)).forwarded.top_via.branch
    again = (await t.request(req)).forwarded.top_via.branch
    cancel = (await t.request(make_cancel(req))).forwarded.top_via.branch
    assert first == again == cancel
    t.set_script(forward_to("sip:10.0.0.3"))
    assert (await t.request(req)).forwarded.top_via.branch != first
    other = make_request("INVITE", "sip:bob@example.com")
    t.set_script(forward_to())
    assert (await t.request(other)).forwarded.top_via.branch != first


@pytest.mark.parametrize("dest, status", [
    ("sip:127.0.0.1:5060", 482),               # our own socket: a loop
    ("sip:example.org", 482),                  # our own domain
    ("sip:255.255.255.255:5060", 403),         # broadcast
    ("sip:224.0.1.75:5060", 403),              # multicast (sip.mcast.net)
    ("tel:+15551234", 416),
])
async def test_forbidden_destinations(dest, status):
    t = make_tester(forward_to(dest))
    out = await t.request(make_request("INVITE", "sip:bob@example.com"))
    assert out.replied == status and out.forwarded is None


async def test_forward_without_destination_uses_ruri_then_route():
    t = make_tester(forward_to(None))
    out = await t.request(make_request("MESSAGE", "sip:bob@10.0.0.9:5099;transport=tcp"))
    assert out.forwarded_to == Target("tcp", "10.0.0.9", 5099)
    assert out.forwarded.top_via.transport == "TCP"
    req = make_request("MESSAGE", "sip:bob@10.0.0.9", headers={"Route": "<sip:10.0.0.7;lr>"})
    out = await t.request(req)
    assert out.forwarded_to == Target("udp", "10.0.0.7", 5060)


async def test_received_and_rport_are_stamped_on_forwarded_requests():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com", via_host="client.example.net")
    req = req.replace(";branch=", ";rport;branch=", 1)
    out = await t.request(req, source="udp:192.0.2.55:5099")
    via = out.forwarded.vias[1]
    assert via.received == "192.0.2.55" and via.rport == "5099"
    # And the response comes back to exactly that address (RFC 3581 §4).
    back = await t.response(make_response(out.forwarded, 180), source="udp:10.0.0.2:5070")
    assert back.forwarded_to == Target("udp", "192.0.2.55", 5099)
    assert [v.host for v in back.forwarded.vias] == ["client.example.net"]


async def test_tcp_requests_get_rport_so_responses_find_the_connection():
    t = make_tester(forward_to())
    out = await t.request(make_request("INVITE", "sip:bob@example.com", transport="TCP"),
                          source="tcp:192.0.2.10:40001")
    via = out.forwarded.vias[1]
    assert via.rport == "40001" and via.received == "192.0.2.10"
    back = await t.response(make_response(out.forwarded, 200), source="udp:10.0.0.2:5070")
    assert back.forwarded_to == Target("tcp", "192.0.2.10", 40001)


async def test_response_not_for_us_is_dropped():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com")
    out = await t.response(make_response(req, 200))  # its top Via is the UAC's, not ours
    assert out.dropped


async def test_response_to_broadcast_is_dropped():
    # RFC 4475 §3.3.8 bcast: the next Via points at the broadcast address.
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com", via_host="255.255.255.255")
    res = make_response(req, 200).replace(
        b"Via: ", b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsl1\r\nVia: ", 1)
    out = await t.response(res, source="udp:10.0.0.2:5070")
    assert out.dropped


async def test_reply_route_sees_responses_and_can_drop_them():
    seen = []

    async def request_route(req, ctx):
        req.forward(NEXT_HOP)

    async def reply_route(res, ctx):
        seen.append(res.status)
        if res.status == 183:
            res.drop()

    t = make_tester(script(request_route, reply_route))
    fwd = (await t.request(make_request("INVITE", "sip:bob@example.com"))).forwarded
    assert (await t.response(make_response(fwd, 183), source="udp:10.0.0.2:5070")).dropped
    assert not (await t.response(make_response(fwd, 180), source="udp:10.0.0.2:5070")).dropped
    assert seen == [183, 180]


async def test_stateless_reply_goes_to_sent_by_port_without_rport_and_has_a_stable_to_tag():
    async def request_route(req, ctx):
        req.reply(404)

    t = make_tester(script(request_route))
    req = make_request("INVITE", "sip:bob@example.com")
    a = await t.request(req, source="udp:192.0.2.10:40000")
    b = await t.request(req, source="udp:192.0.2.10:40000")
    assert a.replied == 404 and a.reason == "Not Found"
    assert a.replied_to == Target("udp", "192.0.2.10", 5060)
    assert a.reply.to.tag and a.reply.to.tag == b.reply.to.tag


@pytest.mark.parametrize("edit, status", [
    (lambda r: r.replace("Call-ID:", "X-Call-ID:"), 400),
    (lambda r: r.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400),
    (lambda r: r.replace("INVITE sip:bob@example.com", "INVITE foo:bar"), 416),
    (lambda r: r.replace("Max-Forwards: 70", "Max-Forwards: seventy"), 400),
    (lambda r: r.replace("Max-Forwards: 70", "Max-Forwards: 70\r\nCall-ID: second")
     .replace("Call-ID: second", "Call-ID: two"), 400),
])
async def test_sanity_rejects_before_the_script(edit, status):
    called = []

    async def request_route(req, ctx):
        called.append(req)
        req.forward(NEXT_HOP)

    t = make_tester(script(request_route))
    out = await t.request(edit(make_request("INVITE", "sip:bob@example.com")))
    assert out.replied == status and not called


async def test_proxy_require_unknown_option_is_420_with_unsupported():
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com",
                       headers={"Proxy-Require": "foo, bar", "Require": "baz"})
    out = await t.request(req)
    assert out.replied == 420
    assert out.reply.header("Unsupported") == "foo, bar"


async def test_ack_is_never_answered_even_when_insane():
    t = make_tester(forward_to())
    ack = make_request("ACK", "sip:bob@example.com").replace("CSeq: 1 ACK", "CSeq: 1 INVITE")
    assert (await t.request(ack)).dropped


async def test_unparseable_request_gets_a_salvaged_reply_and_garbage_is_dropped():
    t = make_tester(forward_to())
    req = make_request("OPTIONS", "sip:bob@example.com").replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1)
    out = await t.request(req)
    assert out.replied == 505
    assert (await t.request(b"\x00\x01garbage\r\n\r\n")).dropped


async def test_script_exception_is_500_and_the_core_keeps_working():
    async def request_route(req, ctx):
        if req.method == "INVITE":
            raise RuntimeError("bug in the script")
        req.reply(200)

    t = make_tester(script(request_route), raise_errors=False)
    out = await t.request(make_request("INVITE", "sip:bob@example.com"))
    assert out.replied == 500 and isinstance(out.error, RuntimeError)
    assert (await t.request(make_request("OPTIONS", "sip:bob@example.com"))).replied == 200
    assert t.core.stats.script_errors == 1


async def test_script_reading_a_malformed_header_answers_400():
    async def request_route(req, ctx):
        req.from_  # noqa: B018 - malformed
        req.forward(NEXT_HOP)

    t = make_tester(script(request_route), raise_errors=False)
    bad = make_request("INVITE", "sip:bob@example.com").replace("From: ", "From: <sip:a@b;tag=1", 1)
    out = await t.request(bad)
    assert out.replied == 400


async def test_second_terminal_verb_is_an_error():
    async def request_route(req, ctx):
        req.reply(404)
        req.forward(NEXT_HOP)

    t = make_tester(script(request_route), raise_errors=False)
    out = await t.request(make_request("INVITE", "sip:bob@example.com"))
    assert out.error is not None and "already handled" in str(out.error)
    assert out.replied == 404 and out.forwarded is None


async def test_no_verb_means_dropped():
    async def request_route(req, ctx):
        pass

    t = make_tester(script(request_route))
    assert (await t.request(make_request("INVITE", "sip:bob@example.com"))).dropped


async def test_sync_and_awaiting_scripts_both_work():
    def sync_route(req, ctx):
        req.forward(NEXT_HOP)

    async def awaiting_route(req, ctx):
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        req.forward(NEXT_HOP)

    for fn in (sync_route, awaiting_route):
        t = make_tester(script(fn))
        out = await t.request(make_request("INVITE", "sip:bob@example.com"))
        assert out.forwarded_to == Target("udp", "10.0.0.2", 5070)


def loose_router():
    async def request_route(req, ctx):
        if ctx.loose_route(req):
            return req.forward()
        req.reply(404)
    return script(request_route)


async def test_loose_route_removes_our_route_and_follows_the_next():
    t = make_tester(loose_router())
    req = make_request("BYE", "sip:bob@10.0.0.9", headers={
        "Route": "<sip:127.0.0.1:5060;lr>, <sip:10.0.0.7;lr>"})
    out = await t.request(req)
    assert out.forwarded_to == Target("udp", "10.0.0.7", 5060)
    assert out.forwarded.ruri == "sip:bob@10.0.0.9"
    assert [str(r.uri) for r in out.forwarded.routes] == ["sip:10.0.0.7;lr"]


async def test_loose_route_with_only_our_route_goes_to_the_ruri():
    t = make_tester(loose_router())
    req = make_request("BYE", "sip:bob@10.0.0.9", headers={"Route": "<sip:example.org;lr>"})
    out = await t.request(req)
    assert out.forwarded_to == Target("udp", "10.0.0.9", 5060)
    assert out.forwarded.header("Route") is None


async def test_loose_route_after_a_strict_router_restores_the_ruri():
    t = make_tester(loose_router())
    # §16.4: a strict router put our Record-Route URI into the R-URI and the real target
    # at the end of the Route set.
    req = make_request("BYE", "sip:127.0.0.1:5060;lr", headers={"Route": "<sip:bob@10.0.0.9>"})
    out = await t.request(req)
    assert out.forwarded.ruri == "sip:bob@10.0.0.9"
    assert out.forwarded_to == Target("udp", "10.0.0.9", 5060)


async def test_loose_route_towards_a_strict_router():
    t = make_tester(loose_router())
    req = make_request("BYE", "sip:bob@10.0.0.9", headers={
        "Route": "<sip:127.0.0.1:5060;lr>, <sip:10.0.0.7>"})
    out = await t.request(req)
    # §16.6 step 6: the strict router's URI becomes the R-URI; the old R-URI is the last Route.
    assert out.forwarded.ruri == "sip:10.0.0.7"
    assert [str(r.uri) for r in out.forwarded.routes] == ["sip:bob@10.0.0.9"]
    assert out.forwarded_to == Target("udp", "10.0.0.7", 5060)


async def test_no_route_header_is_not_loose_routed():
    t = make_tester(loose_router())
    out = await t.request(make_request("BYE", "sip:bob@10.0.0.9"))
    assert out.replied == 404


async def test_request_without_via_is_dropped_not_answered():
    # A reply could not be routed back (RFC 3261 §18.2.2); Kamailio drops these too.
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com", headers={"Via": None})
    out = await t.request(req)
    assert out.dropped
    assert t.core.stats.bad_msgs == 1


FUZZ_REGRESSIONS = sorted(
    (__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "fuzz-regressions").glob("*"))


@pytest.mark.parametrize("path", FUZZ_REGRESSIONS, ids=lambda p: p.name)
async def test_fuzz_regressions_are_absorbed(path):
    # Inputs fuzz/fuzz_parse.py found crashing the core. stateless-branch-bad-from.sip: a
    # request without a magic-cookie branch and a malformed From used to raise
    # SipParseError out of on_message while computing the stateless branch.
    t = make_tester(ScriptTester().script, next_hop="sip:127.0.0.2:5060", raise_errors=False)
    out = await t.request(path.read_bytes(), source="udp:192.0.2.1:5060")
    assert out.error is None


async def test_stateless_reply_carries_received_and_rport_back():
    # RFC 3581 §4: the UA behind NAT learns its public address from the reply's Via.
    async def request_route(req, ctx):
        req.reply(404)

    t = make_tester(script(request_route))
    req = make_request("REGISTER", "sip:example.org", via_host="10.1.1.1:5060")
    req = req.replace(";branch=", ";rport;branch=", 1)
    out = await t.request(req, source="udp:192.0.2.55:40123")
    via = out.reply.top_via
    assert via.received == "192.0.2.55" and via.rport == "40123"
    assert out.replied_to == Target("udp", "192.0.2.55", 40123)


async def test_request_with_unreadable_via_gets_400_at_its_source():
    # Used to be dropped silently: the To-tag hash and the reply target both parsed the
    # Via that sanity had just refused.
    t = make_tester(forward_to())
    req = make_request("INVITE", "sip:bob@example.com").replace(
        "Via: SIP/2.0/UDP 192.0.2.10;", "Via: SIP/2.0/UDP 192.0.2.10:99999;", 1)
    out = await t.request(req, source="udp:192.0.2.10:40000")
    assert out.replied == 400
    assert out.replied_to == Target("udp", "192.0.2.10", 40000)
