# SPDX-License-Identifier: Apache-2.0
"""The stateful proxy (siprouter/proxy/tm.py) through the real core, with the testing
kit's recording transport and a manual transaction clock: forking, best response,
CANCEL, timeouts, retransmissions, Record-Route, failure handlers, phases."""

from __future__ import annotations

import asyncio
import types

import pytest

from siprouter.script.testing import ScriptTester, make_request, make_response, sip_text
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import Request, parse_message

B1 = "sip:bob@192.0.2.30:5060"
B2 = "sip:bob@192.0.2.31:5060"
VM = "sip:vm@192.0.2.40:5060"


def script(source: str) -> types.ModuleType:
    mod = types.ModuleType("test_script")
    exec(source, mod.__dict__)  # noqa: S102 - test scripts written here
    return mod


FORK = script(f'''
def request_route(req, ctx):
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        if req.method == "ACK":
            return req.drop()
        return req.reply(404)
    if req.method == "CANCEL":
        return req.relay()
    req.record_route()
    targets = ctx.params.get("targets", ["{B1}", "{B2}"])
    kw = ctx.params.get("kw", {{}})
    if ctx.params.get("failure"):
        kw = dict(kw, on_failure=failure)
    req.relay(*targets, **kw)

def failure(req, res, ctx):
    ctx.params["seen"].append(res.status)
    if res.status in (486, 408):
        req.relay("{VM}")
''')


def make_tester(**params) -> ScriptTester:
    return ScriptTester(FORK, params=params)


def branch_to(out, uri: str) -> Request:
    for msg, _dest in out.requests:
        if msg.ruri == uri:
            return msg
    raise AssertionError(f"no request to {uri} in {[m.ruri for m, _ in out.requests]}")


def statuses(out) -> list[int]:
    return [m.status for m, _ in out.responses]


def methods(out) -> list[str]:
    return [m.method for m, _ in out.requests]


async def invite(t: ScriptTester, **kw):
    text = make_request("INVITE", "sip:bob@example.com", **kw)
    out = await t.request(text)
    return text, out


async def test_parallel_fork_sends_one_branch_per_target_with_own_via_and_record_route() -> None:
    t = make_tester()
    _, out = await invite(t)
    assert out.replied is None
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    assert b1.top_via.branch != b2.top_via.branch
    assert b1.top_via.branch.startswith("z9hG4bKtm")
    assert b1.max_forwards == 69
    assert b1.header("record-route") == "<sip:127.0.0.1:5060;lr>"
    assert len(t.tm.server) == 1 and len(t.tm.client) == 2


async def test_provisional_forwarded_100_absorbed_and_2xx_cancels_the_other_branch() -> None:
    t = make_tester()
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    out = await t.response(make_response(b1, 100))
    assert out.dropped  # §16.7 step 5: 100 not forwarded
    out = await t.response(make_response(b1, 180, to_tag="t1"))
    assert statuses(out) == [180]
    fwd = out.responses[0][0]
    assert len(fwd.vias) == 1  # our Via removed
    out = await t.response(make_response(b1, 200, to_tag="t1"))
    assert statuses(out) == [200]
    # b2 never answered: no CANCEL before its provisional (§9.1) ...
    assert methods(out) == []
    out = await t.response(make_response(b2, 180, to_tag="t2"))
    # ... and as soon as it has one, the CANCEL goes; its 180 is not forwarded any more.
    assert methods(out) == ["CANCEL"]
    assert statuses(out) == []
    cancel = out.requests[0][0]
    assert cancel.ruri == B2 and cancel.top_via.branch == b2.top_via.branch
    assert cancel.cseq.seq == b2.cseq.seq and cancel.cseq.method == "CANCEL"
    # The 487 for it is ACKed by us (hop by hop) and never reaches the caller.
    out = await t.response(make_response(cancel, 200))
    assert out.dropped
    out = await t.response(make_response(b2, 487, to_tag="t2"))
    assert methods(out) == ["ACK"] and statuses(out) == []


