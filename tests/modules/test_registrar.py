# SPDX-License-Identifier: Apache-2.0
"""The registrar: REGISTER processing (RFC 3261 §10.3, RFC 3327 Path, RFC 5626 instance /
reg-id) and location lookup, on requests parsed from real SIP text."""

from __future__ import annotations

import asyncio
import email.utils
import glob
import os
import socket as socketlib
import sqlite3
import subprocess
import time
import types
from pathlib import Path

import pytest

from siprouter.modules.location import METHOD_BITS, Location
from siprouter.modules.registrar import (
    OUT_OF_ORDER,
    TOO_MANY_CONTACTS,
    LookupResult,
    Registrar,
)
from siprouter.script.api import Request
from siprouter.script.testing import ScriptTester, sip_text
from siprouter.sip.errors import LocalProtocolError
from siprouter.sip.headers import parse_contact_list
from siprouter.sip.message import parse_message
from siprouter.storage import open_storage
from siprouter.storage.migrate import init_database
from siprouter.transport.types import ListenSocket, Source, Target

T0 = 1_800_000_000

OK = 200
BAD_REQUEST = 400
FORBIDDEN = 403
NOT_FOUND = 404
METHOD_NOT_ALLOWED = 405
BAD_EXTENSION = 420
INTERVAL_TOO_BRIEF = 423
TEMPORARILY_UNAVAILABLE = 480
SERVER_ERROR = 500

