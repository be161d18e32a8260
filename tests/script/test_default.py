# SPDX-License-Identifier: Apache-2.0
"""The shipped default script, tested the way an operator tests theirs: through the
testing kit (real proxy core, recorded sends, no sockets)."""

from __future__ import annotations

import pytest

from siprouter.script.default import ACCEPT, ALLOW
from siprouter.script.testing import (
    ScriptTester,
    make_ack,
    make_cancel,
    make_request,
    make_response,
)
from siprouter.transport.types import Source, Target

LISTEN = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "udp:[::1]:5060")
NEXT_HOP = "sip:10.0.0.1:5060"
GATEWAY = Target("udp", "10.0.0.1", 5060)
ALICE = Target("udp", "192.0.2.10", 5060)  # where make_request's Via says to answer


@pytest.fixture
def server(script_tester) -> ScriptTester:
    """The default script on a server for example.com, with no next hop, with
    authentication off (``auth = false``): routing as such. test_default_auth.py tests
    the script as shipped, with authentication."""
    return script_tester(None, domains=["example.com"], listen=LISTEN, hostname="sip.test",
                         params={"auth": False})


@pytest.fixture
def outbound(script_tester) -> ScriptTester:
    """The same server with an outbound next hop."""
    return script_tester(None, domains=["example.com"], listen=LISTEN, hostname="sip.test",
                         next_hop=NEXT_HOP, params={"auth": False})


# --- OPTIONS to the server itself ------------------------------------------------------


@pytest.mark.parametrize("ruri", ["sip:example.com", "sip:sip.test", "sip:127.0.0.1:5060",
                                  "sip:127.0.0.1", "sip:[::1]", "sips:example.com"])
async def test_options_to_the_server_itself_gets_200(server, ruri):
    out = await server.request(make_request("OPTIONS", ruri))
    assert out.replied == 200
    assert out.replied_to == ALICE
    assert out.reply.header("Allow") == ALLOW
    assert "OPTIONS" in out.reply.header("Allow")
    assert out.reply.header("Accept") == ACCEPT
    assert out.reply.to.tag  # §8.2.6.2


async def test_options_ping_is_answered_even_at_max_forwards_0(server):
    # §16.3 step 2: an OPTIONS for us may be answered instead of getting 483.
    out = await server.request(make_request("OPTIONS", "sip:example.com",
                                            headers={"Max-Forwards": "0"}))
    assert out.replied == 200


async def test_options_with_unsupported_require_gets_420(server):
    # §8.2.2.3: the server is the UAS for this OPTIONS, so it checks Require.
    out = await server.request(make_request("OPTIONS", "sip:example.com",
                                            headers={"Require": "foo, 100rel"}))
    assert (out.replied, out.reason) == (420, "Bad Extension")
    assert out.reply.header("Unsupported") == "foo, 100rel"


async def test_options_with_a_user_part_is_not_for_the_server(server):
    out = await server.request(make_request("OPTIONS", "sip:alice@example.com"))
    assert (out.replied, out.reason) == (404, "Not Found")


async def test_options_to_another_port_of_our_address_is_not_ours(server):
    out = await server.request(make_request("OPTIONS", "sip:127.0.0.1:5099"))
    assert (out.replied, out.reason) == (403, "Not relaying")


# --- Max-Forwards ----------------------------------------------------------------------


async def test_max_forwards_0_gets_483(outbound):
    out = await outbound.request(make_request("INVITE", "sip:bob@elsewhere.example",
                                              headers={"Max-Forwards": "0"}))
    assert (out.replied, out.reason) == (483, "Too Many Hops")


async def test_max_forwards_0_on_ack_is_dropped(outbound):
    out = await outbound.request(make_request("ACK", "sip:bob@elsewhere.example",
                                              headers={"Max-Forwards": "0"}))
    assert out.dropped


async def test_max_forwards_1_is_forwarded_with_0(outbound):
    out = await outbound.request(make_request("MESSAGE", "sip:bob@elsewhere.example",
                                              headers={"Max-Forwards": "1"}))
    assert out.forwarded.max_forwards == 0


# --- our own domains: users found by the location service --------------------------------


@pytest.mark.parametrize("ruri", ["sip:bob@example.com", "sip:bob@EXAMPLE.com",
                                  "sip:bob@sip.test", "sip:bob@127.0.0.1",
                                  "sip:bob@127.0.0.1:5060;transport=tcp", "sip:bob@[::1]"])