async def test_every_2xx_reaches_the_caller() -> None:
    t = make_tester()
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    await t.response(make_response(b2, 180, to_tag="t2"))
    out = await t.response(make_response(b1, 200, to_tag="t1"))
    assert statuses(out) == [200]
    assert methods(out) == ["CANCEL"]  # b2 had a provisional: cancelled at once
    out = await t.response(make_response(b2, 200, to_tag="t2"))
    assert statuses(out) == [200]  # RFC 3261 §16.7 step 5: each 2xx is forwarded
    # A retransmitted 2xx goes on too (the caller's ACK must reach the callee).
    out = await t.response(make_response(b1, 200, to_tag="t1"))
    assert statuses(out) == [200]


async def test_best_response_is_lowest_class_and_failure_handler_can_add_a_branch() -> None:
    seen: list[int] = []
    t = make_tester(failure=True, seen=seen)
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    out = await t.response(make_response(b1, 503, to_tag="a"))
    assert statuses(out) == [] and methods(out) == ["ACK"]
    out = await t.response(make_response(b2, 486, to_tag="b"))
    assert seen == [486]
    vm = branch_to(out, VM)
    assert statuses(out) == []
    assert vm.header("record-route") == "<sip:127.0.0.1:5060;lr>"
    assert vm.max_forwards == 69
    out = await t.response(make_response(vm, 200, to_tag="vm"))
    assert statuses(out) == [200]


async def test_without_failure_handler_the_best_response_goes_upstream() -> None:
    t = make_tester()
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    await t.response(make_response(b1, 486, to_tag="a"))
    out = await t.response(make_response(b2, 404, to_tag="b"))
    assert statuses(out) == [404]  # same class: the lower code


async def test_503_alone_becomes_500() -> None:
    t = make_tester(targets=[B1])
    _, out = await invite(t)
    out = await t.response(make_response(branch_to(out, B1), 503, to_tag="a"))
    assert statuses(out) == [500]


async def test_401_and_407_challenges_are_merged() -> None:
    t = make_tester()
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    await t.response(make_response(b1, 401, to_tag="a", headers=[
        ("WWW-Authenticate", 'Digest realm="one", nonce="1"')]))
    out = await t.response(make_response(b2, 407, to_tag="b", headers=[
        ("Proxy-Authenticate", 'Digest realm="two", nonce="2"')]))
    assert statuses(out) == [401]
    res = out.responses[0][0]
    assert res.header_all("www-authenticate") == ['Digest realm="one", nonce="1"']
    assert res.header_all("proxy-authenticate") == ['Digest realm="two", nonce="2"']


async def test_6xx_ends_the_fork_and_cancels_the_rest() -> None:
    seen: list[int] = []
    t = make_tester(failure=True, seen=seen)
    _, out = await invite(t)
    b1, b2 = branch_to(out, B1), branch_to(out, B2)
    await t.response(make_response(b2, 183, to_tag="b"))
    out = await t.response(make_response(b1, 603, to_tag="a"))
    assert methods(out) == ["ACK", "CANCEL"] and statuses(out) == []
    out = await t.response(make_response(b2, 487, to_tag="b"))
    assert statuses(out) == [603]
    assert seen == []  # a 6xx is final: no failure handler, no new branches


async def test_no_answer_times_out_with_408_after_fr_timer() -> None:
    t = make_tester(targets=[B1], kw={"fr_timer": 5.0})
    _, out = await invite(t)
    b1 = branch_to(out, B1)
    # Timer A: the INVITE is retransmitted at 0.5 s, then 1 s later …
    out = t.advance(0.5)
    assert methods(out) == ["INVITE"] and out.requests[0][0].top_via.branch == b1.top_via.branch
    out = t.advance(4.4)
    assert statuses(out) == [100] or statuses(out) == []
    out = t.advance(0.2)
    assert 408 in statuses(out)


async def test_trying_is_sent_after_200ms_without_a_provisional() -> None:
    t = make_tester(targets=[B1])
    await invite(t)
    assert statuses(t.advance(0.1)) == []
    assert statuses(t.advance(0.15)) == [100]


