# SPDX-License-Identifier: Apache-2.0
"""Memory per registered contact at 100,000 contacts (issue 5; Kamailio's usrloc: about
1.1 KB per contact), measured with tracemalloc and as the growth of the resident set.

    python3 bench/location_memory.py [N]

Each figure comes from a process of its own (the resident set is measured without
tracemalloc, whose bookkeeping would count too).

The bindings are made the way the server makes them: REGISTERs parsed from bytes and
saved by ``Registrar.save`` into a db_mode 0 ``Location`` (requests are dropped after
their answer, as in the server). Two kinds of phone:

- "desk phone": one UDP contact whose address is the source address (no NAT, so no
  ``received``), a 32-hex-digit Call-ID, a User-Agent shared with the other phones.
- "NAT + outbound": a TCP contact behind a NAT (``received`` stored), ``+sip.instance``
  and ``reg-id`` (RFC 5626), a UUID Call-ID, q-value.

Bounded caches of the parser (URIs, hosts) are filled before the baseline is taken, so
they are not counted.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from siprouter.modules.location import Location  # noqa: E402
from siprouter.modules.registrar import Registrar  # noqa: E402
from siprouter.script.api import Request  # noqa: E402
from siprouter.sip.message import parse_message  # noqa: E402
from siprouter.transport.types import ListenSocket, Source  # noqa: E402

UDP = ListenSocket("udp", "192.0.2.1", 5060)
TCP = ListenSocket("tcp", "192.0.2.1", 5060)
USER_AGENTS = ["Yealink SIP-T46S 66.86.0.15", "Grandstream GXP2170 1.0.11.3",
               "Linphone/5.2.0 (belle-sip/5.2.0)", "MicroSIP/3.21.3"]


def ip_of(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def desk_phone(i: int) -> tuple[bytes, Source]:
    ip = ip_of(i)
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:5060;branch=z9hG4bK{i:x}a;rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:user{i:06d}@example.com>;tag={i:x}\r\n"
        f"To: <sip:user{i:06d}@example.com>\r\n"
        f"Call-ID: {i * 2654435761 % 2**128:032x}@{ip}\r\n"
        f"CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:user{i:06d}@{ip}:5060;transport=udp>\r\n"
        f"Expires: 3600\r\n"
        f"User-Agent: {USER_AGENTS[i % len(USER_AGENTS)]}\r\n"
        f"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, UPDATE, MESSAGE\r\n"
        f"Content-Length: 0\r\n\r\n").encode()
    return data, Source("udp", ip, 5060, UDP)


def nat_outbound(i: int) -> tuple[bytes, Source]:
    ip = ip_of(i)
    uuid = f"{i:08x}-4b1c-4e2d-9f3a-{i * 7919 % 2**48:012x}"
    data = (
        f"REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP 192.168.1.20:51234;branch=z9hG4bK{i:x}b;rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:user{i:06d}@example.com>;tag={i:x}\r\n"
        f"To: <sip:user{i:06d}@example.com>\r\n"
        f"Call-ID: {uuid}\r\n"
        f"CSeq: 1 REGISTER\r\n"
        f'Contact: <sip:user{i:06d}@192.168.1.20:51234;transport=tcp;ob>;q=0.9;'
        f'+sip.instance="<urn:uuid:{uuid}>";reg-id=1\r\n'
        f"Supported: outbound, path\r\n"
        f"Expires: 600\r\n"
        f"User-Agent: {USER_AGENTS[i % len(USER_AGENTS)]}\r\n"
        f"Content-Length: 0\r\n\r\n").encode()
    return data, Source("tcp", ip, 40000 + i % 20000, TCP)


async def fill(registrar: Registrar, make, start: int, n: int) -> None:
    for i in range(start, start + n):
        data, source = make(i)
        req = parse_message(data, request_cls=Request)
        req.source = source
        await registrar.save(req)
        assert req.outcome.status == 200, req.outcome


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def measure(make, n: int, traced: bool) -> float:
    """Bytes per binding of n new bindings: traced by tracemalloc, or the growth of the
    resident set (run in a process of its own, without tracemalloc)."""
    # Warm the parser's bounded caches with other users first.
    await fill(Registrar(Location()), make, 10_000_000, 10_000)
    gc.collect()
    rss0 = rss()
    if traced:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] if traced else 0
    location = Location()
    await fill(Registrar(location), make, 0, n)
    gc.collect()
    assert location.n_contacts == n
    if traced:
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        return used / n
    return (rss() - rss0) / n


PROFILES = {"desk phone": desk_phone, "NAT + outbound": nat_outbound}


def main(n: int) -> None:
    print(f"location memory: {n} bindings, db_mode 0 (Python {sys.version.split()[0]})")
    for name in PROFILES:
        results = []
        for how in ("traced", "rss"):
            out = subprocess.run([sys.executable, __file__, str(n), name, how],
                                 capture_output=True, text=True, check=True)
            results.append(float(out.stdout))
        print(f"  {name:<16} {results[0]:7.0f} bytes per binding (tracemalloc), "
              f"{results[1]:7.0f} (resident set growth)")


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    if len(sys.argv) > 3:  # one measurement, in a process of its own
        print(asyncio.run(measure(PROFILES[sys.argv[2]], count, sys.argv[3] == "traced")))
    else:
        main(count)