LOCAL = ListenSocket("udp", "192.0.2.1", 5060)
LOCAL_TCP = ListenSocket("tcp", "192.0.2.1", 5060)
PHONE = ("udp", "198.51.100.7", 5060)  # where the REGISTERs come from by default


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def register(contact: str | None = "<sip:alice@198.51.100.7:5060>", *, cseq: int = 1,
             callid: str = "reg-1@198.51.100.7", to: str = "<sip:alice@example.com>",
             expires: int | None = None, headers: str = "",
             source: tuple[str, str, int] | None = PHONE,
             via: str = "198.51.100.7:5060") -> Request:
    """A REGISTER parsed from text into the script's Request, as received from
    ``source`` (proto, ip, port)."""
    lines = [
        "REGISTER sip:example.com SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch=z9hG4bKreg" + str(cseq),
        "Max-Forwards: 70",
        f"To: {to}",
        "From: <sip:alice@example.com>;tag=f1",
        f"Call-ID: {callid}",
        f"CSeq: {cseq} REGISTER",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += [h for h in headers.strip().splitlines() if h.strip()]
    req = parse_message(sip_text("\n".join(lines) + "\n"), request_cls=Request)
    assert isinstance(req, Request)
    if source is not None:
        proto, ip, port = source
        req.source = Source(proto, ip, port, LOCAL_TCP if proto == "tcp" else LOCAL)
    return req


def invite(ruri: str = "sip:alice@example.com", method: str = "INVITE") -> Request:
    req = parse_message(sip_text(f"""\
        {method} {ruri} SIP/2.0
        Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKinv
        Max-Forwards: 70
        To: <{ruri}>
        From: <sip:bob@example.com>;tag=b1
        Call-ID: inv-1@203.0.113.9
        CSeq: 1 {method}
        """), request_cls=Request)
    assert isinstance(req, Request)
    req.source = Source("udp", "203.0.113.9", 5060, LOCAL)
    return req


async def save(registrar: Registrar, req: Request):
    await registrar.save(req)
    return req.outcome


def reply_header(reply, name: str) -> str | None:
    for n, v in reply.headers:
        if n.lower() == name.lower():
            return v
    return None


def contacts_of(reply) -> dict[str, dict]:
    """The Contact header of a 200 OK: contact URI -> its parameters."""
    value = reply_header(reply, "Contact")
    if value is None:
        return {}
    return {str(c.uri): c.params for c in parse_contact_list(value)}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def location(clock) -> Location:
    return Location(clock=clock)


@pytest.fixture
def registrar(location, clock) -> Registrar:
    return Registrar(location, clock=clock)


# --- parameters ---------------------------------------------------------------------------


def test_bad_parameters_are_refused(location):
    with pytest.raises(LocalProtocolError, match="min_expires"):
        Registrar(location, min_expires=-1)
    with pytest.raises(LocalProtocolError, match="max_expires"):
        Registrar(location, min_expires=60, max_expires=30)
    with pytest.raises(LocalProtocolError, match="path_mode"):
        Registrar(location, path_mode="sometimes")
    with pytest.raises(LocalProtocolError, match="min_expires_mode"):
        Registrar(location, min_expires_mode="ignore")


# --- adding, refreshing, removing (RFC 3261 §10.3) ---------------------------------------------


async def test_first_registration_is_stored_and_listed(registrar, location):
    req = register(headers="User-Agent: Phone/1.0")
    reply = await save(registrar, req)
    assert (reply.status, reply.reason) == (OK, "OK")
    assert contacts_of(reply) == {"sip:alice@198.51.100.7:5060": {"expires": "3600"}}
    # §10.3 step 8: a Date header.
    assert email.utils.parsedate_to_datetime(reply_header(reply, "Date")).timestamp() == T0
    (b,) = await location.get("alice")
    assert (b.contact, b.expires, b.callid, b.cseq) == (
        "sip:alice@198.51.100.7:5060", T0 + 3600, "reg-1@198.51.100.7", 1)
    assert (b.user_agent, b.socket, b.received, b.q) == ("Phone/1.0", "udp:192.0.2.1:5060",
                                                         None, None)
    assert b.last_modified == T0


async def test_expires_header_and_contact_parameter(registrar, location):
    req = register("<sip:alice@198.51.100.7:5060>, <sip:alice@198.51.100.7:5070>;expires=120",
                   expires=600)
    reply = await save(registrar, req)
    assert contacts_of(reply) == {"sip:alice@198.51.100.7:5060": {"expires": "600"},
                                  "sip:alice@198.51.100.7:5070": {"expires": "120"}}


async def test_max_expires_shortens(location, clock):
    registrar = Registrar(location, max_expires=1800, clock=clock)
    reply = await save(registrar, register(expires=7200))
    assert contacts_of(reply)["sip:alice@198.51.100.7:5060"]["expires"] == "1800"


async def test_below_min_expires_is_423_and_changes_nothing(registrar, location):
    req = register("<sip:alice@198.51.100.7:5060>, <sip:alice@198.51.100.7:5070>;expires=30")
    reply = await save(registrar, req)
    assert reply.status == INTERVAL_TOO_BRIEF
    assert reply_header(reply, "Min-Expires") == "60"
    assert await location.get("alice") == []


async def test_below_min_expires_raised_when_asked_or_an_hour_or_more(location, clock):
    raising = Registrar(location, min_expires_mode="raise", clock=clock)
    reply = await save(raising, register(expires=30))
    assert contacts_of(reply)["sip:alice@198.51.100.7:5060"]["expires"] == "60"
    # §10.3 step 7: 423 only for an interval "smaller than one hour".
    long_min = Registrar(Location(clock=clock), min_expires=7200, clock=clock)
    reply = await save(long_min, register(expires=3600))
    assert contacts_of(reply)["sip:alice@198.51.100.7:5060"]["expires"] == "7200"


async def test_refresh_keeps_the_binding(registrar, location, clock):
    await save(registrar, register())
    (first,) = await location.get("alice")
    clock.now += 1000
    reply = await save(registrar, register(cseq=2, expires=1200))
    assert contacts_of(reply)["sip:alice@198.51.100.7:5060"]["expires"] == "1200"
    (b,) = await location.get("alice")
    assert b.ruid == first.ruid and b.cseq == 2 and b.expires == T0 + 2200
    assert b.last_modified == T0 + 1000


async def test_contacts_match_as_uris(registrar, location):
    await save(registrar, register("<sip:alice@198.51.100.7:5060;transport=udp>"))
    reply = await save(registrar, register("<sip:alice@198.51.100.7:5060;TRANSPORT=UDP;x=1>",
                                           cseq=2, expires=0))
    assert reply.status == OK and contacts_of(reply) == {}
    assert await location.get("alice") == []


async def test_expires_zero_removes_one_binding(registrar, location):
    await save(registrar, register("<sip:alice@198.51.100.7:5060>, <sip:alice@10.0.0.2:5060>"))
    reply = await save(registrar, register("<sip:alice@10.0.0.2:5060>;expires=0", cseq=2))
    assert list(contacts_of(reply)) == ["sip:alice@198.51.100.7:5060"]
    # An unknown contact with expires 0 is no error.
    reply = await save(registrar, register("<sip:alice@10.9.9.9>;expires=0", cseq=3))
    assert reply.status == OK and list(contacts_of(reply)) == ["sip:alice@198.51.100.7:5060"]


async def test_star_removes_every_binding(registrar, location):
    await save(registrar, register("<sip:alice@198.51.100.7:5060>, <sip:alice@10.0.0.2:5060>"))
    reply = await save(registrar, register("*", cseq=2, expires=0))
    assert reply.status == OK and contacts_of(reply) == {}
    assert await location.get("alice") == []
    assert location.n_aors == 0


@pytest.mark.parametrize("contact, expires", [
    ("*", None),                                  # §10.3 step 6: Expires must be 0
    ("*", 60),
    ("*, <sip:alice@10.0.0.2>", 0),               # "*" alone
    ("*\nContact: <sip:alice@10.0.0.2>", 0),
])
async def test_star_misused_is_400(registrar, location, contact, expires):
    await save(registrar, register())
    reply = await save(registrar, register(contact, cseq=2, expires=expires))
    assert reply.status == BAD_REQUEST
    assert len(await location.get("alice")) == 1


async def test_star_with_an_old_cseq_is_out_of_order(registrar, location):
    await save(registrar, register(cseq=5))
    reply = await save(registrar, register("*", cseq=4, expires=0))
    assert (reply.status, reply.reason) == OUT_OF_ORDER
    assert len(await location.get("alice")) == 1
    # Another Call-ID (another client) may remove it whatever its CSeq.
    reply = await save(registrar, register("*", cseq=1, callid="other", expires=0))
    assert reply.status == OK and await location.get("alice") == []


async def test_no_contact_fetches_the_bindings(registrar, location, clock):
    await save(registrar, register("<sip:alice@198.51.100.7:5060>;q=0.5"))
    clock.now += 100
    reply = await save(registrar, register(None, cseq=2))
    assert contacts_of(reply) == {"sip:alice@198.51.100.7:5060": {"q": "0.5", "expires": "3500"}}
    (b,) = await location.get("alice")
    assert b.cseq == 1  # a query changes nothing
    reply = await save(registrar, register(None, to="<sip:nobody@example.com>"))
    assert reply.status == OK and reply_header(reply, "Contact") is None


# --- Call-ID and CSeq (§10.3 step 7) -------------------------------------------------------------


async def test_older_cseq_is_out_of_order(registrar, location):
    await save(registrar, register(cseq=10, expires=600))
    reply = await save(registrar, register(cseq=9, expires=0))
    assert (reply.status, reply.reason) == OUT_OF_ORDER
    (b,) = await location.get("alice")
    assert b.cseq == 10


async def test_same_cseq_soon_is_a_retransmission(registrar, location, clock):
    await save(registrar, register(cseq=10, expires=600))
    clock.now += 5
    reply = await save(registrar, register(cseq=10, expires=600))
    assert reply.status == OK  # answered like the first time, nothing changed
    assert contacts_of(reply)["sip:alice@198.51.100.7:5060"]["expires"] == "595"
    clock.now += 30  # beyond cseq_delay (20 s): out of order
    reply = await save(registrar, register(cseq=10, expires=600))
    assert (reply.status, reply.reason) == OUT_OF_ORDER


async def test_another_call_id_replaces_whatever_its_cseq(registrar, location):
    await save(registrar, register(cseq=10))
    reply = await save(registrar, register(cseq=1, callid="rebooted", expires=300))
    assert reply.status == OK
    (b,) = await location.get("alice")
    assert (b.callid, b.cseq, b.expires) == ("rebooted", 1, T0 + 300)


# --- q-values and max_contacts -----------------------------------------------------------------


async def test_q_values_are_stored_ordered_and_listed(registrar, location):
    req = register("<sip:alice@10.0.0.1>;q=0.1, <sip:alice@10.0.0.2>;q=1, <sip:alice@10.0.0.3>;q=0.5")
    reply = await save(registrar, req)
    assert [(u, p["q"]) for u, p in contacts_of(reply).items()] == [
        ("sip:alice@10.0.0.2", "1"), ("sip:alice@10.0.0.3", "0.5"), ("sip:alice@10.0.0.1", "0.1")]
    assert [b.q for b in await location.get("alice")] == [1.0, 0.5, 0.1]


async def test_bad_q_is_400(registrar):
    reply = await save(registrar, register("<sip:alice@10.0.0.1>;q=2"))
    assert reply.status == BAD_REQUEST


async def test_max_contacts(location, clock):
    registrar = Registrar(location, max_contacts=2, clock=clock)
    await save(registrar, register("<sip:alice@10.0.0.1>, <sip:alice@10.0.0.2>"))
    reply = await save(registrar, register("<sip:alice@10.0.0.3>", cseq=2))
    assert (reply.status, reply.reason) == TOO_MANY_CONTACTS
    assert sorted(b.contact for b in await location.get("alice")) == [
        "sip:alice@10.0.0.1", "sip:alice@10.0.0.2"]
    # Replacing one by another in the same request is within the limit.
    reply = await save(registrar, register(
        "<sip:alice@10.0.0.1>;expires=0, <sip:alice@10.0.0.3>", cseq=3))
    assert reply.status == OK
    assert sorted(contacts_of(reply)) == ["sip:alice@10.0.0.2", "sip:alice@10.0.0.3"]
    # Three new ones at once are not.
    reply = await save(registrar, register(
        "<sip:bob@10.0.0.1>, <sip:bob@10.0.0.2>, <sip:bob@10.0.0.3>",
        to="<sip:bob@example.com>"))
    assert reply.status == FORBIDDEN
    assert await location.get("bob") == []
    # Expired bindings do not count.
    clock.now += 3600
    reply = await save(registrar, register("<sip:alice@10.0.0.9>", cseq=4))
    assert reply.status == OK and list(contacts_of(reply)) == ["sip:alice@10.0.0.9"]


# --- Path (RFC 3327) ------------------------------------------------------------------------


PATHS = "Path: <sip:edge2.example.net;lr>\nPath: <sip:edge1.example.net;lr;received=sip:198.51.100.7:5060>"


async def test_path_is_stored_and_echoed_when_supported(registrar, location):
    reply = await save(registrar, register(headers=PATHS + "\nSupported: outbound, path",
                                           source=("udp", "192.0.2.50", 5060)))
    assert reply.status == OK
    assert reply_header(reply, "Path") == (
        "<sip:edge2.example.net;lr>, <sip:edge1.example.net;lr;received=sip:198.51.100.7:5060>")
    (b,) = await location.get("alice")
    assert b.path == ("sip:edge2.example.net;lr",
                      "sip:edge1.example.net;lr;received=sip:198.51.100.7:5060")
    # The source is the edge proxy, not the UA: no received of its own; the edge's
    # "received" parameter (Kamailio path_use_received) is kept.
    assert b.received is None


async def test_path_received_parameter(registrar, location):
    await save(registrar, register(headers="Path: <sip:edge.example.net;lr;received=sip:198.51.100.9:4000>"))
    (b,) = await location.get("alice")
    assert b.received == "sip:198.51.100.9:4000"


async def test_path_not_echoed_without_supported_path(registrar, location):
    reply = await save(registrar, register(headers=PATHS))
    assert reply.status == OK and reply_header(reply, "Path") is None
    assert len((await location.get("alice"))[0].path) == 2


async def test_path_modes(location, clock):
    strict = Registrar(location, path_mode="strict", clock=clock)
    reply = await save(strict, register(headers=PATHS))
    assert reply.status == BAD_EXTENSION
    assert reply_header(reply, "Unsupported") == "path"
    assert await location.get("alice") == []
    reply = await save(strict, register(headers=PATHS + "\nSupported: path"))
    assert reply.status == OK and reply_header(reply, "Path")

    off = Registrar(Location(clock=clock), path_mode="off", clock=clock)
    reply = await save(off, register(headers=PATHS + "\nSupported: path"))
    assert reply.status == OK and reply_header(reply, "Path") is None

    ignored = Registrar(Location(clock=clock), use_path=False, clock=clock)
    reply = await save(ignored, register(headers=PATHS + "\nSupported: path"))
    assert reply_header(reply, "Path") is None
    assert (await ignored.location.get("alice"))[0].path == ()


async def test_bad_path_is_400(registrar):
    reply = await save(registrar, register(headers="Path: sip:edge;lr, <"))
    assert reply.status == BAD_REQUEST


# --- RFC 5626 instance and reg-id -----------------------------------------------------------


INSTANCE = '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'


async def test_a_phone_moving_replaces_its_binding(registrar, location, clock):
    await save(registrar, register(f"<sip:alice@198.51.100.7:5060>;+sip.instance={INSTANCE};reg-id=1"))
    (first,) = await location.get("alice")
    assert first.instance == "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"
    assert first.reg_id == 1
    clock.now += 60
    # The same phone from a new address, with a new Call-ID after a reboot.
    reply = await save(registrar, register(
        f"<sip:alice@203.0.113.50:5060>;+sip.instance={INSTANCE.lower()};reg-id=1",
        callid="after-reboot", source=("udp", "203.0.113.50", 5060)))
    assert reply.status == OK
    (b,) = await location.get("alice")
    assert b.contact == "sip:alice@203.0.113.50:5060" and b.ruid == first.ruid
    params = contacts_of(reply)["sip:alice@203.0.113.50:5060"]
    assert params["+sip.instance"] == first.instance.lower() and params["reg-id"] == "1"


async def test_another_reg_id_is_another_flow(registrar, location):
    await save(registrar, register(f"<sip:alice@198.51.100.7:5060>;+sip.instance={INSTANCE};reg-id=1"))
    await save(registrar, register(f"<sip:alice@198.51.100.7:5062>;+sip.instance={INSTANCE};reg-id=2",
                                   cseq=2))
    assert sorted(b.reg_id for b in await location.get("alice")) == [1, 2]


async def test_instance_without_reg_id_replaces_the_same_instance(registrar, location):
    await save(registrar, register(f"<sip:alice@198.51.100.7:5060>;+sip.instance={INSTANCE}"))
    await save(registrar, register(f"<sip:alice@198.51.100.7:6000>;+sip.instance={INSTANCE}",
                                   cseq=2))
    (b,) = await location.get("alice")
    assert b.contact == "sip:alice@198.51.100.7:6000" and b.reg_id == 0


@pytest.mark.parametrize("reg_id", ["0", "x", "1234567890"])
async def test_bad_reg_id_is_400(registrar, reg_id):
    reply = await save(registrar, register(
        f"<sip:alice@198.51.100.7:5060>;+sip.instance={INSTANCE};reg-id={reg_id}"))
    assert reply.status == BAD_REQUEST


# --- received, socket, methods -----------------------------------------------------------------


@pytest.mark.parametrize("contact, source, received", [
    ("<sip:alice@198.51.100.7:5060>", ("udp", "198.51.100.7", 5060), None),
    ("<sip:alice@198.51.100.7>", ("udp", "198.51.100.7", 5060), None),  # default port
    ("<sip:alice@10.0.0.5:5060>", ("udp", "198.51.100.7", 5060),
     "sip:198.51.100.7:5060;transport=udp"),                             # NAT: other address
    ("<sip:alice@198.51.100.7:5060>", ("udp", "198.51.100.7", 34567),
     "sip:198.51.100.7:34567;transport=udp"),                            # NAT: other port
    ("<sip:alice@198.51.100.7:5060;transport=tcp>", ("tcp", "198.51.100.7", 5060), None),
    ("<sip:alice@198.51.100.7:5060>", ("tcp", "198.51.100.7", 5060),
     "sip:198.51.100.7:5060;transport=tcp"),                             # other transport
    ("<sip:alice@[2001:db8::7]:5060>", ("udp", "2001:db8::7", 5060), None),
    ("<sip:alice@[2001:db8::7]:5060>", ("udp", "2001:db8::9", 5060),
     "sip:[2001:db8::9]:5060;transport=udp"),
])
async def test_received_is_stored_for_nated_contacts(registrar, location, contact, source,
                                                     received):
    reply = await save(registrar, register(contact, source=source))
    assert reply.status == OK
    (b,) = await location.get("alice")
    assert b.received == received
    assert b.socket == ("tcp:192.0.2.1:5060" if source[0] == "tcp" else "udp:192.0.2.1:5060")


async def test_a_ua_that_is_where_its_via_says_is_reached_at_its_contact(registrar, location):
    # Not behind a NAT (the source is the Via's sent-by): a Contact on another port or
    # host — a test tool registering for a callee, a third-party registration — is used
    # as it is (Kamailio's nat_uac_test("19") would not fire either).
    req = register("<sip:alice@198.51.100.7:6000>", source=("udp", "198.51.100.7", 7000),
                   via="198.51.100.7:7000")
    assert (await save(registrar, req)).status == OK
    (b,) = await location.get("alice")
    assert b.received is None


async def test_methods_from_allow_or_the_contact_parameter(registrar, location):
    await save(registrar, register(
        '<sip:alice@10.0.0.1>, <sip:alice@10.0.0.2>;methods="MESSAGE"',
        headers="Allow: INVITE, ACK, BYE\nAllow: CANCEL"))
    by_contact = {b.contact: b.methods for b in await location.get("alice")}
    assert by_contact == {"sip:alice@10.0.0.1": 1 | 2 | 4 | 8,
                          "sip:alice@10.0.0.2": METHOD_BITS["MESSAGE"]}
    await save(registrar, register("<sip:bob@10.0.0.3>", to="<sip:bob@example.com>"))
    (b,) = await location.get("bob")
    assert b.methods is None  # no Allow: every method


# --- AORs -------------------------------------------------------------------------------------


async def test_aor_without_and_with_domain(location, clock):
    plain = Registrar(location, clock=clock)
    await save(plain, register(to="<sip:Alice@Example.COM>"))
    assert await location.aors() == ["alice"]
    multi = Registrar(Location(clock=clock), use_domain=True, clock=clock)
    await save(multi, register(to="<sip:Alice@Example.COM>"))
    assert await multi.location.aors() == ["alice@example.com"]
    sensitive = Registrar(Location(clock=clock), use_domain=True, case_sensitive=True, clock=clock)
    await save(sensitive, register(to="<sip:Alice@Example.COM>"))
    assert await sensitive.location.aors() == ["Alice@example.com"]


async def test_save_under_another_aor(registrar, location):
    req = register()
    await registrar.save(req, aor="sip:Bob@example.com")
    assert req.outcome.status == OK
    assert await location.aors() == ["bob"]


@pytest.mark.parametrize("to", ["<sip:example.com>", "<tel:+15551234>"])
async def test_to_without_a_user_or_not_sip_is_400(registrar, to):
    reply = await save(registrar, register(to=to))
    assert reply.status == BAD_REQUEST


@pytest.mark.parametrize("contact, expires, extra", [
    ("<sip:alice@bad host>", None, ""),
    ("<sip:alice@10.0.0.1>;expires=soon", None, ""),
    ("<sip:alice@10.0.0.1>", "never", ""),
    (f"<sip:alice@10.0.0.1;x={'a' * 600}>", None, ""),                 # contact > 512
])
async def test_malformed_register_is_400(registrar, location, contact, expires, extra):
    req = register(contact, headers=(f"Expires: {expires}" if expires else "") + extra)
    reply = await save(registrar, req)
    assert reply.status == BAD_REQUEST
    assert await location.aors() == []


async def test_long_call_id_is_400(registrar):
    reply = await save(registrar, register(callid="x" * 300))
    assert reply.status == BAD_REQUEST


async def test_user_agent_is_truncated_to_the_column(registrar, location):
    await save(registrar, register(headers="User-Agent: " + "u" * 300))
    (b,) = await location.get("alice")
    assert b.user_agent == "u" * 255


# --- lookup -----------------------------------------------------------------------------------


async def test_lookup_unknown_is_404(registrar):
    req = invite()
    found = await registrar.lookup(req)
    assert not found and found.status == NOT_FOUND and found.reason == "Not Found"
    assert req.ruri == "sip:alice@example.com"


async def test_lookup_rewrites_the_request_uri_and_forks(registrar):
    await save(registrar, register(
        "<sip:alice@10.0.0.1:5060>;q=0.5, <sip:alice@198.51.100.7:5060>;q=0.9, "
        "<sip:alice@10.0.0.3:5060>;q=0.1"))
    req = invite()
    found = await registrar.lookup(req)
    assert found and found.status is None and isinstance(found, LookupResult)
    assert [b.contact for b in found.contacts] == [
        "sip:alice@198.51.100.7:5060", "sip:alice@10.0.0.1:5060", "sip:alice@10.0.0.3:5060"]
    assert req.ruri == "sip:alice@198.51.100.7:5060"
    assert req.destination is None  # the contact is where the REGISTER came from
    assert req.path == ()
    branches = [(t.uri, t.destination, t.q, t.path) for t in req.branches]
    # The other contacts were registered from 198.51.100.7 too (NAT): sent there.
    assert branches == [
        ("sip:alice@10.0.0.1:5060", "sip:198.51.100.7:5060;transport=udp", 0.5, ()),
        ("sip:alice@10.0.0.3:5060", "sip:198.51.100.7:5060;transport=udp", 0.1, ())]


async def test_lookup_uses_received_as_next_hop(registrar):
    await save(registrar, register("<sip:alice@10.0.0.5:5060>", source=("udp", "198.51.100.7", 40001)))
    req = invite()
    assert await registrar.lookup(req)
    assert req.ruri == "sip:alice@10.0.0.5:5060"
    assert req.destination == "sip:198.51.100.7:40001;transport=udp"
    assert not getattr(req, "branches", None)


async def test_lookup_routes_through_the_path(registrar):
    await save(registrar, register("<sip:alice@10.0.0.5:5060>;q=1, <sip:alice@10.0.0.6>;q=0.5",
                                   headers=PATHS, source=("udp", "192.0.2.50", 5060)))
    req = invite()
    assert await registrar.lookup(req)
    path = ("sip:edge2.example.net;lr", "sip:edge1.example.net;lr;received=sip:198.51.100.7:5060")
    assert req.destination is None and req.path == path
    (branch,) = req.branches
    assert (branch.uri, branch.destination, branch.path) == ("sip:alice@10.0.0.6", None, path)


async def test_lookup_when_every_binding_expired_is_480(registrar, clock):
    await save(registrar, register(expires=60))
    clock.now += 61
    found = await registrar.lookup(invite())
    assert found.status == TEMPORARILY_UNAVAILABLE and found.reason == "Temporarily Unavailable"
    await registrar.location.purge_expired()
    assert (await registrar.lookup(invite())).status == NOT_FOUND


async def test_lookup_method_filtering(registrar):
    await save(registrar, register('<sip:alice@198.51.100.7>;methods="MESSAGE"'))
    req = invite()
    found = await registrar.lookup(req, method_filtering=True)
    assert found.status == METHOD_NOT_ALLOWED and found.allow == "MESSAGE"
    assert req.ruri == "sip:alice@example.com"
    assert await registrar.lookup(invite(method="MESSAGE"), method_filtering=True)
    assert await registrar.lookup(invite())  # filtering is off by default


async def test_lookup_without_branches_and_by_aor(location, clock):
    registrar = Registrar(location, append_branches=False, clock=clock)
    await save(registrar, register("<sip:alice@198.51.100.7>, <sip:alice@198.51.100.7:5070>"))
    req = invite("sip:someone-else@example.com")
    found = await registrar.lookup(req, aor="sip:alice@example.com")
    assert len(found.contacts) == 1 and not getattr(req, "branches", None)
    assert req.ruri in ("sip:alice@198.51.100.7", "sip:alice@198.51.100.7:5070")


async def test_registered_and_unregister(registrar, location):
    await save(registrar, register("<sip:alice@10.0.0.1>, <sip:alice@10.0.0.2>"))
    assert await registrar.registered(invite())
    assert await registrar.registered("sip:alice@example.com")
    assert await registrar.registered("alice")
    assert not await registrar.registered("sip:bob@example.com")
    assert await registrar.unregister("sip:alice@example.com", "sip:alice@10.0.0.1") == 1
    assert [b.contact for b in await location.get("alice")] == ["sip:alice@10.0.0.2"]
    assert await registrar.unregister("alice") == 1
    assert not await registrar.registered(invite())


# --- with a database ---------------------------------------------------------------------------


async def test_registrations_survive_a_restart_and_are_found(storage):
    clock = Clock()
    loc = Location(storage, db_mode=1, clock=clock)
    await loc.start()
    registrar = Registrar(loc, clock=clock)
    reply = await save(registrar, register("<sip:alice@10.0.0.5:5060>;q=0.8", headers=PATHS))
    assert reply.status == OK
    await loc.stop()

    clock.now += 10
    again = Location(storage, db_mode=1, clock=clock)
    await again.start()
    try:
        req = invite()
        found = await Registrar(again, clock=clock).lookup(req)
        assert found and req.ruri == "sip:alice@10.0.0.5:5060"
        assert req.path == ("sip:edge2.example.net;lr",
                            "sip:edge1.example.net;lr;received=sip:198.51.100.7:5060")
        reply = await save(Registrar(again, clock=clock), register(None, cseq=2))
        assert contacts_of(reply) == {"sip:alice@10.0.0.5:5060": {"q": "0.8", "expires": "3590"}}
    finally:
        await again.stop()


async def test_database_only_registrar(storage):
    clock = Clock()
    registrar = Registrar(Location(storage, db_mode=3, clock=clock), clock=clock)
    reply = await save(registrar, register("<sip:alice@10.0.0.5:5060>", cseq=5))
    assert reply.status == OK
    clock.now += 5
    reply = await save(registrar, register("<sip:alice@10.0.0.6:5060>;q=0.3", cseq=6))
    assert list(contacts_of(reply)) == ["sip:alice@10.0.0.5:5060", "sip:alice@10.0.0.6:5060"]
    reply = await save(registrar, register("<sip:alice@10.0.0.5:5060>", cseq=4))
    assert (reply.status, reply.reason) == OUT_OF_ORDER
    req = invite()
    assert await registrar.lookup(req)
    assert req.ruri == "sip:alice@10.0.0.5:5060" and len(req.branches) == 1
    reply = await save(registrar, register("*", cseq=7, expires=0))
    assert reply.status == OK
    assert (await registrar.lookup(invite())).status == NOT_FOUND


async def test_database_only_answers_500_when_the_database_fails(tmp_path: Path):
    path = tmp_path / "loc.sqlite"
    db = open_storage(f"sqlite:///{path}", busy_timeout=0.05, retry_interval=60)
    await db.open()
    await db.ensure_tables(["location"])
    registrar = Registrar(Location(db, db_mode=3))
    await db.insert("location", {"ruid": "r1", "username": "alice", "contact": "sip:a@h"})
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        reply = await save(registrar, register())
        assert reply.status == SERVER_ERROR
        found = await registrar.lookup(invite())
        assert found.status == SERVER_ERROR
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.close()


async def test_write_through_answers_from_memory_when_the_database_fails(tmp_path: Path):
    path = tmp_path / "loc.sqlite"
    db = open_storage(f"sqlite:///{path}", busy_timeout=0.05, retry_interval=0.01)
    await db.open()
    await db.ensure_tables(["location"])
    location = Location(db, db_mode=1)
    registrar = Registrar(location)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        try:
            reply = await save(registrar, register())
            assert reply.status == OK
            assert await registrar.lookup(invite())
        finally:
            other.execute("ROLLBACK")
            other.close()
        await asyncio.sleep(0.02)  # the storage's next probe
        await location.stop()  # writes what was queued
        assert await db.count("location") == 1
    finally:
        await db.close()


# --- through the proxy core ---------------------------------------------------------------------


async def _route(req, ctx):
    if req.method == "REGISTER":
        return await ctx.registrar.save(req)
    found = await ctx.registrar.lookup(req)
    if not found:
        return req.reply(found.status, found.reason)
    return req.relay()


async def test_register_then_call_through_the_core():
    script = types.ModuleType("registrar_test_script")
    script.request_route = _route
    registrar = Registrar(Location())
    tester = ScriptTester(script, domains=["example.com"], modules={"registrar": registrar})
    out = await tester.request("""\
        REGISTER sip:example.com SIP/2.0
        Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKr1
        Max-Forwards: 70
        To: <sip:alice@example.com>
        From: <sip:alice@example.com>;tag=1
        Call-ID: r1@10.0.0.5
        CSeq: 1 REGISTER
        Contact: <sip:alice@10.0.0.5:5060>
        Expires: 300
        """, source="udp:198.51.100.7:40000")
    assert out.replied == OK
    (contact,) = parse_contact_list(out.reply.header("Contact"))
    assert str(contact.uri) == "sip:alice@10.0.0.5:5060" and contact.params["expires"] == "300"

    out = await tester.request("""\
        INVITE sip:alice@example.com SIP/2.0
        Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKi1
        Max-Forwards: 70
        To: <sip:alice@example.com>
        From: <sip:bob@example.com>;tag=2
        Call-ID: i1@203.0.113.9
        CSeq: 1 INVITE
        Contact: <sip:bob@203.0.113.9>
        """, source="udp:203.0.113.9:5060")
    # Sent to the address the REGISTER came from (behind a NAT), with the R-URI rewritten.
    assert out.forwarded.ruri == "sip:alice@10.0.0.5:5060"
    assert out.forwarded_to == Target("udp", "198.51.100.7", 40000)

    out = await tester.request("""\
        INVITE sip:carol@example.com SIP/2.0
        Via: SIP/2.0/UDP 203.0.113.9:5060;branch=z9hG4bKi2
        Max-Forwards: 70
        To: <sip:carol@example.com>
        From: <sip:bob@example.com>;tag=3
        Call-ID: i2@203.0.113.9
        CSeq: 1 INVITE
        """, source="udp:203.0.113.9:5060")
    assert out.replied == NOT_FOUND


# --- one table shared with Kamailio (usrloc db_mode 3) -------------------------------------------


KAMAILIO = "/usr/sbin/kamailio"
KAMCMD = "/usr/sbin/kamcmd"


def _kamailio_sqlite_modules() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/kamailio/modules/db_sqlite.so")
                   + glob.glob("/usr/lib/kamailio/modules/db_sqlite.so"))
    return str(Path(found[0]).parent) if found else None


