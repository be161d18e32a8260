# SPDX-License-Identifier: Apache-2.0
"""The proxy ends a confirmed dialog itself (issue 7, ``dlg.terminate``; Kamailio's
``dlg.end_dlg``): the BYE toward each party as RFC 3261 §12.2.1.1 / §15.1.1 builds it from
the tracked dialog (``dialogs.end_requests``), and sent through the real core and
transaction layer (``TransactionManager.end_dialog``) with the testing kit's recording
transport and manual clock: Request-URI, Route past our own entries (loose and strict
next hops), From/To tags swapped for the caller, CSeq, destination (next proxy, contact,
or the caller's NAT source), the dialog's end and the final statuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from siprouter.proxy.dialogs import (
    CALLEE,
    CALLER,
    DialogState,
    DialogTracker,
    end_requests,
)
from siprouter.proxy.myself import Myself
from siprouter.script.testing import ScriptTester, make_request, make_response, sip_text
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import Request, parse_message
from siprouter.transport.types import ListenSocket, Source, Target

US = "127.0.0.1:5060"
CALLEE_HOST = "192.0.2.30"
CALLEE_CONTACT = f"sip:bob@{CALLEE_HOST}:5062"
CALLER_SRC = "udp:192.0.2.10:5060"

SCRIPT = f'''
def request_route(req, ctx):
    if req.in_dialog:
        ctx.loose_route(req)
        return req.relay()
    req.record_route()
    req.track_dialog()
    req.relay("sip:bob@{CALLEE_HOST}:5062")
'''


def load(text: str) -> Any:
    import types

    mod = types.ModuleType("terminate_script")
    exec(compile(text, "terminate_script", "exec"), mod.__dict__)
    return mod


class Call:
    """A call through the tester: INVITE from the caller, the callee's 200 (with the
    Record-Route values given), the caller's ACK."""

    def __init__(self, t: ScriptTester) -> None:
        self.t = t

    async def setup(self, *, rr_above: list[str] = (), rr_below: list[str] = (),
                    source: str = CALLER_SRC, contact: str | None = None,
                    answer: bool = True, ack: bool = True) -> Any:
        t = self.t
        headers: dict[str, str] = {}
        if rr_below:
            headers["Record-Route"] = ", ".join(rr_below)
        if contact is not None:
            headers["Contact"] = f"<{contact}>"
        text = make_request("INVITE", "sip:bob@example.com", headers=headers)
        self.invite = parse_message(sip_text(text))
        out = await t.request(text, source=source)
        self.branch = out.forwarded
        assert isinstance(self.branch, Request), out
        self.dlg = list(t.tm.dialogs)[-1]  # the newest: this call's
        if not answer:
            return self.dlg
        ours = self.branch.header_all("record-route")  # ours on top of rr_below
        rr = [*rr_above, *ours]
        res = make_response(self.branch, 200, to_tag="callee-tag",
                            headers=[("Record-Route", ", ".join(rr)),
                                     ("Contact", f"<{CALLEE_CONTACT}>")])
        await t.response(res, source=f"udp:{CALLEE_HOST}:5062")
        if ack:
            inv = self.invite
            ack_text = make_request("ACK", CALLEE_CONTACT, call_id=inv.call_id, cseq=1,
                                    from_=inv.header("from"),
                                    to=f"{inv.header('to')};tag=callee-tag",
                                    headers={"Route": f"<sip:{US};lr>"})
            await t.request(ack_text, source=source)
        return self.dlg


def make_tester() -> ScriptTester:
    return ScriptTester(load(SCRIPT), domains=["example.com"])


async def start_end(t: ScriptTester, dlg: Any) -> tuple[asyncio.Task, list[tuple[Request, Any]]]:
    """``end_dialog`` as a task, run until both BYEs are sent; returns (task, [(BYE,
    where it went)] in the order sent: callee first)."""
    before = len(t.transport.sent)
    task = asyncio.create_task(t.tm.end_dialog(dlg))
    await asyncio.sleep(0)
    sent = [(parse_message(data), dest) for data, dest in t.transport.sent[before:]]
    return task, sent


# --- what is built (pure) ---------------------------------------------------------------------


