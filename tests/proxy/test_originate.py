# SPDX-License-Identifier: Apache-2.0
"""Requests of our own (siprouter/proxy/tm.py ``originate`` / ``ping``, the dispatcher's
probes) through the real core, with the testing kit's recording transport and manual
transaction clock: headers (RFC 3261 §8.1.1), final status to the caller only,
provisionals ignored, Timer E retransmission, Timer F -> 408, transport error -> 503."""

from __future__ import annotations

import asyncio

import pytest

from siprouter.script.testing import ScriptTester, make_response
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import Request, parse_message
from siprouter.transport.types import Target

DST = "sip:192.0.2.50:5060"
FROM = "sip:dispatcher@sip.test"


async def start_ping(t: ScriptTester, uri: str = DST, method: str = "OPTIONS"):
    """The ping as a task, run until its request is sent; returns (task, request)."""
    before = len(t.transport.sent)
    task = asyncio.create_task(t.tm.ping(method, uri, FROM))
    await asyncio.sleep(0)
    sent = t.transport.sent[before:]
    if task.done():
        return task, None
    assert len(sent) == 1, sent
    req = parse_message(sent[0][0])
    assert isinstance(req, Request)
    return task, req


async def test_options_goes_out_with_the_headers_of_8_1_1_to_the_destination() -> None:
    t = ScriptTester()
    task, req = await start_ping(t)
    assert t.transport.sent[-1][1] == Target("udp", "192.0.2.50", 5060)
    assert req.method == "OPTIONS" and req.ruri == DST
    via = req.top_via
    assert len(req.vias) == 1
    assert via.branch.startswith("z9hG4bKtm")
    assert f"{via.host}:{via.port}" == "127.0.0.1:5060"  # sent-by of the outgoing socket
    assert req.header("from").startswith(f"<{FROM}>;tag=") and len(req.from_.tag) >= 8
    assert req.header("to") == f"<{DST}>"
    assert req.call_id
    assert (req.cseq.seq, req.cseq.method) == (1, "OPTIONS")
    assert req.max_forwards == 70
    assert req.header("content-length") == "0" and req.body == b""
    assert t.tm.stats.originated == 1
    task.cancel()


async def test_two_pings_differ_in_branch_call_id_and_tag() -> None:
    t = ScriptTester()
    task1, r1 = await start_ping(t)
    task2, r2 = await start_ping(t)
    assert r1.top_via.branch != r2.top_via.branch
    assert r1.call_id != r2.call_id
    assert r1.from_.tag != r2.from_.tag
    task1.cancel()
    task2.cancel()


@pytest.mark.parametrize("status", [200, 404, 503])
async def test_the_final_status_resolves_the_ping_and_is_not_forwarded(status: int) -> None:
    t = ScriptTester()
    task, req = await start_ping(t)
    out = await t.response(make_response(req, status))
    assert out.dropped  # no server transaction: sent nowhere
    assert await asyncio.wait_for(task, 1) == status
    assert t.core.stats.fwd_replies == 0


async def test_provisional_is_ignored_and_the_final_after_it_counts() -> None:
    t = ScriptTester()
    task, req = await start_ping(t)
    out = await t.response(make_response(req, 100))
    assert out.dropped
    out = await t.response(make_response(req, 180))
    assert out.dropped
    await asyncio.sleep(0)
    assert not task.done()
    out = await t.response(make_response(req, 200))
    assert out.dropped
    assert await asyncio.wait_for(task, 1) == 200


async def test_a_retransmitted_final_is_absorbed_and_not_forwarded() -> None:
    t = ScriptTester()
    calls: list[int] = []
    t.tm.originate("OPTIONS", DST, from_uri=FROM, on_final=lambda s, r: calls.append(s))
    req = parse_message(t.transport.sent[-1][0])
    final = make_response(req, 200)
    assert (await t.response(final)).dropped
    assert (await t.response(final)).dropped
    assert calls == [200]


async def test_no_answer_resolves_408_after_timer_f_with_timer_e_retransmissions() -> None:
    t = ScriptTester()
    task, req = await start_ping(t)
    data = t.transport.sent[-1][0]
    out = t.advance(0.5)  # Timer E: T1
    assert [m.method for m, _ in out.requests] == ["OPTIONS"]
    assert out.sent[0][0] == data and out.sent[0][1] == Target("udp", "192.0.2.50", 5060)
    out = t.advance(1.0)  # then 2*T1
    assert len(out.requests) == 1
    await asyncio.sleep(0)
    assert not task.done()
    t.advance(64 * 0.5)  # Timer F: 64*T1
    assert await asyncio.wait_for(task, 1) == 408
    assert t.tm.stats.timeouts == 1
    assert t.tm.counts()["client"] == 0  # the transaction is gone
    # A response after the timeout is dropped, not forwarded.
    assert (await t.response(make_response(req, 200))).dropped


