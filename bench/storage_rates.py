# SPDX-License-Identifier: Apache-2.0
"""Reads and writes per second per storage backend, for a location-sized row.

    python3 bench/storage_rates.py                 # SQLite, db_text, and throwaway
                                                   # PostgreSQL + MariaDB servers on loopback
    python3 bench/storage_rates.py URL [URL ...]   # existing databases (tables are created)
    options: --seconds S (per measurement, default 2), --concurrency C (default 16),
             --no-uvloop

For each backend: ``insert`` (write), ``replace`` by ruid (usrloc's upsert),
``select`` of one row by ruid (read, indexed) — each with one call in flight at a time
("seq", the latency-bound rate) and with C calls in flight ("conc"). CPU is this process's
CPU time per call (the client side: what it costs the SIP server). The location table is
emptied first; rows written stay for the read phase.

Not a unit test: figures depend on the machine; PostgreSQL and MariaDB run with
durability off (see tests/storage/db_servers.py), SQLite with WAL and synchronous=NORMAL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "storage"))

from siprouter.storage import mask_url, open_storage  # noqa: E402

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0)


def location_row(n: int) -> dict:
    """A location row as usrloc writes it: 22 columns, ~300 bytes of values."""
    return {
        "ruid": f"uloc-5f3a9c2e-{n:08d}",
        "username": f"user{n % 1000}",
        "domain": "example.com",
        "contact": f"sip:user{n}@192.0.2.{n % 250}:5060;transport=udp;ob",
        "received": f"sip:198.51.100.{n % 250}:{10000 + n % 50000}",
        "path": None,
        "expires": T0 + datetime.timedelta(seconds=3600 + n % 600),
        "q": 0.5,
        "callid": f"a84b4c76e66710-{n}@pc33.example.com",
        "cseq": 1 + n % 100,
        "last_modified": T0,
        "flags": 0,
        "cflags": 0,
        "user_agent": "Linphone/5.2.0 (belle-sip/5.2.0)",
        "socket": "udp:203.0.113.1:5060",
        "methods": 8191,
        "instance": f"<urn:uuid:00000000-0000-1000-8000-{n:012d}>",
        "reg_id": 1,
        "server_id": 0,
        "connection_id": -1,
        "keepalive": 0,
        "partition": 0,
    }


async def measure(name: str, op, seconds: float, concurrency: int) -> tuple[float, float]:
    """Run ``op(i)`` for ``seconds`` with ``concurrency`` calls in flight; (calls/s, CPU µs
    per call)."""
    count = 0
    stop_at = time.monotonic() + seconds

    async def worker(start: int) -> None:
        nonlocal count
        i = start
        while time.monotonic() < stop_at:
            await op(i)
            i += concurrency
            count += 1

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return count / wall, cpu / max(count, 1) * 1e6


async def bench(url: str, seconds: float, concurrency: int) -> list[tuple[str, float, float]]:
    db = open_storage(url)
    await db.open()
    results = []
    try:
        await db.ensure_tables(["location"])
        await db.delete("location")
        offset = [0]

        async def insert(i: int) -> None:
            await db.insert("location", location_row(offset[0] + i))

        async def replace(i: int) -> None:
            row = location_row(i % 5000)
            await db.replace("location", row, ["ruid"])

        for label, c in (("seq", 1), ("conc", concurrency)):
            rate, cpu = await measure("insert", insert, seconds, c)
            results.append((f"insert {label}", rate, cpu))
            offset[0] += 10_000_000
        total = await db.count("location")
        ruids = [r["ruid"] for r in await db.select("location", ["ruid"], limit=5000)]

        async def select(i: int) -> None:
            rows = await db.select("location", where={"ruid": ruids[i % len(ruids)]})
            assert len(rows) == 1

        for label, c in (("seq", 1), ("conc", concurrency)):
            rate, cpu = await measure("select", select, seconds, c)
            results.append((f"select {label}", rate, cpu))
        for label, c in (("seq", 1), ("conc", concurrency)):
            rate, cpu = await measure("replace", replace, seconds, c)
            results.append((f"replace {label}", rate, cpu))
        results.append(("rows in table", float(total), 0.0))
    finally:
        await db.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("urls", nargs="*")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    servers = []
    urls = list(args.urls)
    tmp = Path(tempfile.mkdtemp(prefix="siprouter-bench-"))
    if not urls:
        import db_servers

        urls = [f"sqlite:///{tmp / 'bench.sqlite'}", f"text://{tmp / 'dbtext'}"]
        bindir = db_servers.find_postgres_bindir()
        if bindir:
            pg = db_servers.PostgresServer(bindir)
            pg.setup()
            pg.start()
            servers.append(pg)
            urls.append(pg.create_database("bench"))
        found = db_servers.find_mariadbd()
        if found:
            my = db_servers.MariadbServer(*found)
            my.setup()
            my.start()
            servers.append(my)
            urls.append(my.create_database("bench"))
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loop "
              f"{type(asyncio.new_event_loop()).__module__}, {args.seconds:g} s per figure, "
              f"concurrency {args.concurrency}")
        print(f"{'backend':<44} {'operation':<16} {'calls/s':>10} {'CPU µs/call':>12}")
        for url in urls:
            for label, rate, cpu in asyncio.run(bench(url, args.seconds, args.concurrency)):
                shown = mask_url(url).split("?")[0]
                if len(shown) > 43:
                    shown = "…" + shown[-42:]
                if label == "rows in table":
                    print(f"{shown:<44} {label:<16} {int(rate):>10}")
                else:
                    print(f"{shown:<44} {label:<16} {rate:>10.0f} {cpu:>12.0f}")
    finally:
        for s in servers:
            s.kill()


if __name__ == "__main__":
    main()