async def test_retransmitted_invite_creates_no_second_branch_and_gets_the_last_response() -> None:
    t = make_tester(targets=[B1])
    text, out = await invite(t)
    b1 = branch_to(out, B1)
    out = await t.request(text)
    assert out.dropped
    await t.response(make_response(b1, 180, to_tag="x"))
    out = await t.request(text)
    assert statuses(out) == [180] and methods(out) == []
    assert t.tm.stats.client_created == 1


async def test_cancel_gets_200_cancels_ringing_branches_and_487_goes_upstream() -> None:
    t = make_tester()
    text, out = await invite(t)
    b1, _b2 = branch_to(out, B1), branch_to(out, B2)
    await t.response(make_response(b1, 180, to_tag="a"))
    inv = parse_message(sip_text(text))
    cancel_text = (f"CANCEL {inv.ruri} SIP/2.0\r\nVia: {inv.header('via')}\r\n"
                   f"From: {inv.header('from')}\r\nTo: {inv.header('to')}\r\n"
                   f"Call-ID: {inv.call_id}\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\n"
                   "Content-Length: 0\r\n\r\n")
    out = await t.request(cancel_text)
    assert statuses(out) == [200]
    assert [(m.method, m.ruri) for m, _ in out.requests] == [("CANCEL", B1)]
    assert t.tm.server[next(iter(t.tm.server))].canceled
    out = await t.response(make_response(b1, 487, to_tag="a"))
    assert methods(out) == ["ACK"] and statuses(out) == []  # b2 still pending
    # b2 never answered: when its timer runs out the proxy makes its 487 itself.
    out = t.advance(33)
    assert set(statuses(out)) == {487}  # then Timer G retransmits it until the ACK
    # The caller's ACK for the 487 is absorbed (hop by hop).
    ack = (f"ACK {inv.ruri} SIP/2.0\r\nVia: {inv.header('via')}\r\n"
           f"From: {inv.header('from')}\r\nTo: {out.responses[0][0].header('to')}\r\n"
           f"Call-ID: {inv.call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\n"
           "Content-Length: 0\r\n\r\n")
    out = await t.request(ack)
    assert out.dropped
    assert t.tm.stats.absorbed_acks == 1


async def test_cancel_without_transaction_is_forwarded_statelessly() -> None:
    t = make_tester()
    cancel = make_request("CANCEL", B1)
    out = await t.request(cancel)
    assert methods(out) == ["CANCEL"] and out.requests[0][0].top_via.branch.startswith("z9hG4bKsl")


async def test_timer_c_cancels_a_ringing_branch_and_the_caller_gets_408() -> None:
    t = make_tester(targets=[B1], kw={"fr_inv_timer": 10.0})
    _, out = await invite(t)
    b1 = branch_to(out, B1)
    await t.response(make_response(b1, 180, to_tag="a"))
    out = t.advance(10.0)
    assert methods(out) == ["CANCEL"]
    out = await t.response(make_response(b1, 487, to_tag="a"))
    assert statuses(out) == [408]


async def test_serial_forking_by_q() -> None:
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    req.append_branch("{B2}", q=0.5)
    req.append_branch("{VM}", q=0.1)
    req.relay("{B1}", serial=True)
'''))
    _, out = await invite(t)
    assert [m.ruri for m, _ in out.requests] == [B1]
    out = await t.response(make_response(out.requests[0][0], 486, to_tag="a"))
    assert [m.ruri for m, _ in out.requests if m.method == "INVITE"] == [B2]
    out = await t.response(make_response(branch_to(out, B2), 480, to_tag="b"))
    assert [m.ruri for m, _ in out.requests if m.method == "INVITE"] == [VM]
    out = await t.response(make_response(branch_to(out, VM), 404, to_tag="c"))
    assert statuses(out) == [404]


@pytest.mark.parametrize(("mode", "expect"), [("forward", 302), ("block", 404)])
async def test_3xx_forward_or_block(mode: str, expect: int) -> None:
    t = make_tester(targets=[B1], kw={"on_3xx": mode})
    _, out = await invite(t)
    out = await t.response(make_response(branch_to(out, B1), 302, to_tag="a",
                                         headers=[("Contact", f"<{VM}>")]))
    assert statuses(out) == [expect]


async def test_3xx_follow_turns_contacts_into_branches() -> None:
    t = make_tester(targets=[B1], kw={"on_3xx": "follow"})
    _, out = await invite(t)
    out = await t.response(make_response(branch_to(out, B1), 302, to_tag="a",
                                         headers=[("Contact", f"<{VM}>, <{B2}>;q=0.5")]))
    assert statuses(out) == []
    assert sorted(m.ruri for m, _ in out.requests if m.method == "INVITE") == sorted([VM, B2])
    out = await t.response(make_response(branch_to(out, VM), 200, to_tag="v"))
    assert statuses(out) == [200]


async def test_redirect_server_replies_302_with_contacts() -> None:
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    req.redirect("{B1}", "<{B2}>;q=0.5")
'''))
    _, out = await invite(t)
    assert out.replied == 302
    assert out.reply.header("contact") == f"<{B1}>, <{B2}>;q=0.5"


