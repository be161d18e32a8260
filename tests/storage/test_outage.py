# SPDX-License-Identifier: Apache-2.0
"""A database that goes away mid-run: PostgreSQL (and MariaDB) is stopped while a writer
runs, then started again. The errors are logged once per outage, callers get ``StorageUnavailable``, writes
resume without reopening the storage, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from db_backends import database_server
from db_servers import (
    MariadbServer,
    PostgresServer,
)

from siprouter.storage import StorageUnavailable, open_storage

# Every wait below is bounded by this.
DEADLINE = 30.0
RETRY_INTERVAL = 0.2


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def own_server(request) -> Iterator[PostgresServer | MariadbServer]:
    """A database server of this module's own: the test stops and starts it."""
    with database_server(request.param) as server:
        yield server


class Writer:
    """Inserts one location row after another until told to stop; records what was
    acknowledged and what failed (and how)."""

    def __init__(self, db) -> None:
        self.db = db
        self.acknowledged: list[str] = []
        self.attempted: list[str] = []
        self.unavailable = 0
        self.other_errors: list[BaseException] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            ruid = f"w-{n}"
            n += 1
            self.attempted.append(ruid)
            try:
                await self.db.insert("location", {"ruid": ruid, "username": "writer",
                                                  "contact": f"sip:{ruid}@192.0.2.1"})
            except StorageUnavailable:
                self.unavailable += 1
            except Exception as exc:  # anything else is a failure of the test
                self.other_errors.append(exc)
            else:
                self.acknowledged.append(ruid)
            await asyncio.sleep(0.003)

    async def wait_for(self, condition, what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {self.summary()}")
            await asyncio.sleep(0.01)

    def summary(self) -> str:
        return (f"acknowledged={len(self.acknowledged)} unavailable={self.unavailable} "
                f"other={self.other_errors[:3]!r}")


async def test_outage_is_reported_once_and_writes_resume(own_server, caplog):
    caplog.set_level(logging.INFO, logger="siprouter.storage")
    url = own_server.create_database("outage")
    db = open_storage(url, retry_interval=RETRY_INTERVAL, connect_timeout=2)
    await db.open()
    await db.ensure_tables(["location"])
    writer = Writer(db)
    task = asyncio.get_running_loop().create_task(writer.run())
    try:
        for outage in (1, 2):
            ok_before = len(writer.acknowledged)
            await writer.wait_for(lambda n=ok_before: len(writer.acknowledged) >= n + 30,
                                  "writes before the outage")
            failed_before = writer.unavailable
            await asyncio.to_thread(own_server.stop)  # the writer goes on meanwhile
            await writer.wait_for(lambda n=failed_before: writer.unavailable >= n + 20,
                                  "writes failing while the server is down")
            assert not db.available
            await asyncio.sleep(5 * RETRY_INTERVAL)  # several probes fail meanwhile
            await asyncio.to_thread(own_server.start)
            ok_restart = len(writer.acknowledged)
            await writer.wait_for(lambda n=ok_restart: len(writer.acknowledged) >= n + 30,
                                  "writes after the restart")
            assert db.available
            errors = [r for r in caplog.records
                      if r.name == "siprouter.storage" and r.levelno >= logging.ERROR]
            back = [r for r in caplog.records
                    if r.name == "siprouter.storage" and "reachable again" in r.getMessage()]
            assert len(errors) == outage, [r.getMessage() for r in errors]
            assert "unavailable" in errors[-1].getMessage()
            assert "***" in errors[-1].getMessage()  # the password is masked
            assert len(back) == outage
    finally:
        writer.stop.set()
        await asyncio.wait_for(task, DEADLINE)
    assert writer.other_errors == []
    assert writer.unavailable >= 40
    # nothing acknowledged is lost; nothing appears that was never attempted
    stored = {r["ruid"] for r in await db.select("location", ["ruid"])}
    assert set(writer.acknowledged) <= stored
    assert stored <= set(writer.attempted)
    await db.close()


async def test_unreachable_database_fails_to_open_with_storage_unavailable():
    from db_servers import free_tcp_port

    db = open_storage(f"postgresql://nobody:secret@127.0.0.1:{free_tcp_port()}/none",
                      connect_timeout=2)
    with pytest.raises(StorageUnavailable) as info:
        await db.open()
    assert "cannot connect" in str(info.value)
    assert "secret" not in str(info.value)
