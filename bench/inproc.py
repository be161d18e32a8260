# SPDX-License-Identifier: Apache-2.0
"""Drive a real siprouter Server in-process, with no SIPp and no socket I/O, to count what
one call (S2: INVITE/180/200/ACK/BYE/200 through the stateful proxy) or one registration
(S3) costs in Python alone.

    python3 bench/inproc.py S2 5000            # µs per call, hot caches (simulator included)
    python3 bench/inproc.py S3 20000           # µs per REGISTER, hot caches
    python3 bench/inproc.py S2 300 --opcodes   # bytecodes executed per call, by function

The server is the one ``siprouter run`` builds (``Server`` with examples/stateful_nexthop.py
or examples/registrar.py); datagrams go straight to its UDP protocol's
``datagram_received`` and its ``sendto`` is replaced by a list, so what is measured is
parsing, the script, the transaction layer and serialisation, not the event loop or
the kernel.

Read the figures with care (docs/performance.md): under SIPp at 500 calls/s the same
code costs 3-4 times more per message (caches are cold between messages), and bytecode
counts are not a cost measure (a change that cut them by 15 % made cachegrind count 8 %
more machine instructions). Compare changes with ``bench/cachegrind_diff.sh``, which runs
this file under cachegrind with the collector off.

Port 15060 is bound (the proxy recognises its own Record-Route by address), so one run
at a time. SIPROUTER_REPO picks the checkout (default: the one this file is in).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(os.environ.get("SIPROUTER_REPO", Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(REPO))

from siprouter.config import load_config  # noqa: E402
from siprouter.server import Server  # noqa: E402
from siprouter.transport import manager  # noqa: E402

UAC, UAS = ("127.0.0.1", 15080), ("127.0.0.1", 15070)
SDP = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
       "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
SCRIPTS = {"S2": "stateful_nexthop.py", "S3": "registrar.py"}

sent: list[tuple[bytes, tuple[str, int]]] = []


def _capture(self: object, data: bytes, addr: tuple[str, int]) -> None:
    sent.append((data, addr))


def _head(data: bytes) -> list[str]:
    return data.decode().split("\r\n\r\n", 1)[0].split("\r\n")


def answer(request: bytes, status: int, reason: str, to_tag: str) -> bytes:
    """What SIPp's uas.xml sends back: Vias, From, To with a tag, Call-ID, CSeq and the
    Record-Route lines of the request, our Contact."""
    lines = []
    for line in _head(request)[1:]:
        name = line.split(":", 1)[0].lower()
        if name in ("via", "from", "call-id", "cseq", "record-route"):
            lines.append(line)
        elif name == "to":
            lines.append(line if ";tag=" in line else f"{line};tag={to_tag}")
    lines += ["Contact: <sip:service@127.0.0.1:15070;transport=UDP>", "Content-Length: 0"]
    return (f"SIP/2.0 {status} {reason}\r\n" + "\r\n".join(lines) + "\r\n\r\n").encode()


def _last_to(port: int, prefix: bytes = b"") -> bytes:
    for data, addr in reversed(sent):
        if addr[1] == port and data.startswith(prefix):
            return data
    raise AssertionError(f"nothing sent to port {port} starting {prefix!r}: {sent!r}")


def one_call(receive, n: int) -> None:
    """One S2 call, as uac.xml and uas.xml play it."""
    from_tag, call_id, to_tag = f"{n}SIPpTag00{n}", f"{n}-inproc@127.0.0.1", f"{n}uas"
    common = (f"From: sipp <sip:sipp@127.0.0.1:15080>;tag={from_tag}\r\n"
              f"Call-ID: {call_id}\r\nContact: sip:sipp@127.0.0.1:15080\r\nMax-Forwards: 70\r\n"
              f"Subject: Performance Test\r\n")
    sent.clear()
    receive((f"INVITE sip:service@127.0.0.1:15060 SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK-{n}-1-0\r\n{common}"
             f"To: service <sip:service@127.0.0.1:15060>\r\nCSeq: 1 INVITE\r\n"
             f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}").encode(), UAC)
    invite = _last_to(15070)
    sent.clear()
    receive(answer(invite, 180, "Ringing", to_tag), UAS)
    receive(answer(invite, 200, "OK", to_tag), UAS)
    ok = _last_to(15080, b"SIP/2.0 200")
    routes = "".join(f"Route: {line.split(':', 1)[1].strip()}\r\n" for line in _head(ok)
                     if line.lower().startswith("record-route"))
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        sent.clear()
        receive((f"{method} sip:service@127.0.0.1:15070;transport=UDP SIP/2.0\r\n"
                 f"Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK-{n}-{cseq + 1}-0\r\n{routes}{common}"
                 f"To: service <sip:service@127.0.0.1:15060>;tag={to_tag}\r\n"
                 f"CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n").encode(), UAC)
    bye = _last_to(15070)
    sent.clear()
    receive(answer(bye, 200, "OK", to_tag), UAS)
    _last_to(15080, b"SIP/2.0 200")


def one_registration(receive, n: int) -> None:
    """One S3 registration, as reg.xml sends it (10,000 users, round robin)."""
    user = f"user{n % 10000 + 1:05d}"
    sent.clear()
    receive((f"REGISTER sip:127.0.0.1:15060 SIP/2.0\r\n"
             f"Via: SIP/2.0/UDP 127.0.0.1:15080;branch=z9hG4bK-{n}-1-0\r\n"
             f"From: <sip:{user}@bench.local>;tag={n}SIPpTag00{n}\r\nTo: <sip:{user}@bench.local>\r\n"
             f"Call-ID: {n}-inproc@127.0.0.1\r\nCSeq: 1 REGISTER\r\n"
             f"Contact: <sip:{user}@127.0.0.1:15070>\r\nMax-Forwards: 70\r\nExpires: 3600\r\n"
             f"User-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n").encode(), UAC)
    _last_to(15080, b"SIP/2.0 200")


async def main(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="siprouter-inproc-")
    config = Path(workdir, "siprouter.toml")
    config.write_text(f'''
[server]
listen = ["udp:127.0.0.1:15060"]
data_dir = "{workdir}/data"
[routing]
script = "{REPO}/examples/{SCRIPTS[args.scenario]}"
params = {{ next_hop = "sip:127.0.0.1:15070" }}
[usrloc]
db_mode = 0
[log]
level = "warning"
''')
    manager._UdpProtocol.sendto = _capture  # type: ignore[method-assign]
    server = Server(load_config(config))
    await server.start()
    try:
        protocol = next(o for o in gc.get_objects() if isinstance(o, manager._UdpProtocol))
        receive = protocol.datagram_received
        step = one_call if args.scenario == "S2" else one_registration
        for n in range(args.warm):
            step(receive, n)
        if args.no_gc:
            gc.disable()
        first = args.warm
        if args.opcodes:
            count_opcodes(step, receive, first, args.count)
            return
        t0 = time.process_time()
        for n in range(first, first + args.count):
            step(receive, n)
        per = (time.process_time() - t0) / args.count * 1e6
        what = "call (simulator included)" if args.scenario == "S2" else "registration"
        print(f"{args.scenario}: {per:.1f} µs CPU per {what}, hot caches")
    finally:
        gc.enable()
        await server.stop()


def count_opcodes(step, receive, first: int, count: int) -> None:
    ops: collections.Counter[tuple[str, str]] = collections.Counter()

    def tracer(frame, event, arg):  # noqa: ANN001, ARG001
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            ops[(Path(code.co_filename).name, code.co_name)] += 1
        return tracer

    sys.settrace(tracer)
    try:
        for n in range(first, first + count):
            step(receive, n)
    finally:
        sys.settrace(None)
    mine = {k: v for k, v in ops.items() if k[0] != Path(__file__).name}
    print(f"bytecodes per call, siprouter only: {sum(mine.values()) / count:.0f}")
    for (filename, function), v in sorted(mine.items(), key=lambda kv: -kv[1])[:40]:
        print(f"{v / count:8.1f}  {filename}:{function}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=sorted(SCRIPTS))
    parser.add_argument("count", type=int)
    parser.add_argument("--warm", type=int, default=2000, help="calls before measuring")
    parser.add_argument("--opcodes", action="store_true", help="count bytecodes per function")
    parser.add_argument("--no-gc", action="store_true", help="cyclic collector off while measuring")
    asyncio.run(main(parser.parse_args()))