async def test_non_invite_relay_and_retransmission_absorbed() -> None:
    t = make_tester(targets=[B1])
    bye = make_request("BYE", "sip:bob@example.com", to="<sip:bob@example.com>;tag=x",
                       headers={"Route": "<sip:127.0.0.1:5060;lr>"})
    out = await t.request(bye)
    assert methods(out) == ["BYE"]
    fwd = out.requests[0][0]
    assert fwd.header("route") is None  # our Route removed by loose_route
    out = await t.response(make_response(fwd, 200))
    assert statuses(out) == [200]
    out = await t.request(bye)
    assert statuses(out) == [200] and methods(out) == []


async def test_double_record_route_when_transport_changes() -> None:
    t = ScriptTester(FORK, listen=["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"],
                     params={"targets": ["sip:bob@192.0.2.30:5060;transport=tcp"]})
    _, out = await invite(t)
    b = out.requests[0][0]
    assert b.header("record-route") == (
        "<sip:127.0.0.1:5060;transport=tcp;lr;r2=on>, <sip:127.0.0.1:5060;lr;r2=on>")
    # In-dialog, both of our Routes are removed.
    bye = make_request("BYE", "sip:alice@192.0.2.10", to="<sip:bob@example.com>;tag=x",
                       headers={"Route": "<sip:127.0.0.1:5060;transport=tcp;lr;r2=on>, "
                                         "<sip:127.0.0.1:5060;lr;r2=on>"})
    out = await t.request(bye, source="tcp:192.0.2.30:40000")
    assert methods(out) == ["BYE"]
    assert out.requests[0][0].header("route") is None
    assert out.forwarded_to.proto == "udp"


async def test_on_branch_can_edit_or_drop_a_branch_and_on_reply_sees_responses() -> None:
    seen: list[int] = []
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    req.relay("{B1}", "{B2}", on_branch=branch, on_reply=reply)

def branch(req, ctx):
    if req.ruri == "{B2}":
        return req.drop()
    req.add_header("X-Branch", "yes")

def reply(res, ctx):
    ctx.params["seen"].append(res.status)
    if res.status == 183:
        res.drop()
'''), params={"seen": seen})
    _, out = await invite(t)
    assert [m.ruri for m, _ in out.requests] == [B1]
    b1 = out.requests[0][0]
    assert b1.header("x-branch") == "yes"
    out = await t.response(make_response(b1, 183, to_tag="a"))
    assert statuses(out) == []
    out = await t.response(make_response(b1, 200, to_tag="a"))
    assert statuses(out) == [200]
    assert seen == [183, 200]


@pytest.mark.parametrize(("where", "verb", "message"), [
    ("branch", "req.reply(500)", "reply() cannot be used in on_branch"),
    ("branch", "req.relay()", "relay() cannot be used in on_branch"),
    ("failure", "req.forward()", "forward() cannot be used in on_failure"),
    ("failure", "req.drop()", "drop() cannot be used in on_failure"),
    ("failure", "req.record_route()", "record_route() cannot be used in on_failure"),
])
async def test_verbs_in_the_wrong_phase_raise_a_clear_error(where: str, verb: str,
                                                            message: str) -> None:
    errors: list[Exception] = []
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    req.relay("{B1}", on_branch=branch if "{where}" == "branch" else None,
              on_failure=failure)

def branch(req, ctx):
    try:
        {verb}
    except Exception as e:
        ctx.params["errors"].append(e)

def failure(req, res, ctx):
    try:
        {verb}
    except Exception as e:
        ctx.params["errors"].append(e)
'''), params={"errors": errors})
    _, out = await invite(t)
    if where == "failure":
        await t.response(make_response(out.requests[0][0], 486, to_tag="a"))
    assert len(errors) == 1
    assert isinstance(errors[0], LocalProtocolError)
    assert message in str(errors[0])