async def test_requests_for_our_domains_get_404(outbound, ruri):
    out = await outbound.request(make_request("INVITE", ruri))
    assert (out.replied, out.reason) == (404, "Not Found")
    assert out.forwarded is None


async def test_register_without_auth_is_saved_and_the_user_is_found(server):
    out = await server.request(make_request(
        "REGISTER", "sip:example.com", to="<sip:alice@example.com>",
        headers={"Contact": "<sip:alice@192.0.2.10:5060>", "Expires": "600"}))
    assert out.replied == 200
    assert "sip:alice@192.0.2.10:5060" in out.reply.header("Contact")
    call = await server.request(make_request("INVITE", "sip:alice@example.com",
                                             from_="sip:bob@example.com"))
    assert call.forwarded.ruri == "sip:alice@192.0.2.10:5060"


async def test_register_for_a_foreign_domain_is_refused(server):
    out = await server.request(make_request("REGISTER", "sip:elsewhere.example",
                                            to="<sip:alice@elsewhere.example>"))
    assert (out.replied, out.reason) == (403, "Not our domain")


# --- foreign domains -------------------------------------------------------------------


@pytest.mark.parametrize("ruri", ["sip:bob@elsewhere.example", "sip:bob@198.51.100.7",
                                  "tel:+4930123456", "sip:bob@127.0.0.1:5070"])
async def test_foreign_domains_are_not_relayed(server, ruri):
    out = await server.request(make_request("INVITE", ruri))
    assert (out.replied, out.reason) == (403, "Not relaying")
    assert out.forwarded is None


async def test_foreign_domains_go_to_the_next_hop(outbound):
    invite = make_request("INVITE", "sip:bob@elsewhere.example", body="v=0\r\n")
    out = await outbound.request(invite)
    assert out.replied is None
    assert out.forwarded_to == GATEWAY
    fwd = out.forwarded
    assert fwd.method == "INVITE"
    assert fwd.ruri == "sip:bob@elsewhere.example"  # the R-URI is left alone
    assert fwd.max_forwards == 69
    assert fwd.top_via.host == "127.0.0.1" and fwd.top_via.port == 5060
    assert fwd.top_via.branch.startswith("z9hG4bK")
    assert len(fwd.vias) == 2
    assert fwd.body == b"v=0\r\n"


async def test_preloaded_route_is_removed_before_forwarding(outbound):
    # A sender must not choose where we relay to (Kamailio's default removes them too).
    out = await outbound.request(make_request(
        "INVITE", "sip:bob@elsewhere.example",
        headers={"Route": "<sip:127.0.0.1;lr>, <sip:203.0.113.66;lr>"}))
    assert out.forwarded_to == GATEWAY
    assert not out.forwarded.has_header("Route")


async def test_request_over_tcp_is_answered_on_its_connection(server):
    out = await server.request(make_request("INVITE", "sip:bob@elsewhere.example",
                                            transport="TCP"),
                               source="tcp:192.0.2.10:40000")
    assert out.replied == 403
    assert isinstance(out.replied_to, Source) and out.replied_to.port == 40000


# --- what the core refuses whatever the script says ------------------------------------


@pytest.mark.parametrize("next_hop", ["sip:127.0.0.1:5060", "sip:127.0.0.1",
                                      "sip:sip.test", "sip:127.0.0.1;transport=tcp"])
async def test_next_hop_that_is_ourselves_is_a_loop(script_tester, next_hop):
    tester = script_tester(None, domains=["example.com"], listen=LISTEN, next_hop=next_hop,
                           params={"auth": False})
    out = await tester.request(make_request("INVITE", "sip:bob@elsewhere.example"))
    assert (out.replied, out.reason) == (482, "Loop Detected")
    assert out.forwarded is None


@pytest.mark.parametrize("next_hop", ["sip:255.255.255.255", "sip:224.0.0.1:5060",
                                      "sip:[ff02::1]", "sip:0.0.0.0"])
async def test_never_forwards_to_broadcast_or_multicast(script_tester, next_hop):
    tester = script_tester(None, domains=["example.com"], listen=LISTEN, next_hop=next_hop,
                           params={"auth": False})
    out = await tester.request(make_request("INVITE", "sip:bob@elsewhere.example"))
    assert out.replied == 403
    assert out.forwarded is None


async def test_in_dialog_route_to_multicast_is_refused(server):
    out = await server.request(make_request(
        "BYE", "sip:bob@198.51.100.7", to="<sip:bob@elsewhere.example>;tag=b1",
        headers={"Route": "<sip:127.0.0.1;lr>, <sip:239.1.1.1;lr>"}))
    assert out.replied == 403
    assert out.forwarded is None


