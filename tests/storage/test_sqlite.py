# SPDX-License-Identifier: Apache-2.0
"""SQLite backend specifics: Kamailio's datetime storage, a locked database as an outage,
the event loop kept free, the statement cache bounded."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from siprouter.storage import StorageUnavailable, _sql, open_storage
from siprouter.storage.sqlite import from_sqlite_time, sqlite_kind, to_julian_day

T = datetime.datetime(2031, 1, 2, 3, 4, 5)


def kamailio_timet_to_sqlite(t: int) -> float:
    """db_sqlite's timet_to_sqlite (src/modules/db_sqlite/dbase.c)."""
    return ((t - 0.5) / 86400.0) + 2440587.5


def kamailio_sqlite_to_timet(jd: float) -> int:
    """db_sqlite's sqlite_to_timet (the C cast truncates)."""
    return int(86400.0 * (jd - 2440587.5) + 0.5)


@pytest.mark.parametrize("t", [0, 1, 86399, 1717000000, 1900000000, 2147483647])
def test_julian_days_round_trip_with_kamailio(t):
    local = datetime.datetime.fromtimestamp(t)
    # what we write, Kamailio reads as the same time_t
    assert kamailio_sqlite_to_timet(to_julian_day(local)) == t
    # what Kamailio writes, we read as the same time
    assert from_sqlite_time(kamailio_timet_to_sqlite(t)) == local
    assert from_sqlite_time(to_julian_day(local)) == local


def test_text_datetimes_are_read_too():
    assert from_sqlite_time("2030-05-28 21:32:15") == datetime.datetime(2030, 5, 28, 21, 32, 15)
    assert from_sqlite_time("not a time") == "not a time"


@pytest.mark.parametrize(("decl", "kind"), [
    ("INTEGER", "int"), ("INT(11)", "int"), ("SERIAL", "int"), ("BIGINT", "int"),
    ("VARCHAR(64)", "str"), ("TEXT", "str"), ("CHAR(3)", "str"),
    ("REAL", "float"), ("FLOAT", "float"), ("DOUBLE PRECISION", "float"),
    ("BLOB", "bytes"),
    ("TIMESTAMP WITHOUT TIME ZONE", "datetime"), ("DATETIME", "datetime"),
    ("", "any"), ("NUMERIC", "any"),
])
def test_declared_types_map_like_kamailio_db_sqlite(decl, kind):
    assert sqlite_kind(decl) == kind


async def test_memory_database_and_missing_parent_directory(tmp_path: Path):
    async with open_storage("sqlite:///:memory:") as db:
        assert await db.ensure_tables(["subscriber"]) == ["version", "subscriber"]
        await db.insert("subscriber", {"username": "a", "domain": "d"})
        assert await db.count("subscriber") == 1
    deep = tmp_path / "a" / "b" / "siprouter.sqlite"
    async with open_storage(f"sqlite:///{deep}") as db:
        await db.ensure_tables(["subscriber"])
    assert deep.exists()


async def test_unopenable_file_fails_to_open_with_storage_unavailable(tmp_path: Path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StorageUnavailable, match="cannot connect"):
        await open_storage(f"sqlite:///{tmp_path / 'dir.sqlite'}").open()


async def test_a_locked_database_is_an_outage_logged_once(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO, logger="siprouter.storage")
    path = tmp_path / "locked.sqlite"
    db = open_storage(f"sqlite:///{path}", busy_timeout=0.05, retry_interval=0.05)
    await db.open()
    await db.ensure_tables(["subscriber"])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        failures = 0
        for n in range(10):
            try:
                await db.insert("subscriber", {"username": f"u{n}", "domain": "d"})
            except StorageUnavailable:
                failures += 1
        assert failures == 10
        assert not db.available
    finally:
        other.execute("ROLLBACK")
        other.close()
    await asyncio.sleep(0.06)
    await db.insert("subscriber", {"username": "after", "domain": "d"})
    assert db.available
    assert await db.count("subscriber") == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "locked" in errors[0].getMessage()
    assert any("reachable again" in r.getMessage() and "10 calls failed" in r.getMessage()
               for r in caplog.records)
    await db.close()


async def test_long_writes_leave_the_event_loop_free(tmp_path: Path):
    """insert_many of 20,000 rows runs in aiosqlite's thread: the loop keeps ticking."""
    async with open_storage(f"sqlite:///{tmp_path / 'big.sqlite'}") as db:
        await db.ensure_tables(["location"])
        rows = [{"ruid": f"r{n}", "username": f"u{n}", "contact": f"sip:u{n}@192.0.2.1",
                 "expires": T} for n in range(20000)]
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.get_running_loop().create_task(ticker())
        started = time.monotonic()
        await db.insert_many("location", rows)
        elapsed = time.monotonic() - started
        done.set()
        await task
        assert await db.count("location") == 20000
        # A blocked loop would tick once at most; allow for a slow, loaded machine.
        assert ticks >= max(2, int(elapsed / 0.005 * 0.2)), (ticks, elapsed)


async def test_statement_cache_is_bounded(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(_sql, "STATEMENT_CACHE_SIZE", 8)
    async with open_storage(f"sqlite:///{tmp_path / 'c.sqlite'}") as db:
        await db.ensure_tables(["subscriber"])
        for n in range(40):  # "in" lists of every length: a new shape each time
            from siprouter.storage import Cond

            await db.select("subscriber", where={"id": Cond("in", list(range(n)))})
            assert len(db._statements) <= 8