async def test_final_response_cannot_be_dropped_in_on_reply() -> None:
    errors: list[Exception] = []
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    req.relay("{B1}", on_reply=reply)

def reply(res, ctx):
    try:
        res.drop()
    except Exception as e:
        ctx.params["errors"].append(e)
'''), params={"errors": errors})
    _, out = await invite(t)
    out = await t.response(make_response(out.requests[0][0], 486, to_tag="a"))
    assert statuses(out) == [486]
    assert "drop() of a final response (486) cannot be used in on_reply" in str(errors[0])


async def test_script_reply_to_invite_is_stateful_and_its_ack_absorbed() -> None:
    t = ScriptTester(script('''
def request_route(req, ctx):
    if req.method == "ACK":
        ctx.params["acks"].append(req)
        return req.drop()
    req.reply(486, "Busy Here")
'''), params={"acks": []})
    text, out = await invite(t)
    assert out.replied == 486
    # A retransmission gets the same response without running the script.
    out2 = await t.request(text)
    assert statuses(out2) == [486]
    assert out2.responses[0][0].to.tag == out.reply.to.tag
    # UDP: Timer G retransmits the 486 until the ACK comes.
    assert statuses(t.advance(0.5)) == [486]
    inv = parse_message(sip_text(text))
    ack = (f"ACK {inv.ruri} SIP/2.0\r\nVia: {inv.header('via')}\r\nFrom: {inv.header('from')}\r\n"
           f"To: {out.reply.header('to')}\r\nCall-ID: {inv.call_id}\r\nCSeq: 1 ACK\r\n"
           "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    out3 = await t.request(ack)
    assert out3.dropped and t.context.params["acks"] == []
    assert statuses(t.advance(5)) == []


async def test_dialog_tracking_through_a_call() -> None:
    t = ScriptTester(script(f'''
def request_route(req, ctx):
    if req.in_dialog:
        ctx.loose_route(req)
        return req.relay()
    req.record_route()
    req.track_dialog()
    req.relay("{B1}")