def _kamcmd(sock: Path, *args: str) -> str:
    done = subprocess.run([KAMCMD, "-s", f"unix:{sock}", *args], capture_output=True,
                          text=True, timeout=15)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_kamailio_and_siprouter_share_the_location_table(tmp_path: Path):
    """siprouter's registrar writes, Kamailio's usrloc (db_mode 3, use_domain) reads — and
    the other way round — on one SQLite file."""
    mpath = _kamailio_sqlite_modules()
    if not (os.access(KAMAILIO, os.X_OK) and os.access(KAMCMD, os.X_OK) and mpath):
        pytest.skip("Kamailio with its db_sqlite module is not installed")
    db_file = tmp_path / "shared.sqlite"
    url = f"sqlite:///{db_file}"
    await init_database(url)
    db = open_storage(url)
    await db.open()
    try:
        registrar = Registrar(Location(db, db_mode=3), use_domain=True)
        reply = await save(registrar, register(
            f'<sip:alice@10.0.0.5:5060>;q=0.5;+sip.instance={INSTANCE};reg-id=1',
            headers="Path: <sip:edge.example.net;lr>\nUser-Agent: siprouter-test"))
        assert reply.status == OK

        with socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        sock = tmp_path / "ctl.sock"
        cfg = tmp_path / "kamailio.cfg"
        cfg.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