async def test_no_retransmission_over_tcp() -> None:
    t = ScriptTester(listen=("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"))
    task, req = await start_ping(t, uri="sip:192.0.2.50:5060;transport=tcp")
    assert t.transport.sent[-1][1] == Target("tcp", "192.0.2.50", 5060)
    assert req.top_via.transport.upper() == "TCP"
    out = t.advance(10)
    assert out.dropped
    t.advance(64 * 0.5)
    assert await asyncio.wait_for(task, 1) == 408


async def test_unreachable_destination_resolves_503() -> None:
    t = ScriptTester()
    t.transport.unreachable.add("192.0.2.50")
    task, _ = await start_ping(t)
    assert await asyncio.wait_for(task, 1) == 503
    assert t.tm.stats.transport_errors == 1
    assert t.tm.counts()["client"] == 0


async def test_no_socket_for_the_transport_resolves_503() -> None:
    t = ScriptTester()  # UDP only
    task, _ = await start_ping(t, uri="sip:192.0.2.50:5060;transport=tcp")
    assert await asyncio.wait_for(task, 1) == 503
    assert t.transport.sent == []


async def test_destination_overrides_where_it_goes_not_the_request_uri() -> None:
    t = ScriptTester()
    got: list[int] = []
    t.tm.originate("OPTIONS", "sip:gw@example.net", from_uri=FROM, to_uri="sip:gw@example.net",
                   destination="sip:192.0.2.60:5070", on_final=lambda s, r: got.append(s))
    data, target = t.transport.sent[-1]
    req = parse_message(data)
    assert target == Target("udp", "192.0.2.60", 5070)
    assert req.ruri == "sip:gw@example.net" and req.header("to") == "<sip:gw@example.net>"
    await t.response(make_response(req, 404))
    assert got == [404]


async def test_misuse_raises_local_protocol_error() -> None:
    t = ScriptTester()
    with pytest.raises(LocalProtocolError):
        t.tm.originate("INVITE", DST, from_uri=FROM, on_final=lambda s, r: None)
    with pytest.raises(LocalProtocolError):
        t.tm.originate("OPTIONS", "not a uri", from_uri=FROM, on_final=lambda s, r: None)
    with pytest.raises(LocalProtocolError):
        t.tm.originate("OPTIONS", "tel:+123", from_uri=FROM, on_final=lambda s, r: None)
    assert t.transport.sent == []


async def test_dispatcher_probes_through_ping(tmp_path) -> None:
    from siprouter.modules.dispatcher.destinations import PROBING
    from siprouter.modules.dispatcher.module import Dispatcher

    path = tmp_path / "dispatcher.list"
    path.write_text("1 sip:192.0.2.50:5060\n1 sip:192.0.2.51:5060\n")
    d = Dispatcher(list_file=path, ds_probing_mode=1, ds_probing_threshold=1)
    await d.load()
    t = ScriptTester()
    probing = asyncio.create_task(d.probe_once(t.tm.ping))
    for _ in range(10):  # gather starts the pings a few loop turns later
        await asyncio.sleep(0)
    sent = {target.host: parse_message(data) for data, target in t.transport.sent}
    assert sorted(sent) == ["192.0.2.50", "192.0.2.51"]
    assert all(r.method == "OPTIONS" for r in sent.values())
    await t.response(make_response(sent["192.0.2.50"], 200))
    t.advance(64 * 0.5)  # .51 never answers: 408
    assert await asyncio.wait_for(probing, 1) == 2
    assert d.sets[1].find("sip:192.0.2.50:5060").state == 0
    assert d.sets[1].find("sip:192.0.2.51:5060").state == PROBING


async def test_a_probe_to_ourselves_is_refused_as_a_loop() -> None:
    t = ScriptTester()
    task, req = await start_ping(t, uri="sip:127.0.0.1:5060")
    assert req is None
    assert await asyncio.wait_for(task, 1) == 482
    assert t.transport.sent == []
