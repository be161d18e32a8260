# SPDX-License-Identifier: Apache-2.0
"""Microseconds per registrar operation, in-process (issue 5): what ``Registrar.save`` and
``Registrar.lookup`` cost on top of parsing, per location ``db_mode``.

    python3 bench/registrar_rates.py [USERS] [ROUNDS]

Each request is parsed right before its call, outside the timing (the parse of the start
line and the core headers is the core's cost, measured elsewhere); the header values
save/lookup read (To, Contact, Expires, Path, User-Agent …) are parsed lazily inside the
call, as in the server, and counted. Per call: mean (with garbage collections) and
median (the usual case); wall time (a database thread's work shows in modes 1 and 2). Reported: wall time and


- save (new): the first REGISTER of each user (a binding is created).
- save (refresh): a REGISTER from a registered user with a higher CSeq (benchmark S3's
  case: the binding is replaced, its ruid kept), mode 0 unless said otherwise.
- lookup: an INVITE to a registered user (R-URI rewritten, destination set).
- db_mode 1 (write-through, SQLite file) and 2 (write-back, the flush timed apart).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siprouter.modules.location import Location  # noqa: E402
from siprouter.modules.registrar import Registrar  # noqa: E402
from siprouter.script.api import Request  # noqa: E402
from siprouter.sip.message import parse_message  # noqa: E402
from siprouter.storage import open_storage  # noqa: E402
from siprouter.transport.types import ListenSocket, Source  # noqa: E402

LOCAL = ListenSocket("udp", "10.0.0.1", 5060)


def register_bytes(i: int, cseq: int) -> bytes:
    """A REGISTER as a SIPp/desk-phone sends it (one contact, Expires header)."""
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK-{i}-{cseq};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:user{i:06d}@example.com>;tag={i:x}\r\n"
        f"To: <sip:user{i:06d}@example.com>\r\n"
        f"Call-ID: {i:08x}-reg@{ip}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:user{i:06d}@{ip}:5060;transport=udp>\r\n"
        f"Expires: 3600\r\n"
        f"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
        f"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, UPDATE, MESSAGE\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def invite_bytes(i: int) -> bytes:
    return (
        f"INVITE sip:user{i:06d}@example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.9.0.1:5060;branch=z9hG4bK-inv-{i}\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:caller@example.com>;tag=c{i:x}\r\n"
        f"To: <sip:user{i:06d}@example.com>\r\n"
        f"Call-ID: inv-{i:08x}@10.9.0.1\r\n"
        f"CSeq: 1 INVITE\r\n"
        f"Contact: <sip:caller@10.9.0.1:5060>\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def parse(data: bytes, i: int) -> Request:
    req = parse_message(data, request_cls=Request)
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    req.source = Source("udp", ip, 5060, LOCAL)
    return req  # type: ignore[return-value]


async def timed(datas: list[tuple[bytes, int]], op) -> tuple[float, float]:
    """µs per call of ``op(request)`` on each message of ``datas``: (mean, median). Each
    message is parsed right before its call, outside the timing (as in the server, the
    call finds the request hot in the CPU cache and the garbage collector sees only
    live state, not thousands of parsed requests)."""
    times = []
    outcomes = []
    clock = time.perf_counter_ns
    for data, i in datas:
        req = parse(data, i)
        t0 = clock()
        await op(req)
        times.append(clock() - t0)
        outcome = getattr(req, "outcome", None)
        if outcome is not None:
            outcomes.append(outcome)
    bad = [o for o in outcomes if o.status != 200]
    assert not bad, bad[:3]
    return statistics.fmean(times) / 1000, statistics.median(times) / 1000


def row(name: str, mean: float, median: float) -> None:
    print(f"  {name:<44} {mean:8.1f} µs mean {median:8.1f} µs median")


async def run_saves(registrar: Registrar, users: int, cseq: int) -> tuple[float, float]:
    return await timed([(register_bytes(i, cseq), i) for i in range(users)], registrar.save)


async def main(users: int, rounds: int) -> None:
    print(f"registrar: {users} users, {rounds} refresh rounds "
          f"(Python {sys.version.split()[0]})")

    # db_mode 0 ------------------------------------------------------------------------
    registrar = Registrar(Location())
    row("save (new binding), db_mode 0", *await run_saves(registrar, users, 1))
    best = None
    for r in range(rounds):
        res = await run_saves(registrar, users, 2 + r)
        best = res if best is None or res[0] < best[0] else best
    row("save (refresh), db_mode 0", *best)

    async def headers_only(req):
        req.to.uri, req.contacts, req.expires, req.cseq  # noqa: B018

    row("  of which the sip layer parses To, Contact …",
        *await timed([(register_bytes(i, 99), i) for i in range(users)], headers_only))

    found = []

    async def lookup(req):
        if await registrar.lookup(req):
            found.append(req.ruri)

    row("lookup (found, 1 contact)",
        *await timed([(invite_bytes(i), i) for i in range(users)], lookup))
    assert len(found) == users and all("@10." in ruri for ruri in found)
    row("lookup (not found)",
        *await timed([(invite_bytes(users + i), i) for i in range(users)], lookup))
    assert len(found) == users

    # db_mode 1 and 2 on SQLite ---------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        db = open_storage(f"sqlite:///{os.path.join(tmp, 'loc.sqlite')}")
        await db.open()
        await db.ensure_tables(["location"])
        n = min(users, 2000)
        for mode in (1, 2):
            await db.delete("location")
            loc = Location(db, db_mode=mode)
            registrar = Registrar(loc)
            row(f"save (new binding), db_mode {mode} SQLite", *await run_saves(registrar, n, 1))
            if mode == 2:
                w0 = time.perf_counter()
                await loc.flush()
                flush = (time.perf_counter() - w0) / n * 1e6
                row(f"  flush of {n} new bindings (per binding)", flush, flush)
            row(f"save (refresh), db_mode {mode} SQLite", *await run_saves(registrar, n, 2))
            if mode == 2:
                w0 = time.perf_counter()
                await loc.flush()
                flush = (time.perf_counter() - w0) / n * 1e6
                row(f"  flush of {n} refreshes (per binding)", flush, flush)
            assert await db.count("location") == n
        await db.close()


if __name__ == "__main__":
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(users, rounds))
