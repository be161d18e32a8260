# SPDX-License-Identifier: Apache-2.0
"""The dispatcher module as a routing script uses it (ctx.dispatcher), through the real
proxy core: selection sends the relayed request to the chosen destination, failover in
on_failure, marking, use_default, ds_is_from_list, reload, management commands, and the
destination table on every storage backend."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import types

import pytest

from siprouter.config import DispatcherConfig
from siprouter.modules import RpcError
from siprouter.modules.dispatcher import (
    INACTIVE,
    PROBING,
    Dispatcher,
    DispatcherListError,
    Selected,
)
from siprouter.script.api import Request
from siprouter.script.testing import ScriptTester, make_request, make_response, sip_text
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.message import parse_message
from siprouter.transport.types import Target

GW1, GW2, GW3 = "sip:192.0.2.31:5060", "sip:192.0.2.32:5060", "sip:192.0.2.33:5060"

LIST = f"""\
# set 1: three gateways
1 {GW1}
1 {GW2}
1 {GW3}

2 sip:198.51.100.7:5070;transport=tcp
2 sip:198.51.100.8
3 sip:[2001:db8::1]:5060
"""

ROUTE = '''
def request_route(req, ctx):
    p = ctx.params
    if p.get("preset"):
        req.set_destination(p["preset"])
    select = ctx.dispatcher.ds_select_domain if p.get("domain") else ctx.dispatcher.ds_select_dst
    if not select(req, p.get("set", 1), p.get("alg", 4)):
        return req.reply(503, "No destination")
    p["selected"].append(ctx.dispatcher.selected(req))
    req.relay(on_failure=failure)

def failure(req, res, ctx):
    p = ctx.params
    p["failed"].append((res.status, ctx.dispatcher.selected(req)))
    if p.get("mark"):
        ctx.dispatcher.ds_mark_dst(req)
    nxt = ctx.dispatcher.ds_next_domain if p.get("domain") else ctx.dispatcher.ds_next_dst
    if nxt(req):
        req.relay()
'''

BRANCH = '''
def request_route(req, ctx):
    ctx.dispatcher.ds_select_dst(req, 1, ctx.params["alg"])
    req.relay(on_branch=branch)

def branch(req, ctx):  # a copy of the request, for this branch
    ctx.params["seen"].append(ctx.dispatcher.selected(req))
'''

FROM_LIST = '''
def request_route(req, ctx):
    ds = ctx.dispatcher
    if ds.ds_is_from_list(req, ctx.params.get("group")):
        return req.reply(200, f"from set {ds.matched_setid(req)}")
    req.reply(403)
'''


def script(source: str) -> types.ModuleType:
    mod = types.ModuleType("dispatcher_test_script")
    exec(source, mod.__dict__)  # noqa: S102 - test scripts written here
    return mod


@pytest.fixture
def list_file(tmp_path):
    path = tmp_path / "dispatcher.list"
    path.write_text(LIST)
    return path


async def loaded(list_file, **kw) -> Dispatcher:
    d = Dispatcher(list_file=list_file, **kw)
    await d.load()
    return d


def make_tester(d: Dispatcher, source: str = ROUTE, **params) -> ScriptTester:
    params.setdefault("selected", [])
    params.setdefault("failed", [])
    return ScriptTester(script(source), modules={"dispatcher": d}, params=params,
                        listen=("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "udp:[::1]:5060"))


def invites(out) -> list:
    return [(m, dest) for m, dest in out.requests if m.method == "INVITE"]


async def call(t: ScriptTester):
    out = await t.request(make_request("INVITE", "sip:bob@example.com"))
    return out


async def fail(t: ScriptTester, out, status: int = 503):
    """Answer the (only) INVITE branch of ``out`` with ``status``; what the core sent."""
    (branch, _), = invites(out)
    return await t.response(make_response(branch, status, to_tag="gw"))


def target(uri: str) -> Target:
    host, _, port = uri.removeprefix("sip:").partition(":")
    return Target("udp", host, int(port or 5060))


# -- selection ------------------------------------------------------------------------------

async def test_round_robin_sends_each_call_to_the_next_destination(list_file) -> None:
    d = await loaded(list_file)
    t = make_tester(d)
    sent = []
    for _ in range(6):
        out = await call(t)
        (msg, dest), = invites(out)
        assert msg.ruri == "sip:bob@example.com"  # ds_select_dst leaves the R-URI alone
        sent.append(dest)
    assert sent == [target(GW1), target(GW2), target(GW3)] * 2
    assert d.stats["selected"] == 6
    sel = t.context.params["selected"][0]
    assert sel == Selected(1, GW1, (GW2, GW3), 3)


async def test_unknown_set_or_nothing_usable_is_false(list_file) -> None:
    d = await loaded(list_file)
    out = await call(make_tester(d, set=9))
    assert out.replied == 503
    for gw in (GW1, GW2, GW3):
        d.set_state("i", 1, gw)
    out = await call(make_tester(d))
    assert out.replied == 503
    assert d.stats["select_failed"] == 2


async def test_select_domain_rewrites_the_request_uri_host_and_port(list_file) -> None:
    d = await loaded(list_file, flags=2)
    t = make_tester(d, domain=True, alg=8)
    out = await call(t)
    (msg, dest), = invites(out)
    assert msg.ruri == "sip:bob@192.0.2.31:5060"
    assert dest == target(GW1)
    out = await fail(t, out)
    (msg, dest), = invites(out)
    assert msg.ruri == "sip:bob@192.0.2.32:5060" and dest == target(GW2)


async def test_selected_is_readable_in_on_branch(list_file) -> None:
    d = await loaded(list_file)
    seen = []
    t = make_tester(d, BRANCH, seen=seen, alg=8)
    (msg, dest), = invites(await call(t))
    assert dest == target(GW1)
    assert seen == [Selected(1, GW1, (GW2, GW3), 3)]


async def test_parallel_algorithm_forks_to_every_destination(list_file) -> None:
    d = await loaded(list_file, flags=2)
    d.set_state("i", 1, GW2)
    t = make_tester(d, alg=12)
    out = await call(t)
    branches = invites(out)
    assert sorted(dest.host for _, dest in branches) == ["192.0.2.31", "192.0.2.33"]
    assert all(m.ruri == "sip:bob@example.com" for m, _ in branches)
    await t.response(make_response(branches[0][0], 503, to_tag="a"))
    out = await t.response(make_response(branches[1][0], 503, to_tag="b"))
    assert invites(out) == []  # no failover after trying them all at once
    assert [m.status for m, _ in out.responses] == [500]


async def test_force_dst_decides_over_a_destination_already_set(list_file) -> None:
    d = await loaded(list_file)
    out = await call(make_tester(d, preset="sip:192.0.2.99:5060"))
    assert out.replied == 503  # force_dst 0: "destination already set"
    d = await loaded(list_file, force_dst=1)
    out = await call(make_tester(d, preset="sip:192.0.2.99:5060"))
    (_, dest), = invites(out)
    assert dest == target(GW1)


# -- failover ---------------------------------------------------------------------------------

async def test_failover_in_on_failure_reaches_the_next_destinations_then_exhausts(
        list_file) -> None:
    d = await loaded(list_file, flags=2)
    t = make_tester(d, alg=8)
    out = await call(t)
    assert [dest for _, dest in invites(out)] == [target(GW1)]
    out = await fail(t, out, 503)
    assert [dest for _, dest in invites(out)] == [target(GW2)]
    out = await fail(t, out, 408)
    assert [dest for _, dest in invites(out)] == [target(GW3)]
    out = await fail(t, out, 500)
    # Exhausted: no new branch; the best response of all branches goes upstream (a 4xx
    # before a 5xx, RFC 3261 §16.7 step 6).
    assert invites(out) == []
    assert [m.status for m, _ in out.responses] == [408]
    failed = t.context.params["failed"]
    # on_failure sees the best response so far.
    assert [status for status, _ in failed] == [503, 408, 408]
    assert [sel.destination for _, sel in failed] == [GW1, GW2, GW3]
    assert failed[2][1].remaining == ()
    assert (d.stats["next"], d.stats["exhausted"]) == (2, 1)


async def test_without_failover_flag_ds_next_dst_is_false(list_file) -> None:
    d = await loaded(list_file)  # flags 0
    t = make_tester(d, alg=8)
    out = await fail(t, await call(t), 503)
    assert invites(out) == []
    assert [m.status for m, _ in out.responses] == [500]  # a 503 goes up as 500 (§16.7)


async def test_mark_dst_skips_the_marked_destination_in_later_calls(list_file, caplog) -> None:
    d = await loaded(list_file, flags=2)
    t = make_tester(d, alg=8, mark=True)
    caplog.set_level(logging.INFO, logger="siprouter.dispatcher")
    out = await fail(t, await call(t), 503)
    assert [dest for _, dest in invites(out)] == [target(GW2)]
    assert d.sets[1].find(GW1).state == INACTIVE
    assert "dispatcher: sip:192.0.2.31:5060 set 1 active -> inactive (ds_mark_dst)" \
        in caplog.text
    assert d.stats["state_changes"] == 1 and d.stats["marked"] == 1
    # A new call: algorithm 8 would take GW1 first; it is skipped now.
    out = await call(t)
    assert [dest for _, dest in invites(out)] == [target(GW2)]


def request() -> Request:
    """A parsed script Request, for the functions called outside the core."""
    return parse_message(sip_text(make_request("INVITE", "sip:bob@example.com")),
                         request_cls=Request)


async def test_mark_dst_letters_and_probing_mode_default(list_file) -> None:
    d = await loaded(list_file, flags=2, ds_probing_mode=1)
    req = request()
    assert d.ds_select_dst(req, 1, 8) and req.destination == GW1
    assert d.ds_mark_dst(req)  # probing mode 1: inactive and probing
    assert d.sets[1].find(GW1).state == INACTIVE | PROBING
    assert d.ds_mark_dst(req, "a")
    assert d.sets[1].find(GW1).state == 0
    assert d.ds_mark_dst(req, "P")
    assert d.sets[1].find(GW1).state == PROBING
    with pytest.raises(LocalProtocolError, match="ds_mark_dst"):
        d.ds_mark_dst(req, "x")
    assert not d.ds_mark_dst(request())  # nothing selected for it
    assert d.selected(request()) is None


async def test_use_default_keeps_the_last_destination_as_last_resort(list_file) -> None:
    d = await loaded(list_file, flags=2, use_default=1)
    t = make_tester(d, alg=4)
    sent = []
    for _ in range(4):
        (_, dest), = invites(await call(t))
        sent.append(dest)
    assert sent == [target(GW1), target(GW2)] * 2  # GW3 never first
    assert t.context.params["selected"][0].remaining == (GW2, GW3)
    for gw in (GW1, GW2, GW3):
        d.set_state("i", 1, gw)
    (_, dest), = invites(await call(t))
    assert dest == target(GW3)  # whatever its own state


# -- ds_is_from_list --------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "group", "reason"), [
    ("tcp:198.51.100.7:5070", None, "from set 2"),
    ("udp:198.51.100.7:5070", None, None),   # the URI says transport=tcp
    ("tcp:198.51.100.7:5071", None, None),   # the URI has a port: it must match
    ("udp:198.51.100.8:40000", None, "from set 2"),  # no port in the URI: any port
    ("udp:192.0.2.31:5060", None, "from set 1"),
    ("udp:192.0.2.31:5060", 1, "from set 1"),
    ("udp:192.0.2.31:5060", 2, None),
    ("udp:203.0.113.1:5060", None, None),
    ("udp:[2001:db8:0:0:0:0:0:1]:5060", None, "from set 3"),  # IPv6, other spelling
    ("udp:[2001:db8::1]:5061", None, None),
])
async def test_is_from_list_matches_ip_port_and_transport(list_file, source, group,
                                                          reason) -> None:
    d = await loaded(list_file)
    t = make_tester(d, FROM_LIST, group=group)
    out = await t.request(make_request("OPTIONS", "sip:127.0.0.1"), source=source)
    if reason is None:
        assert out.replied == 403
    else:
        assert (out.replied, out.reason) == (200, reason)


# -- reload -----------------------------------------------------------------------------------

async def test_reload_good_and_bad_lists(list_file) -> None:
    d = await loaded(list_file)
    list_file.write_text(f"1 {GW1}\n3 sip:192.0.2.50\n")
    assert await d.reload() == {"sets": 2, "destinations": 2}
    assert sorted(d.sets) == [1, 3]
    before = d.sets
    list_file.write_text(f"1 {GW1}\n1 not-a-uri\n2 sip:192.0.2.9 x\n")
    with pytest.raises(DispatcherListError) as err:
        await d.reload()
    assert len(err.value.problems) == 2
    assert f"{list_file}:2: expected a SIP URI" in err.value.problems[0]
    assert d.sets is before  # old sets kept
    with pytest.raises(RpcError) as rpc_err:
        await d.rpc_reload()
    assert rpc_err.value.data == err.value.problems
    assert d.sets is before
    assert (d.stats["reloads"], d.stats["reload_failures"]) == (1, 2)


async def test_a_call_in_progress_keeps_its_candidates_across_a_reload(list_file) -> None:
    d = await loaded(list_file, flags=2)
    t = make_tester(d, alg=8)
    out = await call(t)
    list_file.write_text("1 sip:192.0.2.77\n")
    await d.reload()
    out = await fail(t, out, 503)
    assert [dest for _, dest in invites(out)] == [target(GW2)]  # the old candidates
    (_, dest), = invites(await call(t))
    assert dest == Target("udp", "192.0.2.77", 5060)  # a new call: the new list


# -- management -------------------------------------------------------------------------------

async def test_set_state_and_list_through_the_rpc_methods(list_file, caplog) -> None:
    d = await loaded(list_file)
    caplog.set_level(logging.INFO, logger="siprouter.dispatcher")
    result = await d.rpc_set_state("i", 1, GW2)
    assert result["state"] == "inactive" and result["setid"] == 1
    assert "dispatcher: sip:192.0.2.32:5060 set 1 active -> inactive (ds.set_state)" \
        in caplog.text
    listing = await d.rpc_list()
    assert [s["setid"] for s in listing] == [1, 2, 3]
    assert [x["state"] for x in listing[0]["destinations"]] == ["active", "inactive", "active"]
    assert listing[1]["destinations"][0] == {
        "uri": "sip:198.51.100.7:5070;transport=tcp", "state": "active", "flags": 0,
        "priority": 0, "attrs": {}}
    # Kamailio's names do the same.
    await d.rpc_kamailio_set_state("p", 1, "SIP:192.0.2.32:5060;lr")  # an equal URI
    assert d.sets[1].find(GW2).state == PROBING
    assert (await d.rpc_kamailio_list()) == await d.rpc_list()
    assert d.stats["state_changes"] == 2
    assert (await d.rpc_stats())["state_changes"] == 2
    with pytest.raises(RpcError, match="no dispatcher set 7"):
        await d.rpc_set_state("a", 7, GW1)
    with pytest.raises(RpcError, match="no destination sip:192.0.2.99 in dispatcher set 1"):
        await d.rpc_set_state("a", 1, "sip:192.0.2.99")
    with pytest.raises(RpcError, match="expected a state"):
        await d.rpc_set_state("z", 1, GW1)


async def test_set_state_inactive_takes_effect_on_the_next_call(list_file) -> None:
    d = await loaded(list_file)
    t = make_tester(d, alg=8)
    (_, dest), = invites(await call(t))
    assert dest == target(GW1)
    await d.rpc_set_state("i", 1, GW1)
    (_, dest), = invites(await call(t))
    assert dest == target(GW2)
    await d.rpc_set_state("a", 1, GW1)
    (_, dest), = invites(await call(t))
    assert dest == target(GW1)


# -- health probing ---------------------------------------------------------------------------

class Gateways:
    """The far ends of the probes: a status per URI (None: no answer, i.e. 408)."""

    def __init__(self) -> None:
        self.status: dict[str, int | None] = {}
        self.sent: list[tuple[str, str, str]] = []

    async def __call__(self, method: str, uri: str, from_uri: str) -> int:
        self.sent.append((method, uri, from_uri))
        status = self.status.get(uri, 200)
        return 408 if status is None else status


async def test_probing_mode_0_probes_only_probing_destinations_and_revives_them(
        list_file, caplog) -> None:
    d = await loaded(list_file, ds_ping_method="INFO")
    gw = Gateways()
    assert await d.probe_once(gw) == 0 and gw.sent == []
    d.set_state("p", 1, GW2)
    gw.status[GW2] = None
    assert await d.probe_once(gw) == 1
    assert gw.sent == [("INFO", GW2, "sip:dispatcher@localhost")]
    assert d.sets[1].find(GW2).state == PROBING  # still down
    caplog.set_level(logging.INFO, logger="siprouter.dispatcher")
    gw.status[GW2] = 200
    await d.probe_once(gw)
    assert d.sets[1].find(GW2).state == 0
    assert "dispatcher: sip:192.0.2.32:5060 set 1 probing -> active (probe: 200)" in caplog.text
    assert await d.probe_once(gw) == 0  # nothing in probing state any more


async def test_probing_mode_1_threshold_moves_active_to_probing_and_back(list_file) -> None:
    d = await loaded(list_file, ds_probing_mode=1, ds_probing_threshold=2,
                     ds_ping_reply_codes="501")
    gw = Gateways()
    gw.status[GW1] = None
    gw.status[GW3] = 501  # an accepted reply code
    assert await d.probe_once(gw) == 6  # every destination
    assert d.sets[1].find(GW1).state == 0 and d.sets[1].find(GW1).failures == 1
    await d.probe_once(gw)
    assert d.sets[1].find(GW1).state == PROBING  # two failures in a row
    assert d.sets[1].find(GW3).state == 0
    # A call now skips it.
    (_, dest), = invites(await call(make_tester(d, alg=8)))
    assert dest == target(GW2)
    gw.status[GW1] = 200
    await d.probe_once(gw)
    assert d.sets[1].find(GW1).state == 0 and d.sets[1].find(GW1).failures == 0
    assert d.stats["state_changes"] == 2 and d.stats["probe_failures"] == 2


async def test_start_probes_every_interval_until_stop(list_file) -> None:
    d = Dispatcher(list_file=list_file, ds_probing_mode=1, ds_ping_interval=0.02,
                   ds_probing_threshhold=1)
    gw = Gateways()
    gw.status[GW1] = 503
    await d.start(pinger=gw)
    try:
        for _ in range(200):
            if d.sets[1].find(GW1).state == PROBING:
                break
            await asyncio.sleep(0.01)
        assert d.sets[1].find(GW1).state == PROBING
    finally:
        await d.stop()
    sent = len(gw.sent)
    await asyncio.sleep(0.06)
    assert len(gw.sent) == sent  # stopped


async def test_a_pinger_that_raises_counts_as_no_answer(list_file, caplog) -> None:
    d = await loaded(list_file, ds_probing_mode=1, ds_probing_threshhold=1)

    async def broken(method: str, uri: str, from_uri: str) -> int:
        raise RuntimeError("no socket")

    await d.probe_once(broken)
    assert all(x.state == PROBING for x in d.sets[1])
    assert "probing sip:192.0.2.31:5060 failed: no socket" in caplog.text
    with pytest.raises(LocalProtocolError, match="needs a pinger"):
        await Dispatcher().probe_once()


# -- parameters -------------------------------------------------------------------------------

def test_the_config_section_maps_onto_the_constructor() -> None:
    cfg = DispatcherConfig()
    d = Dispatcher.from_params(dataclasses.asdict(cfg))  # db_url: the server's storage
    assert (d.ds_ping_interval, d.ds_probing_threshhold, d.options_reply_codes) == (
        cfg.ds_ping_interval, cfg.ds_probing_threshhold, frozenset())


def test_defaults_are_the_overviews() -> None:
    d = Dispatcher()
    assert (d.table_name, d.columns["setid_col"], d.columns["destination_col"],
            d.columns["flags_col"]) == ("dispatcher", "setid", "destination", "flags")
    assert (d.force_dst, d.flags, d.use_default, d.hash_pvar, d.setid_pvar) == (
        False, 0, False, None, None)
    assert (d.ds_ping_method, d.ds_ping_from, d.ds_ping_interval, d.ds_probing_threshhold,
            d.ds_probing_mode, d.options_reply_codes) == (
        "OPTIONS", "sip:dispatcher@localhost", 10, 3, 0, frozenset())


def test_from_params_takes_kamailio_aliases_and_rejects_unknown_names(list_file) -> None:
    d = Dispatcher.from_params({
        "list_file": str(list_file), "ds_probing_threshold": 5,
        "ds_ping_reply_codes": "501, 403", "setid_pvname": "$var(setid)",
        "dst_avp": "$avp(dst)", "flags": 3, "ds_ping_method": "info",
        "hash_pvname": "{from_user}"})
    assert d.ds_probing_threshhold == 5
    assert d.options_reply_codes == frozenset({501, 403})
    assert d.setid_pvar == "$var(setid)" and d.flags == 3 and d.ds_ping_method == "INFO"
    assert d.hash_pvar == "{from_user}"
    with pytest.raises(LocalProtocolError, match="unknown parameter 'ds_ping_intervall'.*"
                                                 "ds_ping_interval"):
        Dispatcher.from_params({"ds_ping_intervall": 5})
    with pytest.raises(LocalProtocolError, match="given twice"):
        Dispatcher.from_params({"ds_probing_threshold": 5, "ds_probing_threshhold": 4})


@pytest.mark.parametrize(("params", "message"), [
    ({"flags": 4}, "flags: expected one of 0, 1, 2, 3"),
    ({"force_dst": "yes"}, "force_dst: expected an integer"),
    ({"ds_probing_mode": 2}, "ds_probing_mode: expected one of 0, 1"),
    ({"ds_probing_threshhold": 0}, "ds_probing_threshhold: expected an integer >= 1"),
    ({"ds_ping_interval": -1}, "ds_ping_interval: expected seconds >= 0"),
    ({"ds_ping_interval": "10"}, "ds_ping_interval: expected seconds >= 0"),
    ({"options_reply_codes": "501, abc"}, "options_reply_codes: expected status codes"),
    ({"ds_ping_from": "mailto:x@y"}, "ds_ping_from: expected a SIP URI"),
    ({"ds_ping_method": "OPT IONS"}, "ds_ping_method: expected a SIP method"),
    ({"setid_col": "set id"}, "setid_col: expected a table or column name"),
    ({"hash_pvar": "{nope}"}, "unknown field {nope}"),
    ({"hash_pvar": "$avp(i:273)"}, "hash_pvar: expected a template with {fields}"),
    ({"list_file": "x.list", "storage": object()}, "list_file or a database"),
])
def test_bad_parameters_name_the_parameter(params, message) -> None:
    with pytest.raises(LocalProtocolError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Dispatcher(**params)


async def test_hash_pvar_callable_drives_algorithm_7(list_file) -> None:
    d = await loaded(list_file, hash_pvar=lambda req: req.from_.uri.user)
    t = make_tester(d, alg=7)
    dests = set()
    for _ in range(5):
        out = await t.request(make_request("INVITE", "sip:bob@example.com",
                                           from_="sip:carol@example.com"))
        (_, dest), = invites(out)
        dests.add((dest.host, dest.port))
    assert len(dests) == 1  # the same key always goes to the same destination


# -- database ---------------------------------------------------------------------------------

async def test_sets_from_the_dispatcher_table(storage) -> None:
    await storage.insert_many("dispatcher", [
        {"setid": 1, "destination": GW1, "flags": 0, "priority": 0, "attrs": "",
         "description": "gw1"},
        {"setid": 1, "destination": GW2, "flags": 1, "priority": 5, "attrs": "weight=10",
         "description": "gw2"},
        {"setid": 4, "destination": "sip:192.0.2.40", "flags": 2, "priority": 0,
         "attrs": "duid=x", "description": ""},
    ])
    d = Dispatcher(storage=storage)
    await d.load()
    assert sorted(d.sets) == [1, 4]
    assert [x.uri for x in d.sets[1]] == [GW2, GW1]  # priority 5 first
    assert d.sets[1].find(GW2).state == INACTIVE and d.sets[1].find(GW2).weight == 10
    assert d.sets[4].destinations[0].state == PROBING
    await storage.insert("dispatcher", {"setid": 4, "destination": "sip:192.0.2.41",
                                        "flags": 0, "priority": 0, "attrs": "",
                                        "description": ""})
    assert await d.reload() == {"sets": 2, "destinations": 4}
    await storage.insert("dispatcher", {"setid": 5, "destination": "bad uri", "flags": 0,
                                        "priority": 0, "attrs": "", "description": ""})
    with pytest.raises(DispatcherListError, match="dispatcher row 5: expected a SIP URI"):
        await d.reload()
    assert len(d.sets[4]) == 2


LOAD_ROUTE = '''
def request_route(req, ctx):
    if req.in_dialog:
        if ctx.loose_route(req):
            return req.relay()
        return req.reply(404)
    req.record_route()
    req.track_dialog()
    if not ctx.dispatcher.ds_select_dst(req, 1, 10):
        return req.reply(503, "No Destination Available")
    req.relay()
'''


async def test_call_load_counts_calls_until_their_dialog_ends(tmp_path):
    # Algorithm 10: the destination with the fewest active calls, none over maxload; a
    # call counts until its dialog is terminated (BYE), or at once when it fails.
    path = tmp_path / "load.list"
    path.write_text(f"1 {GW1} 0 0 duid=a;maxload=1\n1 {GW2} 0 0 duid=b;maxload=1\n")
    d = await loaded(path)
    t = make_tester(d, LOAD_ROUTE)
    t.core.tm.dialogs.add_listener(d.dialog_changed)
    first = invites(await t.request(make_request("INVITE", "sip:bob@example.com",
                                                 call_id="load-1")))
    second = invites(await t.request(make_request("INVITE", "sip:bob@example.com",
                                                  call_id="load-2")))
    assert {first[0][1], second[0][1]} == {target(GW1), target(GW2)}
    assert d.call_load == {"a": 1, "b": 1}
    # Both at maxload: a third call finds no destination.
    third = await t.request(make_request("INVITE", "sip:bob@example.com", call_id="load-3"))
    assert third.replied == 503
    # The first call is answered, then hung up: its destination is free again.
    inv = first[0][0]
    await t.response(make_response(inv, 200, to_tag="gw",
                                   headers=[("Contact", f"<{GW1}>")]),
                     source=f"udp:{first[0][1].host}:{first[0][1].port}")
    assert d.call_load == {"a": 1, "b": 1}
    rr = inv.header("Record-Route")
    await t.request(make_request("BYE", GW1, call_id="load-1", cseq=2,
                                 from_=inv.header("From"),
                                 to="<sip:bob@example.com>;tag=gw",
                                 headers={"Route": rr}))
    freed = "a" if first[0][1] == target(GW1) else "b"
    assert d.call_load.get(freed, 0) == 0
    again = invites(await t.request(make_request("INVITE", "sip:bob@example.com",
                                                 call_id="load-4")))
    assert again[0][1] == first[0][1]
    assert d.ds_load_unset(again[0][0]) is True