async def test_in_dialog_route_back_to_us_is_a_loop(server):
    out = await server.request(make_request(
        "BYE", "sip:bob@198.51.100.7", to="<sip:bob@elsewhere.example>;tag=b1",
        headers={"Route": "<sip:127.0.0.1;lr>, <sip:sip.test:5060;lr>"}))
    assert out.replied == 482


# --- in-dialog requests ----------------------------------------------------------------


async def test_in_dialog_request_follows_its_route_set(server):
    out = await server.request(make_request(
        "BYE", "sip:bob@198.51.100.7:5062", to="<sip:bob@elsewhere.example>;tag=b1",
        headers={"Route": "<sip:127.0.0.1;lr>, <sip:10.0.0.7;lr>"}))
    assert out.forwarded_to == Target("udp", "10.0.0.7", 5060)
    assert out.forwarded.header_all("Route") == ["<sip:10.0.0.7;lr>"]  # ours removed
    assert out.forwarded.ruri == "sip:bob@198.51.100.7:5062"


async def test_in_dialog_request_with_only_our_route_goes_to_the_remote_target(server):
    out = await server.request(make_request(
        "INFO", "sip:bob@198.51.100.7:5062", to="<sip:bob@elsewhere.example>;tag=b1",
        headers={"Route": "<sip:127.0.0.1;lr>"}))
    assert out.forwarded_to == Target("udp", "198.51.100.7", 5062)
    assert not out.forwarded.has_header("Route")


async def test_in_dialog_ack_with_route_is_forwarded(server):
    out = await server.request(make_request(
        "ACK", "sip:bob@198.51.100.7:5062", to="<sip:bob@elsewhere.example>;tag=b1",
        headers={"Route": "<sip:127.0.0.1;lr>"}))
    assert out.forwarded_to == Target("udp", "198.51.100.7", 5062)


async def test_in_dialog_request_without_route_gets_404_not_here(outbound):
    out = await outbound.request(make_request("BYE", "sip:bob@198.51.100.7",
                                              to="<sip:bob@elsewhere.example>;tag=b1"))
    assert (out.replied, out.reason) == (404, "Not Here")


# --- ACK and CANCEL, statelessly -------------------------------------------------------


async def test_ack_is_never_answered(server):
    for ruri in ("sip:bob@example.com", "sip:bob@elsewhere.example", "sip:example.com"):
        for to in (None, f"<{ruri}>;tag=x1"):
            out = await server.request(make_request("ACK", ruri, to=to))
            assert out.dropped, (ruri, to)


async def test_ack_for_our_own_404_is_absorbed(outbound):
    invite = make_request("INVITE", "sip:nobody@example.com")
    out = await outbound.request(invite)
    assert out.replied == 404
    ack = await outbound.request(make_ack(invite, out.reply.to.tag))
    assert ack.dropped


async def test_non_2xx_from_the_next_hop_is_acked_here_and_the_callers_ack_absorbed(outbound):
    # §16.7 / §17.1.1.3: the relay is stateful; the ACK for a non-2xx is hop by hop.
    invite = make_request("INVITE", "sip:bob@elsewhere.example")
    out = await outbound.request(invite)
    assert out.forwarded_to == GATEWAY
    assert out.forwarded.top_via.branch.startswith("z9hG4bKtm")
    assert out.forwarded.header("record-route") == "<sip:127.0.0.1:5060;lr>"
    busy = await outbound.response(make_response(out.forwarded, 486, to_tag="gw"),
                                   source="udp:10.0.0.1:5060")
    assert [m.method for m, _ in busy.requests] == ["ACK"]
    assert busy.requests[0][1] == GATEWAY
    assert [m.status for m, _ in busy.responses] == [486]
    ack = await outbound.request(make_ack(invite, busy.responses[0][0].to.tag))
    assert ack.dropped


