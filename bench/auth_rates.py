# SPDX-License-Identifier: Apache-2.0
"""Cost of digest authentication in-process: µs per ``www_authorize`` (MD5, qop=auth,
``subscriber`` table of 10,000 rows on SQLite), its parts, and what aiosqlite's thread hop
costs.

    python3 bench/auth_rates.py [--rows N] [--calls N] [--rounds N] [--no-uvloop] [--url URL]

Reports, per call, wall-clock µs and this process's CPU µs (all threads: aiosqlite's
worker thread included), the best of several rounds:

- ``www_authorize`` end to end, a successful REGISTER (nc counting up, a new nonce every
  200 calls), and a wrong password (same work, same answer);
- ``challenge``: a new nonce and the WWW-Authenticate value (``www_challenge``);
- the pure parts: ``parse_credentials``, the nonce HMAC check, HA1 + response;
- the subscriber lookup alone: ``Storage.select`` through aiosqlite, and the same SQL
  with the stdlib ``sqlite3`` module on the same file, synchronously: the difference is
  the thread hop (queue to aiosqlite's thread, a future resolved back on the loop with
  ``call_soon_threadsafe``, the loop waking up).

Requests are parsed before the clock starts (parsing is the core's cost, not auth's).
Not a unit test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from siprouter.modules.auth import Auth  # noqa: E402
from siprouter.script.api import Request  # noqa: E402
from siprouter.sip.digest import compute_ha1, compute_response, parse_credentials  # noqa: E402
from siprouter.sip.headers import parse_challenge  # noqa: E402
from siprouter.sip.message import parse_message  # noqa: E402
from siprouter.storage import open_storage  # noqa: E402

DOMAIN = "example.com"
SECRET = b"benchmark-secret-0123456789abcdef"


def register_text(user: str, n: int, credentials: str | None) -> bytes:
    auth = f"Authorization: {credentials}\r\n" if credentials else ""
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{n}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag=f{n}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: bench-{user}@192.0.2.10\r\n"
        f"CSeq: {n + 1} REGISTER\r\n"
        f"Contact: <sip:{user}@192.0.2.10:5060>\r\n"
        "Expires: 3600\r\n"
        f"{auth}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def parse(data: bytes) -> Request:
    req = parse_message(data, request_cls=Request)
    assert isinstance(req, Request)
    return req


def credentials(user: str, password: str, ch: dict[str, str], nc: int) -> str:
    ha1 = compute_ha1(user, ch["realm"], password)
    nc_text = f"{nc:08x}"
    response = compute_response(ha1, ch["nonce"], "REGISTER", f"sip:{DOMAIN}", qop="auth",
                                nc=nc_text, cnonce="0a4f113b")
    return (f'Digest username="{user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
            f'uri="sip:{DOMAIN}", response="{response}", algorithm=MD5, qop=auth, '
            f'nc={nc_text}, cnonce="0a4f113b"')


class Timer:
    def __enter__(self) -> Timer:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


RESULTS: dict[str, list[tuple[float, float]]] = {}


def report(what: str, t: Timer, n: int) -> None:
    RESULTS.setdefault(what, []).append((t.wall / n * 1e6, t.cpu / n * 1e6))


def print_results() -> None:
    """The best round of each measurement (the machine's noise only ever adds time)."""
    for what, rounds in RESULTS.items():
        wall = min(w for w, _ in rounds)
        cpu = min(c for _, c in rounds)
        print(f"  {what:<48} {wall:8.1f} µs wall {cpu:8.1f} µs CPU")


async def bench(url: str, rows: int, calls: int, rounds: int) -> None:
    db = open_storage(url)
    await db.open()
    await db.ensure_tables(["subscriber"])
    if await db.count("subscriber") < rows:
        await db.delete("subscriber")
        await db.insert_many("subscriber", [
            {"username": f"user{i}", "domain": DOMAIN, "password": f"pw{i}",
             "ha1": compute_ha1(f"user{i}", DOMAIN, f"pw{i}"),
             "ha1b": compute_ha1(f"user{i}@{DOMAIN}", DOMAIN, f"pw{i}")}
            for i in range(rows)])
    print(f"{db!r}: {await db.count('subscriber')} subscribers; {calls} calls per "
          f"measurement, best of {rounds} rounds")
    for _ in range(rounds):
        auth = Auth(db, secret=SECRET)

        # Requests with credentials, prepared (and parsed) before timing.
        def prepared(wrong: bool, auth: Auth = auth) -> list[Request]:
            out = []
            ch: dict[str, str] = {}
            for n in range(calls):
                user = f"user{(n * 7919) % rows}"
                if n % 200 == 0:
                    first = parse(register_text(user, n, None))
                    auth.www_challenge(first)
                    ch = parse_challenge(first.outcome.headers[0][1]).params
                password = "wrong" if wrong else f"pw{(n * 7919) % rows}"
                out.append(parse(register_text(user, n, credentials(user, password, ch,
                                                                    n % 200 + 1))))
            return out

        good, bad = prepared(False), prepared(True)
        for req in good[:50]:  # warm caches (statement cache, URI cache) on throwaway copies
            await auth.www_authorize(parse(req.raw))
        good = prepared(False)

        with Timer() as t:
            for req in good:
                result = await auth.www_authorize(req)
        assert result, result
        report("www_authorize, success", t, calls)
        with Timer() as t:
            for req in bad:
                result = await auth.www_authorize(req)
        assert not result and result.reason == "wrong password", result
        report("www_authorize, wrong password", t, calls)

        fresh = [parse(register_text("user1", n, None)) for n in range(calls)]
        with Timer() as t:
            for req in fresh:
                auth.www_challenge(req)
        report("www_challenge (new nonce + header)", t, calls)
        fresh = [parse(register_text("user1", n, None)) for n in range(calls)]
        with Timer() as t:
            for req in fresh:
                result = await auth.www_authorize(req)
        assert result.status == 401
        report("www_authorize, no credentials", t, calls)

        values = [req.header("Authorization") for req in good]
        with Timer() as t:
            creds = [parse_credentials(v) for v in values]
        report("part: parse_credentials", t, calls)
        with Timer() as t:
            for c in creds:
                auth._open_nonce(c.nonce)
        report("part: nonce MAC check", t, calls)
        with Timer() as t:
            for n, c in enumerate(creds):
                c.matches(compute_ha1(c.username, c.realm, f"pw{(n * 7919) % rows}"), "REGISTER")
        report("part: HA1 + response (MD5) + compare", t, calls)

        names = [f"user{(n * 7919) % rows}" for n in range(calls)]
        with Timer() as t:
            for name in names:
                await db.select("subscriber", ("password", "domain"), {"username": name})
        report(f"part: Storage.select ({db.scheme})", t, calls)
        if db.scheme == "sqlite":
            conn = sqlite3.connect(db.path)  # type: ignore[attr-defined]
            sql = "SELECT password, domain FROM subscriber WHERE username = ?"
            with Timer() as t:
                for name in names:
                    conn.execute(sql, (name,)).fetchall()
            report("part: same SELECT, stdlib sqlite3, no thread", t, calls)
            conn.close()

            def noop() -> None:
                return None

            loop = asyncio.get_running_loop()
            with Timer() as t:
                for _ in names:
                    await loop.run_in_executor(None, noop)
            report("reference: empty run_in_executor round trip", t, calls)
    await db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args()
    url = args.url
    tmp = None
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="auth-bench-")
        url = f"sqlite:///{os.path.join(tmp.name, 'auth.sqlite')}"
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
            print("event loop: uvloop")
        except ImportError:
            print("event loop: asyncio (uvloop not installed)")
    else:
        print("event loop: asyncio")
    asyncio.run(bench(url, args.rows, args.calls, args.rounds))
    print_results()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