mpath="{mpath}/"
loadmodule "db_sqlite.so"
loadmodule "ctl.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("ctl", "binrpc", "unix:{sock}")
modparam("usrloc", "db_url", "sqlite://{db_file}")
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "use_domain", 1)
request_route {{
    if (method == "X-NEVER") {{ save("location"); lookup("location"); }}
    sl_send_reply("404", "Not Here");
}}
""")
        log = tmp_path / "kamailio.log"
        with open(log, "wb") as logf:
            proc = subprocess.Popen([KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(tmp_path)],
                                    stdout=logf, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 15
            while not sock.exists():
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.05)
            seen = _kamcmd(sock, "ul.lookup", "location", "alice@example.com")
            for text in ("sip:alice@10.0.0.5:5060", "<sip:edge.example.net;lr>", "0.5",
                         "reg-1@198.51.100.7", "siprouter-test",
                         "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"):
                assert text in seen, (text, seen)
            _kamcmd(sock, "ul.add", "location", "alice@example.com", "sip:alice@10.0.0.6:5060",
                    "600", "0.9", ".", "0", "0", "0")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        assert "ERROR" not in log.read_text(), log.read_text()[-3000:]

        req = invite()
        found = await registrar.lookup(req)
        assert [b.contact for b in found.contacts] == ["sip:alice@10.0.0.6:5060",
                                                       "sip:alice@10.0.0.5:5060"]
        assert found.contacts[0].q == 0.9 and found.contacts[0].path == ()
        assert req.ruri == "sip:alice@10.0.0.6:5060"
    finally:
        await db.close()