async def test_simple_call_bye_to_both_parties() -> None:
    t = make_tester()
    call = Call(t)
    dlg = await call.setup()
    assert dlg.state is DialogState.CONFIRMED
    inv = call.invite
    task, sent = await start_end(t, dlg)
    assert [m.method for m, _ in sent] == ["BYE", "BYE"]
    (to_callee, callee_dest), (to_caller, caller_dest) = sent
    # Toward the callee, as the caller would send it (§12.2.1.1): R-URI = remote target,
    # no Route (our own Record-Route is the whole set), CSeq = caller's + 1.
    assert to_callee.ruri == CALLEE_CONTACT
    assert to_callee.header_all("route") == []
    assert callee_dest == Target("udp", CALLEE_HOST, 5062)
    assert to_callee.call_id == inv.call_id
    assert to_callee.from_.tag == inv.from_.tag and to_callee.to.tag == "callee-tag"
    assert str(to_callee.from_.uri) == str(inv.from_.uri)
    assert str(to_callee.to.uri) == str(inv.to.uri)
    assert (to_callee.cseq.seq, to_callee.cseq.method) == (2, "BYE")
    assert to_callee.top_via.branch.startswith("z9hG4bKtm") and len(to_callee.vias) == 1
    assert to_callee.max_forwards == 70
    # Toward the caller, as the callee would: tags swapped, R-URI = caller's contact,
    # sent where the caller's requests came from.
    assert to_caller.ruri == inv.contacts[0].uri.raw
    assert to_caller.header_all("route") == []
    assert caller_dest == Target("udp", "192.0.2.10", 5060)
    assert to_caller.from_.tag == "callee-tag" and to_caller.to.tag == inv.from_.tag
    assert str(to_caller.from_.uri) == str(inv.to.uri)
    assert str(to_caller.to.uri) == str(inv.from_.uri)
    assert 1 <= to_caller.cseq.seq < 2**31 and to_caller.cseq.method == "BYE"
    assert to_caller.call_id == inv.call_id
    # The dialog ended at once, before any answer.
    assert dlg.state is DialogState.TERMINATED and dlg.end_reason == "terminated by management"
    assert not task.done()
    out1 = await t.response(make_response(to_callee, 200), source=f"udp:{CALLEE_HOST}:5062")
    out2 = await t.response(make_response(to_caller, 481), source=CALLER_SRC)
    assert out1.dropped and out2.dropped  # for us, not forwarded anywhere
    result = await asyncio.wait_for(task, 1)
    assert [r["side"] for r in result] == [CALLEE, CALLER]
    assert [r["status"] for r in result] == [200, 481]
    assert result[0]["ruri"] == CALLEE_CONTACT and result[0]["cseq"] == 2
    assert len(t.tm.dialogs) == 0


async def test_route_past_our_entries_toward_each_side_through_other_proxies() -> None:
    # Caller -> P1 (192.0.2.11) -> us -> P2 (192.0.2.22) -> callee. The 2xx's
    # Record-Route, top first: P2, us, P1.
    t = make_tester()
    p1, p2 = "<sip:192.0.2.11;lr>", "<sip:192.0.2.22:5070;lr;ftag=x>"
    dlg = await Call(t).setup(rr_above=[p2], rr_below=[p1], source="udp:192.0.2.11:5099")
    assert dlg.route_set == [p2, f"<sip:{US};lr>", p1]
    task, sent = await start_end(t, dlg)
    (to_callee, callee_dest), (to_caller, caller_dest) = sent
    assert to_callee.header_all("route") == [p2]
    assert to_callee.ruri == CALLEE_CONTACT
    assert callee_dest == Target("udp", "192.0.2.22", 5070)  # the next loose router
    assert to_caller.header_all("route") == [p1]
    assert caller_dest == Target("udp", "192.0.2.11", 5060)  # P1, not the caller's source
    task.cancel()


def _confirmed(route_set: list[str], *, callee_cseq: int | None = None) -> Any:
    tracker = DialogTracker(id_prefix="t.")
    text = make_request("INVITE", "sip:bob@example.com", cseq=4)
    inv = parse_message(sip_text(text))
    dlg = tracker.create(inv, 0.0)
    res = parse_message(make_response(inv, 200, to_tag="bt", headers=[
        ("Record-Route", ", ".join(route_set)), ("Contact", f"<{CALLEE_CONTACT}>")]))
    tracker.on_response(dlg, res, 1.0)
    if callee_cseq is not None:
        info = make_request("INFO", inv.contacts[0].uri.raw, call_id=inv.call_id,
                            cseq=callee_cseq, from_=f"<{inv.to.uri}>;tag=bt",
                            to=inv.header("from"))
        tracker.on_request(parse_message(sip_text(info)), 2.0)
    return tracker, dlg, inv