async def test_cancel_is_answered_here_and_sent_on_once_the_next_hop_rings(outbound):
    invite = make_request("INVITE", "sip:bob@elsewhere.example",
                          headers={"Route": "<sip:127.0.0.1;lr>"})
    out = await outbound.request(invite)
    assert not out.forwarded.has_header("Route")  # preloaded Route removed
    cancel = await outbound.request(make_cancel(invite))
    assert cancel.replied == 200 and cancel.requests == []  # §9.1: not before a provisional
    ringing = await outbound.response(make_response(out.forwarded, 180, to_tag="gw"),
                                      source="udp:10.0.0.1:5060")
    assert [(m.method, d) for m, d in ringing.requests] == [("CANCEL", GATEWAY)]
    sent = ringing.requests[0][0]
    assert sent.top_via.branch == out.forwarded.top_via.branch  # §9.1: the INVITE's branch
    terminated = await outbound.response(make_response(out.forwarded, 487, to_tag="gw"),
                                         source="udp:10.0.0.1:5060")
    assert [m.status for m, _ in terminated.responses] == [487]


async def test_unmatched_cancel_follows_the_invite_to_the_next_hop(outbound):
    invite = make_request("INVITE", "sip:bob@elsewhere.example")
    cancel = await outbound.request(make_cancel(invite))
    assert cancel.forwarded_to == GATEWAY and cancel.forwarded.method == "CANCEL"


async def test_failure_route_sends_busy_calls_to_voicemail(script_tester):
    tester = script_tester(None, domains=["example.com"], listen=LISTEN, hostname="sip.test",
                           next_hop=NEXT_HOP, params={"voicemail": "sip:10.0.0.9:5060", "auth": False})
    out = await tester.request(make_request("INVITE", "sip:bob@elsewhere.example"))
    busy = await tester.response(make_response(out.forwarded, 486, to_tag="gw"),
                                 source="udp:10.0.0.1:5060")
    invites = [(m.ruri, d) for m, d in busy.requests if m.method == "INVITE"]
    assert invites == [("sip:bob@10.0.0.9:5060", Target("udp", "10.0.0.9", 5060))]
    assert busy.responses == []


async def test_failure_route_blocks_3xx_when_asked(script_tester):
    tester = script_tester(None, domains=["example.com"], listen=LISTEN, hostname="sip.test",
                           next_hop=NEXT_HOP, params={"block_3xx": True, "auth": False})
    out = await tester.request(make_request("INVITE", "sip:bob@elsewhere.example"))
    moved = await tester.response(make_response(out.forwarded, 302, to_tag="gw",
                                                headers=[("Contact", "<sip:x@10.9.9.9>")]),
                                  source="udp:10.0.0.1:5060")
    assert [(m.status, m.reason) for m, _ in moved.responses] == [(404, "Not Found")]


@pytest.mark.parametrize("ruri", ["sip:bob@example.com", "sip:bob@elsewhere.example"])
async def test_cancel_of_an_invite_we_answered_gets_200_and_changes_nothing(server, ruri):
    # §9.2: a CANCEL that matches a transaction is answered 200 even when the INVITE
    # already has its final response; it has no other effect.
    invite = make_request("INVITE", ruri)
    first = await server.request(invite)
    assert first.replied in (403, 404)
    out = await server.request(make_cancel(invite))
    assert out.replied == 200 and out.requests == []
    again = await server.request(invite)  # the INVITE's transaction still answers as before
    assert again.replied == first.replied


async def test_cancel_without_any_transaction_gets_481(server):
    out = await server.request(make_cancel(make_request("INVITE", "sip:bob@example.com")))
    assert (out.replied, out.reason) == (481, "Call/Transaction Does Not Exist")


# --- responses -------------------------------------------------------------------------


async def test_response_goes_back_by_via(outbound):
    out = await outbound.request(make_request("INVITE", "sip:bob@elsewhere.example"))
    ringing = make_response(out.forwarded, 180)
    back = await outbound.response(ringing, source="udp:10.0.0.1:5060")
    assert back.forwarded_to == ALICE
    assert back.forwarded.status == 180
    assert len(back.forwarded.vias) == 1  # our Via removed
    assert back.replied is None


async def test_response_not_via_us_is_dropped(server):
    invite = make_request("INVITE", "sip:bob@elsewhere.example")
    out = await server.response(make_response(invite, 200), source="udp:192.0.2.10:5060")
    assert out.dropped


# --- the sanity stage runs before the script -------------------------------------------


async def test_request_without_call_id_gets_400(server):
    out = await server.request(make_request("INVITE", "sip:bob@example.com",
                                            headers={"Call-ID": None}))
    assert out.replied == 400


async def test_unknown_proxy_require_gets_420(outbound):
    out = await outbound.request(make_request("INVITE", "sip:bob@elsewhere.example",
                                              headers={"Proxy-Require": "foo"}))
    assert out.replied == 420
    assert out.reply.header("Unsupported") == "foo"
