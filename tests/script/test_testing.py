# SPDX-License-Identifier: Apache-2.0
"""The testing kit itself: message building, outcomes, script errors, the pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from siprouter.script.loader import ScriptError, load_script
from siprouter.script.testing import (
    RecordingTransport,
    ScriptTester,
    make_ack,
    make_cancel,
    make_request,
    sip_text,
)
from siprouter.sip.message import Request, parse_message
from siprouter.transport.types import ListenSocket, Source, Target

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --- message text -----------------------------------------------------------------------


def test_sip_text_dedents_uses_crlf_and_sets_content_length():
    data = sip_text("""
        MESSAGE sip:bob@example.com SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1
        Content-Length: 999
        Content-Type: text/plain

        hello
        world
    """)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: ")
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert body == b"hello\r\nworld\r\n"
    assert b"Content-Length: 14\r\n" in head


def test_sip_text_adds_content_length_and_handles_compact_form():
    assert sip_text("OPTIONS sip:a@b SIP/2.0\nv: x\n").endswith(b"v: x\r\nContent-Length: 0\r\n\r\n")
    assert b"l: 2\r\n" in sip_text("OPTIONS sip:a@b SIP/2.0\nl: 7\n\nhi")


def test_make_request_is_valid_and_fresh_each_time():
    a = parse_message(make_request("INVITE", "sip:bob@example.com").encode())
    b = parse_message(make_request("INVITE", "sip:bob@example.com").encode())
    assert isinstance(a, Request)
    assert a.method == "INVITE" and a.ruri == "sip:bob@example.com"
    assert a.cseq.method == "INVITE" and a.max_forwards == 70
    assert a.to.tag is None and a.from_.tag
    assert a.contacts
    assert a.call_id != b.call_id
    assert a.top_via.branch != b.top_via.branch
    assert a.from_.tag != b.from_.tag


def test_make_request_header_overrides_and_body():
    req = parse_message(make_request(
        "MESSAGE", "sip:bob@example.com", body="hi",
        headers=[("Max-Forwards", "5"), ("Subject", "x"), ("Contact", None),
                 ("content-type", "text/plain")],
        to="<sip:bob@example.com>;tag=t1", cseq=7,
    ).encode())
    assert req.max_forwards == 5
    assert req.header("Subject") == "x"
    assert req.content_type == "text/plain"
    assert req.body == b"hi" and req.content_length == 2
    assert req.in_dialog
    assert str(req.cseq) == "7 MESSAGE"
    assert not req.has_header("Contact")


def test_make_cancel_and_ack_match_the_invite():
    invite = make_request("INVITE", "sip:bob@example.com", headers={"Route": "<sip:p1;lr>"})
    inv = parse_message(invite.encode())
    cancel = parse_message(make_cancel(invite).encode())
    ack = parse_message(make_ack(invite, "abc").encode())
    for msg, method in ((cancel, "CANCEL"), (ack, "ACK")):
        assert msg.method == method and msg.ruri == inv.ruri
        assert msg.call_id == inv.call_id
        assert msg.top_via.branch == inv.top_via.branch
        assert msg.cseq.seq == inv.cseq.seq and msg.cseq.method == method
        assert msg.header_all("Route") == ["<sip:p1;lr>"]
    assert cancel.to.tag is None
    assert ack.to.tag == "abc"


# --- the tester --------------------------------------------------------------------------


def test_recording_transport_is_local():
    t = RecordingTransport([ListenSocket("udp", "127.0.0.1", 5060), ListenSocket("tcp", "::", 5070)])
    assert t.is_local("127.0.0.1", 5060)
    assert t.is_local("127.0.0.1", 5060, "udp")
    assert not t.is_local("127.0.0.1", 5060, "tcp")
    assert t.is_local("[::1]", 5070) and t.is_local("10.1.2.3", 5070, "tcp")
    assert not t.is_local("127.0.0.1", 5061)


@pytest.fixture
def route(tmp_path):
    return write(tmp_path / "route.py", """
        import asyncio
        from siprouter.script import Request, Response, Context

        async def request_route(req: Request, ctx: Context) -> None:
            user = req.uri.user
            if user == "boom":
                raise KeyError("no such thing")
            if user == "slow":
                await asyncio.sleep(0.01)
                return req.reply(486, "Busy Here")
            if user == "hang":
                await asyncio.Event().wait()
            if user == "silent":
                return None
            if user == "gw":
                return req.forward(ctx.params["gateway"])
            req.reply(404)

        def reply_route(res: Response, ctx: Context) -> None:
            if res.status == 183:
                res.drop()
    """)


async def test_script_exception_is_raised_out_of_request(route):
    tester = ScriptTester(str(route))
    with pytest.raises(KeyError, match="no such thing"):
        await tester.request(make_request("INVITE", "sip:boom@example.com"))


async def test_script_exception_seen_as_the_server_would_answer(route):
    tester = ScriptTester(str(route), raise_errors=False)
    out = await tester.request(make_request("INVITE", "sip:boom@example.com"))
    assert out.replied == 500
    assert isinstance(out.error, KeyError)


async def test_awaiting_script_is_waited_for(route):
    tester = ScriptTester(str(route))
    out = await tester.request(make_request("INVITE", "sip:slow@example.com"))
    assert (out.replied, out.reason) == (486, "Busy Here")


async def test_script_that_never_finishes_times_out(route):
    tester = ScriptTester(str(route))
    with pytest.raises(TimeoutError, match="did not finish"):
        await tester.request(make_request("INVITE", "sip:hang@example.com"), timeout=0.05)


async def test_script_without_a_verb_drops(route):
    out = await ScriptTester(str(route)).request(make_request("INVITE", "sip:silent@example.com"))
    assert out.dropped and out.sent == [] and out.replied is None and out.forwarded is None


async def test_params_reach_the_script(route):
    tester = ScriptTester(load_script(route), params={"gateway": "sip:10.9.9.9:5080;transport=tcp"},
                          listen=["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"])
    out = await tester.request(make_request("INVITE", "sip:gw@example.com"))
    assert out.forwarded_to == Target("tcp", "10.9.9.9", 5080)
    assert out.forwarded.top_via.transport == "TCP"
    assert out.sent == [(out.forwarded.to_bytes(), out.forwarded_to)]


async def test_reply_route_drop(route):
    tester = ScriptTester(str(route), params={"gateway": "sip:10.9.9.9"})
    out = await tester.request(make_request("INVITE", "sip:gw@example.com"))
    from siprouter.script.testing import make_response
    assert (await tester.response(make_response(out.forwarded, 183))).dropped
    ok = await tester.response(make_response(out.forwarded, 200))
    assert ok.forwarded.status == 200
    assert ok.forwarded_to == Target("udp", "192.0.2.10", 5060)


async def test_malformed_bytes_are_fed_verbatim(route):
    tester = ScriptTester(str(route))
    out = await tester.request(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10\r\n\r\n")
    assert out.replied == 400  # the sanity stage, before the script


async def test_module_and_set_script(route):
    from siprouter.script import default

    tester = ScriptTester(default, domains=["example.com"], params={"auth": False})
    assert (await tester.request(make_request("INVITE", "sip:bob@example.com"))).replied == 404
    tester.set_script(str(route))
    assert (await tester.request(make_request("INVITE", "sip:slow@example.com"))).replied == 486


def test_bad_script_and_bad_source(route, tmp_path):
    with pytest.raises(ScriptError):
        ScriptTester(str(write(tmp_path / "bad.py", "x = \n")))
    tester = ScriptTester(str(route))
    with pytest.raises(ValueError, match="no tcp listen socket"):
        tester.source("tcp:192.0.2.1:5060")
    src = ScriptTester(str(route), listen=["tcp:[::1]:5060"]).source("tcp:[2001:db8::1]:4000")
    assert isinstance(src, Source) and src.conn_id is not None and src.local.host == "::1"


# --- what an operator does: their own script, their own tests, plain pytest -------------


def test_operator_can_test_a_script_with_the_plugin(tmp_path):
    write(tmp_path / "route.py", """
        from siprouter.script import Request, Context

        async def request_route(req: Request, ctx: Context) -> None:
            if ctx.is_myself(req.uri):
                return req.reply(404, "Not Found")
            req.forward("sip:10.0.0.1:5060")
    """)
    write(tmp_path / "conftest.py", """
        pytest_plugins = ["siprouter.script.testing"]
    """)
    write(tmp_path / "test_route.py", """
        from siprouter.script.testing import make_request
        from siprouter.transport.types import Target

        async def test_local_user_gets_404(script_tester):
            tester = script_tester("route.py", domains=["example.com"])
            out = await tester.request(make_request("INVITE", "sip:nobody@example.com"))
            assert out.replied == 404

        async def test_others_go_to_the_gateway(script_tester):
            tester = script_tester("route.py", domains=["example.com"])
            out = await tester.request('''
                INVITE sip:bob@elsewhere.example SIP/2.0
                Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds
                Max-Forwards: 70
                To: <sip:bob@elsewhere.example>
                From: <sip:alice@example.com>;tag=1928301774
                Call-ID: a84b4c76e66710
                CSeq: 314159 INVITE
                Contact: <sip:alice@192.0.2.10>
                Content-Type: application/sdp

                v=0
            ''')
            assert out.forwarded_to == Target("udp", "10.0.0.1", 5060)

        async def test_this_one_fails(script_tester):
            tester = script_tester("route.py", domains=["example.com"])
            out = await tester.request(make_request("INVITE", "sip:nobody@example.com"))
            assert out.replied == 200
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert "1 failed, 2 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "test_this_one_fails" in proc.stdout