def _myself() -> Myself:
    return Myself(["example.com"], [ListenSocket("udp", "127.0.0.1", 5060),
                                    ListenSocket("tcp", "127.0.0.1", 5060)])


def test_strict_next_hop_goes_in_the_request_uri_and_the_target_last_in_route() -> None:
    # §12.2.1.1: the first route has no lr: it becomes the R-URI, the remote target
    # the last Route value.
    strict = "<sip:192.0.2.22:5070>"
    _, dlg, inv = _confirmed([strict, f"<sip:{US};lr>"])
    to_callee, to_caller = end_requests(dlg, _myself().is_myself)
    assert to_callee.ruri == "sip:192.0.2.22:5070"
    assert to_callee.routes == (f"<{CALLEE_CONTACT}>",)
    assert to_callee.next_hop == "sip:192.0.2.22:5070"
    assert to_caller.routes == () and to_caller.ruri == inv.contacts[0].uri.raw


def test_double_record_route_of_ours_is_skipped_both_entries() -> None:
    double = [f"<sip:{US};transport=tcp;lr;r2=on>", f"<sip:{US};lr;r2=on>"]
    _, dlg, _ = _confirmed(["<sip:192.0.2.22;lr>", *double, "<sip:192.0.2.11;lr>"])
    to_callee, to_caller = end_requests(dlg, _myself().is_myself)
    assert to_callee.routes == ("<sip:192.0.2.22;lr>",)
    assert to_callee.next_hop == "sip:192.0.2.22;lr"
    assert to_caller.routes == ("<sip:192.0.2.11;lr>",)
    assert to_caller.source is None  # a proxy between us and the caller: route to it


def test_cseq_follows_what_each_side_sent() -> None:
    _, dlg, _ = _confirmed([f"<sip:{US};lr>"], callee_cseq=7)
    to_callee, to_caller = end_requests(dlg, _myself().is_myself)
    assert to_callee.cseq == 5  # the INVITE's 4, + 1
    assert to_caller.cseq == 8  # the callee's INFO 7, + 1
    _, dlg, _ = _confirmed([f"<sip:{US};lr>"])
    assert end_requests(dlg, _myself().is_myself, fresh_cseq=1234)[1].cseq == 1234


def test_without_our_record_route_each_party_gets_its_peers_whole_route_set() -> None:
    _, dlg, _ = _confirmed(["<sip:192.0.2.22;lr>", "<sip:192.0.2.11;lr>"])
    to_callee, to_caller = end_requests(dlg, _myself().is_myself)
    assert to_callee.routes == ("<sip:192.0.2.11;lr>", "<sip:192.0.2.22;lr>")
    assert to_caller.routes == ("<sip:192.0.2.22;lr>", "<sip:192.0.2.11;lr>")


def test_only_a_confirmed_dialog_can_be_ended() -> None:
    tracker = DialogTracker(id_prefix="t.")
    inv = parse_message(sip_text(make_request("INVITE", "sip:bob@example.com")))
    dlg = tracker.create(inv, 0.0)
    with pytest.raises(LocalProtocolError, match="UNCONFIRMED, not confirmed"):
        end_requests(dlg, _myself().is_myself)
    tracker.on_response(dlg, parse_message(make_response(inv, 180, to_tag="e")), 1.0)
    with pytest.raises(LocalProtocolError, match="EARLY, not confirmed"):
        end_requests(dlg, _myself().is_myself)
    tracker.on_response(dlg, parse_message(make_response(inv, 200, to_tag="e", headers=[
        ("Contact", f"<{CALLEE_CONTACT}>")])), 2.0)
    assert dlg.state is DialogState.CONFIRMED_NA
    end_requests(dlg, _myself().is_myself)  # answered, ACK not seen: may be ended
    tracker.terminate(dlg, "bye", 3.0)
    with pytest.raises(LocalProtocolError, match="TERMINATED"):
        end_requests(dlg, _myself().is_myself)