'''))
    text, out = await invite(t)
    b1 = out.requests[0][0]
    dialogs = t.context.dialogs
    assert len(list(dialogs)) == 1
    dlg = next(iter(dialogs))
    await t.response(make_response(b1, 180, to_tag="callee"))
    assert dlg.state.name == "EARLY"
    await t.response(make_response(b1, 200, to_tag="callee"))
    assert dlg.state.name == "CONFIRMED_NA"
    inv = parse_message(sip_text(text))
    bye = make_request("BYE", "sip:bob@192.0.2.30", call_id=inv.call_id, cseq=2,
                       from_=inv.header("from"), to=f"{inv.header('to')};tag=callee",
                       headers={"Route": "<sip:127.0.0.1:5060;lr>"})
    await t.request(bye)
    assert dlg.state.name == "TERMINATED"


async def test_transport_error_on_a_branch_counts_as_503_and_the_caller_gets_500() -> None:
    t = make_tester(targets=[B1])
    t.transport.unreachable.add("192.0.2.30")
    _, out = await invite(t)
    assert statuses(out) == [500]  # §16.7 step 6: a lone 503 is not forwarded
    assert t.tm.stats.transport_errors == 1


async def test_transport_error_on_one_fork_branch_lets_the_other_win() -> None:
    t = make_tester()
    t.transport.unreachable.add("192.0.2.30")
    _, out = await invite(t)
    b2 = branch_to(out, B2)
    out = await t.response(make_response(b2, 486, to_tag="b"))
    assert statuses(out) == [486]


async def test_timer_queue_rearms_for_earlier_deadlines_after_a_timer_reschedules_itself() -> None:
    # Regression (found by the SIPp timeout tests): a timer that schedules a later
    # deadline from its on_timer must not push back the other, earlier ones.
    import asyncio

    from siprouter.proxy.tm import TimerQueue

    loop = asyncio.get_running_loop()
    q = TimerQueue(loop)
    fired: dict[str, float] = {}

    class Item:
        def __init__(self, name: str, again: float | None) -> None:
            self.name, self.again, self._due = name, again, None

        def on_timer(self, now: float) -> None:
            fired.setdefault(self.name, now)
            if self.again is not None:
                q.schedule(self, now + self.again)
                self.again = None

    start = loop.time()
    a, b = Item("a", 5.0), Item("b", None)
    q.schedule(a, start + 0.05)
    q.schedule(b, start + 0.15)
    await asyncio.sleep(0.4)
    assert "b" in fired
    assert fired["b"] - start < 0.15 + TimerQueueSlack


TimerQueueSlack = 0.1  # one 50 ms tick and a loaded box


async def test_a_finished_transaction_is_not_kept_alive_by_its_stale_timer_entries() -> None:
    # Timer C (minutes) stays in the heap after the 200; it must not hold the branch.
    import gc
    import weakref

    t = make_tester(targets=[B1])
    _, out = await invite(t)
    b1 = branch_to(out, B1)
    await t.response(make_response(b1, 180, to_tag="a"))
    await t.response(make_response(b1, 200, to_tag="a"))
    branch = next(iter(t.tm.client.values()))
    ref = weakref.ref(branch)
    del branch
    t.advance(40)  # Timers L and M end both transactions; Timer C's entry is still queued
    assert not t.tm.client and not t.tm.server
    assert len(t.timers) > 0
    gc.collect()
    assert ref() is None


async def test_path_becomes_the_branchs_route_headers() -> None:
    # RFC 3327 §5.3: a contact registered through an edge proxy is reached through it:
    # the stored Path URIs go on top as Route headers, and the first one is the next hop.
    t = ScriptTester(script('''
def request_route(req, ctx):
    req.path = ("sip:10.9.0.1:5070;lr", "sip:10.9.0.2;lr")
    req.append_branch("sip:bob@10.0.0.3", path=["<sip:10.9.0.3:5090;lr>"])
    req.relay()
'''))
    _, out = await invite(t)
    (first, dest1), (second, dest2) = out.requests
    assert first.header_all("Route")[:2] == ["<sip:10.9.0.1:5070;lr>", "<sip:10.9.0.2;lr>"]
    assert (dest1.host, dest1.port) == ("10.9.0.1", 5070)
    assert second.ruri == "sip:bob@10.0.0.3"
    assert second.header_all("Route") == ["<sip:10.9.0.3:5090;lr>"]
    assert (dest2.host, dest2.port) == ("10.9.0.3", 5090)


async def test_a_request_whose_script_waits_absorbs_its_retransmissions() -> None:
    # A REGISTER whose script awaits the database must not run through the script a
    # second time when the phone retransmits it (a nonce count would be seen twice, a
    # binding saved twice); once answered, a retransmission gets the same answer.
    t = ScriptTester(script('''
import asyncio
runs = []
gate = asyncio.Event()
async def request_route(req, ctx):
    runs.append(req.method)
    await gate.wait()
    req.reply(200, "Saved")
'''))
    text = sip_text(make_request("REGISTER", "sip:example.com"))
    src = t.source("udp:192.0.2.10:5060")
    t.core.on_message(text, src)
    t.core.on_message(text, src)  # retransmitted while the script waits
    await asyncio.sleep(0)
    t.script.module.gate.set()
    await t.core.drain()
    assert t.script.module.runs == ["REGISTER"]
    assert [m.status for m, _ in _responses(t.transport.sent)] == [200]
    t.core.on_message(text, src)  # retransmitted after the answer
    await t.core.drain()
    assert [m.status for m, _ in _responses(t.transport.sent)] == [200, 200]
    assert t.script.module.runs == ["REGISTER"]


def _responses(sent):
    out = []
    for data, target in sent:
        msg = parse_message(data)
        if not hasattr(msg, "method"):
            out.append((msg, target))
    return out