# --- through the transaction layer -------------------------------------------------------------


async def test_an_early_dialog_is_refused_and_left_alone() -> None:
    t = make_tester()
    dlg = await Call(t).setup(answer=False)
    before = len(t.transport.sent)
    with pytest.raises(LocalProtocolError, match="not confirmed"):
        await t.tm.end_dialog(dlg)
    assert len(t.transport.sent) == before
    assert dlg.state is DialogState.UNCONFIRMED


async def test_caller_behind_nat_gets_its_bye_at_the_source_address() -> None:
    # The caller's Contact is a private address; its requests came from the NAT's
    # public address and port: the BYE goes there (symmetric, RFC 3581 §4), with the
    # contact as Request-URI.
    t = make_tester()
    inv_contact = "sip:alice@10.0.0.5:5060"
    dlg = await Call(t).setup(source="udp:198.51.100.7:40123", contact=inv_contact)
    task, sent = await start_end(t, dlg)
    (_, _), (to_caller, caller_dest) = sent
    assert to_caller.ruri == inv_contact
    assert caller_dest == Target("udp", "198.51.100.7", 40123)
    task.cancel()


async def test_caller_over_tcp_gets_its_bye_on_its_connection() -> None:
    t = ScriptTester(load(SCRIPT), domains=["example.com"],
                     listen=("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"))
    tcp = t.sockets[1]
    source = Source("tcp", "192.0.2.10", 50123, tcp, conn_id=42)
    dlg = await Call(t).setup(source=source, ack=False)
    task, sent = await start_end(t, dlg)
    (_, _), (to_caller, caller_dest) = sent
    assert caller_dest == Target("tcp", "192.0.2.10", 50123, 42)
    assert to_caller.top_via.transport == "TCP"
    task.cancel()


async def test_listeners_hear_the_end_and_no_answer_gives_408_after_timer_f() -> None:
    t = make_tester()
    dlg = await Call(t).setup()
    heard: list[tuple[Any, Any, str | None]] = []
    t.tm.dialogs.add_listener(lambda d, old, new: heard.append((old, new, d.end_reason)))
    task, sent = await start_end(t, dlg)
    assert heard == [(DialogState.CONFIRMED, DialogState.TERMINATED, "terminated by management")]
    assert len(sent) == 2
    out = t.advance(0.5)  # Timer E retransmits both over UDP
    assert sorted(m.method for m, _ in out.requests) == ["BYE", "BYE"]
    t.advance(64 * 0.5)  # Timer F
    result = await asyncio.wait_for(task, 1)
    assert [r["status"] for r in result] == [408, 408]


# --- the management command ----------------------------------------------------------------------


async def test_rpc_by_call_id_and_from_tag_and_its_errors() -> None:
    from types import SimpleNamespace

    from siprouter.mgmt.commands import CoreCommands
    from siprouter.mgmt.errors import ErrorCode, RpcError

    t = make_tester()
    commands = CoreCommands(SimpleNamespace(core=t.core))
    early = await Call(t).setup(answer=False)
    with pytest.raises(RpcError, match=f"dialog {early.id} not terminated: .*not confirmed") as err:
        await commands.dlg_terminate(id=early.id)
    assert err.value.code == ErrorCode.SERVER_ERROR and early.is_live
    with pytest.raises(RpcError, match="give the dialog's id") as err:
        await commands.dlg_terminate()
    assert err.value.code == ErrorCode.INVALID_PARAMS
    call = Call(t)
    dlg = await call.setup()
    with pytest.raises(RpcError, match="no dialog with Call-ID .*; dlg.list shows the live ones"):
        await commands.dlg_terminate(call_id=dlg.call_id, from_tag="other")
    before = len(t.transport.sent)
    task = asyncio.create_task(commands.dlg_terminate(call_id=dlg.call_id, from_tag=dlg.from_tag))
    await asyncio.sleep(0)
    byes = [parse_message(data) for data, _ in t.transport.sent[before:]]
    assert [b.method for b in byes] == ["BYE", "BYE"]
    for bye in byes:
        await t.response(make_response(bye, 200))
    result = await asyncio.wait_for(task, 1)
    assert result["id"] == dlg.id and result["end_reason"] == "terminated by management"
    assert [b["status"] for b in result["bye"]] == [200, 200]
    assert early.is_live  # the other call is untouched
