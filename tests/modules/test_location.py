# SPDX-License-Identifier: Apache-2.0
"""The location service: bindings in memory and in the Kamailio ``location`` table, per
usrloc ``db_mode`` (0 memory, 1 write-through, 2 write-back, 3 database only).

Tests that take the ``storage`` fixture run once per backend (SQLite, PostgreSQL,
MariaDB, db_text cached and not cached)."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
from pathlib import Path

import pytest

from siprouter.modules import RPC_ATTRIBUTE, RpcError
from siprouter.modules.location import (
    METHOD_BITS,
    Binding,
    Location,
    contacts_equal,
    method_names,
    methods_mask,
    split_aor,
)
from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import StorageSchemaError, StorageUnavailable, open_storage

T0 = 1_800_000_000  # 2027-01-15: away from DST changes (datetimes are local time)


class Clock:
    """Wall clock the test moves."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def binding(loc: Location, aor: str = "alice", contact: str = "sip:alice@192.0.2.10:5060",
            expires: int = 3600, **kw) -> Binding:
    now = int(loc.clock())
    kw.setdefault("last_modified", now)
    kw.setdefault("callid", "call-1")
    kw.setdefault("cseq", 1)
    return Binding(aor, contact, now + expires, ruid=kw.pop("ruid", None) or loc.new_ruid(),
                   **kw)


def full_binding(loc: Location, aor: str = "alice@example.com") -> Binding:
    """A binding with every field set to something other than its default."""
    return binding(
        loc, aor, "sip:alice@10.0.0.5:5062;transport=tcp;ob", q=0.7, callid="abc@10.0.0.5",
        cseq=42, flags=2, cflags=64, path=("sip:edge1.example.net;lr", "sip:edge2.example.net;lr"),
        received="sip:198.51.100.7:40000;transport=tcp", socket="tcp:192.0.2.1:5060",
        user_agent="Phone/1.0", instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
        reg_id=1, methods=methods_mask(["INVITE", "BYE", "ACK", "CANCEL"]))


# --- values ---------------------------------------------------------------------------


def test_split_aor():
    assert split_aor("alice@example.com") == ("alice", "example.com")
    assert split_aor("alice") == ("alice", None)
    assert split_aor("a@b@example.com") == ("a@b", "example.com")


def test_methods_mask_uses_kamailio_bits():
    assert methods_mask(["INVITE", "ACK", "BYE"]) == 1 | 4 | 8
    assert methods_mask([" message "]) == METHOD_BITS["MESSAGE"]
    assert methods_mask(["FOO"]) == 32768  # METHOD_OTHER


def test_method_names_invert_the_mask():
    assert method_names(methods_mask(["BYE", "INVITE", "MESSAGE"])) == ["INVITE", "BYE", "MESSAGE"]
    assert method_names(0) == []


def test_binding_allows_methods():
    loc = Location()
    anything = binding(loc)
    assert anything.allows("INVITE") and anything.allows("FOO")
    only_message = binding(loc, methods=methods_mask(["MESSAGE"]))
    assert only_message.allows("MESSAGE")
    assert not only_message.allows("INVITE")


def test_contacts_compare_as_uris():
    assert contacts_equal("sip:alice@h:5060", "sip:alice@h:5060")
    assert contacts_equal("sip:alice@H:5060;Transport=UDP", "sip:alice@h:5060;transport=udp")
    assert not contacts_equal("sip:alice@h:5060", "sip:alice@h")  # no port != 5060
    assert not contacts_equal("sip:alice@h", "not a uri")


def test_bad_parameters_are_refused():
    with pytest.raises(LocalProtocolError, match="db_mode"):
        Location(db_mode=4)
    with pytest.raises(LocalProtocolError, match="needs a database"):
        Location(db_mode=1)
    with pytest.raises(LocalProtocolError, match="timer_interval"):
        Location(timer_interval=0)


def test_ruids_are_unique():
    a, b = Location(), Location()
    ids = {a.new_ruid() for _ in range(1000)} | {b.new_ruid() for _ in range(1000)}
    assert len(ids) == 2000
    assert all(len(r) <= 64 for r in ids)  # the ruid column


# --- memory (db_mode 0) --------------------------------------------------------------------


async def test_get_orders_by_q_then_most_recent():
    clock = Clock()
    loc = Location(clock=clock)
    low = binding(loc, contact="sip:a@1.1.1.1", q=0.1)
    none_old = binding(loc, contact="sip:a@2.2.2.2")
    high = binding(loc, contact="sip:a@4.4.4.4", q=1.0)
    clock.now += 10
    none_new = binding(loc, contact="sip:a@3.3.3.3")
    mid = binding(loc, contact="sip:a@5.5.5.5", q=0.5)
    for b in (low, none_old, none_new, high, mid):
        await loc.put(b)
    got = [b.contact for b in await loc.get("alice")]
    # No q counts as 1.0; among equals the most recently modified comes first.
    assert got[0] == "sip:a@3.3.3.3"
    assert set(got[1:3]) == {"sip:a@2.2.2.2", "sip:a@4.4.4.4"}  # q 1.0, same time
    assert got[3:] == ["sip:a@5.5.5.5", "sip:a@1.1.1.1"]


async def test_an_older_binding_put_later_is_still_in_order():
    clock = Clock()
    loc = Location(clock=clock)
    old = binding(loc, contact="sip:a@1.1.1.1")
    clock.now += 10
    new = binding(loc, contact="sip:a@2.2.2.2")
    await loc.put(new)
    await loc.put(old)
    assert await loc.get("alice") == [new, old]


async def test_put_replaces_by_ruid_and_counts():
    clock = Clock()
    loc = Location(clock=clock)
    first = binding(loc)
    await loc.put(first)
    await loc.put(binding(loc, "bob", "sip:bob@192.0.2.11"))
    assert (loc.n_aors, loc.n_contacts) == (2, 2)
    clock.now += 60
    refreshed = binding(loc, ruid=first.ruid, cseq=2)
    await loc.put(refreshed)
    assert await loc.get("alice") == [refreshed]
    assert (loc.n_aors, loc.n_contacts) == (2, 2)
    assert await loc.stats() == {"aors": 2, "contacts": 2, "pending": 0}
    assert sorted(await loc.aors()) == ["alice", "bob"]


async def test_expired_bindings_are_hidden_until_purged():
    clock = Clock()
    loc = Location(clock=clock)
    short = binding(loc, contact="sip:a@1.1.1.1", expires=60)
    long = binding(loc, contact="sip:a@2.2.2.2", expires=600)
    await loc.put(short)
    await loc.put(long)
    clock.now += 60  # "short" expires at exactly now: expired
    assert await loc.get("alice") == [long]
    assert len(await loc.get("alice", include_expired=True)) == 2
    assert loc.n_contacts == 2
    assert await loc.purge_expired() == 1
    assert await loc.get("alice", include_expired=True) == [long]
    assert (loc.n_aors, loc.n_contacts) == (1, 1)
    assert await loc.purge_expired(T0 + 600) == 1
    assert (loc.n_aors, loc.n_contacts) == (0, 0)
    assert await loc.aors() == []


async def test_purge_of_many_aors_yields_to_the_loop():
    clock = Clock()
    loc = Location(clock=clock)
    for i in range(12_000):
        await loc.put(binding(loc, f"u{i}", f"sip:u{i}@10.0.0.1", expires=10 if i % 2 else 1000))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    assert await loc.purge_expired(T0 + 100) == 6000
    task.cancel()
    assert ticks - before >= 2  # PURGE_SLICE = 5000 AORs per slice
    assert (loc.n_aors, loc.n_contacts) == (6000, 6000)


async def test_delete_one_or_all_and_by_contact():
    loc = Location(clock=Clock())
    a = binding(loc, contact="sip:alice@1.1.1.1:5060")
    b = binding(loc, contact="sip:alice@2.2.2.2")
    c = binding(loc, contact="sip:alice@3.3.3.3")
    for x in (a, b, c):
        await loc.put(x)
    assert await loc.delete("alice", a.ruid) == 1
    assert await loc.delete("alice", "no-such-ruid") == 0
    assert await loc.delete_contact("alice", "sip:ALICE@2.2.2.2") == 0  # user is case-sensitive
    assert await loc.delete_contact("alice", "sip:alice@2.2.2.2;transport=udp") == 0
    assert await loc.delete_contact("alice", "sip:alice@2.2.2.2;foo=bar") == 1  # §19.1.4
    assert [x.contact for x in await loc.get("alice")] == ["sip:alice@3.3.3.3"]
    assert await loc.delete("alice") == 1
    assert await loc.delete("alice") == 0
    assert (loc.n_aors, loc.n_contacts) == (0, 0)


async def test_change_applies_deletes_and_puts_together():
    loc = Location(clock=Clock())
    old = binding(loc, contact="sip:alice@1.1.1.1")
    await loc.put(old)
    new = binding(loc, contact="sip:alice@2.2.2.2")
    await loc.change("alice", put=[new], delete=[old])
    assert await loc.get("alice") == [new]
    assert loc.n_contacts == 1
    with pytest.raises(LocalProtocolError, match="put under AOR"):
        await loc.change("alice", put=[binding(loc, "bob", "sip:bob@h")], delete=[new])
    assert await loc.get("alice") == [new]  # nothing half done


async def test_rpc_commands_are_marked_and_answer_plain_data():
    clock = Clock()
    loc = Location(clock=clock)
    assert getattr(Location.rpc_dump, RPC_ATTRIBUTE) == "ul.dump"
    assert getattr(Location.rpc_lookup, RPC_ATTRIBUTE) == "ul.lookup"
    assert getattr(Location.rpc_rm, RPC_ATTRIBUTE) == "ul.rm"
    full = full_binding(loc)
    await loc.put(full)
    await loc.put(binding(loc, "bob", "sip:bob@192.0.2.11"))
    clock.now += 100
    dump = await loc.rpc_dump()
    assert dump["n_aors"] == 2 and dump["n_contacts"] == 2
    assert [a["aor"] for a in dump["aors"]] == ["alice@example.com", "bob"]
    contact = dump["aors"][0]["contacts"][0]
    assert contact["contact"] == full.contact
    assert contact["expires"] == 3500 and contact["expires_at"] == T0 + 3600
    assert contact["path"] == list(full.path)
    assert contact["q"] == 0.7 and contact["reg_id"] == 1
    import json
    json.dumps(dump)  # plain data

    found = await loc.rpc_lookup("alice@example.com")
    assert found["contacts"][0]["ruid"] == full.ruid
    with pytest.raises(RpcError, match="not found"):
        await loc.rpc_lookup("carol")
    with pytest.raises(RpcError):
        await loc.rpc_rm("bob", "sip:bob@192.0.2.99")
    assert await loc.rpc_rm("bob", "sip:bob@192.0.2.11") == {"aor": "bob", "removed": 1}
    assert await loc.rpc_rm("alice@example.com") == {"aor": "alice@example.com", "removed": 1}
    with pytest.raises(RpcError):
        await loc.rpc_rm("alice@example.com")
    assert (await loc.rpc_dump())["n_aors"] == 0


async def test_start_and_stop_run_the_timer():
    clock = Clock()
    loc = Location(clock=clock, timer_interval=0.01)
    await loc.put(binding(loc, expires=60))
    await loc.start()
    try:
        clock.now += 61
        for _ in range(200):
            if not loc.n_contacts:
                break
            await asyncio.sleep(0.01)
        assert loc.n_contacts == 0
    finally:
        await loc.stop()
    await loc.stop()  # idempotent


# --- the location table ------------------------------------------------------------------


def _row_fields(b: Binding) -> dict:
    d = b.to_dict()
    d.pop("expires")
    return d


async def test_write_through_writes_kamailio_rows(storage):
    clock = Clock()
    loc = Location(storage, db_mode=1, clock=clock)
    await loc.start()
    full = full_binding(loc)
    plain = binding(loc, "bob", "sip:bob@192.0.2.11")
    await loc.put(full)
    await loc.put(plain)
    rows = {r["username"]: r for r in await storage.select("location")}
    assert set(rows) == {"alice", "bob"}
    row = rows["alice"]
    assert row["domain"] == "example.com"
    assert row["ruid"] == full.ruid
    assert row["contact"] == full.contact
    assert row["path"] == "<sip:edge1.example.net;lr>,<sip:edge2.example.net;lr>"
    assert row["received"] == full.received
    assert row["expires"] == datetime.datetime.fromtimestamp(T0 + 3600)
    assert row["last_modified"] == datetime.datetime.fromtimestamp(T0)
    assert abs(row["q"] - 0.7) < 1e-6
    assert (row["callid"], row["cseq"], row["flags"], row["cflags"]) == ("abc@10.0.0.5", 42, 2, 64)
    assert (row["user_agent"], row["socket"]) == ("Phone/1.0", "tcp:192.0.2.1:5060")
    assert (row["instance"], row["reg_id"], row["methods"]) == (full.instance, 1, 15)
    bob = rows["bob"]
    # Kamailio's conventions for "none": q -1, methods NULL, domain NULL without use_domain.
    assert bob["domain"] is None and bob["q"] == -1 and bob["methods"] is None
    assert bob["path"] is None and bob["received"] is None and bob["instance"] is None

    await loc.delete("bob")
    assert [r["username"] for r in await storage.select("location")] == ["alice"]
    await loc.stop()


@pytest.mark.parametrize("db_mode", [1, 2])
async def test_bindings_survive_a_restart(storage, db_mode):
    clock = Clock()
    loc = Location(storage, db_mode=db_mode, clock=clock)
    await loc.start()
    full = full_binding(loc)
    plain = binding(loc, "bob", "sip:bob@192.0.2.11")
    gone = binding(loc, "carol", "sip:carol@192.0.2.12", expires=30)
    for b in (full, plain, gone):
        await loc.put(b)
    await loc.stop()  # mode 2 writes its queue here

    clock.now += 60  # carol's binding expired while the server was down
    again = Location(storage, db_mode=db_mode, clock=clock)
    await again.start()
    try:
        assert sorted(await again.aors()) == ["alice@example.com", "bob"]
        (loaded,) = await again.get("alice@example.com")
        assert _row_fields(loaded) == _row_fields(full)
        (loaded,) = await again.get("bob")
        assert _row_fields(loaded) == _row_fields(plain)
        assert (again.n_aors, again.n_contacts) == (2, 2)
        # The row that expired while the server was down goes at the first purge.
        assert await storage.count("location", {"username": "carol"}) == 1
        await again.timer_round()
        assert await storage.count("location", {"username": "carol"}) == 0
        assert await storage.count("location") == 2
    finally:
        await again.stop()


async def test_write_back_writes_at_the_flush_only(storage):
    clock = Clock()
    loc = Location(storage, db_mode=2, clock=clock)
    await loc.start()
    a = binding(loc, contact="sip:alice@1.1.1.1")
    await loc.put(a)
    await loc.put(binding(loc, "bob", "sip:bob@192.0.2.11"))
    assert await storage.count("location") == 0
    assert (await loc.stats())["pending"] == 2
    await loc.timer_round()
    assert await storage.count("location") == 2
    assert (await loc.stats())["pending"] == 0

    refreshed = binding(loc, ruid=a.ruid, contact=a.contact, cseq=2)
    await loc.put(refreshed)
    await loc.delete("bob")
    (row,) = await storage.select("location", where={"username": "alice"})
    assert row["cseq"] == 1  # not yet
    assert await storage.count("location", {"username": "bob"}) == 1
    assert await loc.flush() == 2
    (row,) = await storage.select("location", where={"username": "alice"})
    assert row["cseq"] == 2
    assert await storage.count("location", {"username": "bob"}) == 0
    await loc.stop()


async def test_write_back_flushes_on_its_timer(storage):
    loc = Location(storage, db_mode=2, timer_interval=0.05)
    await loc.start()
    try:
        await loc.put(binding(loc))
        assert await storage.count("location") == 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            if await storage.count("location"):
                break
        assert await storage.count("location") == 1
    finally:
        await loc.stop()


async def test_write_back_flushes_many_rows_in_chunks(storage):
    loc = Location(storage, db_mode=2, clock=Clock())
    for i in range(1200):
        await loc.put(binding(loc, f"u{i}", f"sip:u{i}@10.0.0.1"))
    assert await loc.flush() == 1200
    assert await storage.count("location") == 1200
    for aor in [f"u{i}" for i in range(0, 1200, 2)]:
        await loc.delete(aor)
    assert await loc.flush() == 600
    assert await storage.count("location") == 600


@pytest.mark.parametrize("db_mode", [1, 2])
async def test_purge_removes_expired_rows(storage, db_mode):
    clock = Clock()
    loc = Location(storage, db_mode=db_mode, clock=clock)
    await loc.put(binding(loc, contact="sip:alice@1.1.1.1", expires=60))
    await loc.put(binding(loc, contact="sip:alice@2.2.2.2", expires=600))
    await loc.flush()
    assert await storage.count("location") == 2
    clock.now += 120
    await loc.timer_round()
    assert [r["contact"] for r in await storage.select("location")] == ["sip:alice@2.2.2.2"]
    assert loc.n_contacts == 1


async def test_database_only_shares_bindings_between_servers(storage, backend):
    clock = Clock()
    a = Location(storage, db_mode=3, clock=clock)
    # The second server: its own connection where the backend allows (db_text with a
    # cache keeps its own copy of the files, so there both share one storage object).
    other = storage if backend.name == "text" else backend.new_storage()
    if other is not storage:
        await other.open()
    b = Location(other, db_mode=3, clock=clock)
    try:
        await a.start()
        await b.start()
        first = full_binding(a)
        await a.put(first)
        (seen,) = await b.get("alice@example.com")
        assert _row_fields(seen) == _row_fields(first)
        second = binding(b, "alice@example.com", "sip:alice@10.9.9.9", q=0.2)
        await b.put(second)
        assert [x.ruid for x in await a.get("alice@example.com")] == [first.ruid, second.ruid]
        assert await a.aors() == ["alice@example.com"]
        assert await a.stats() == {"aors": 1, "contacts": 2, "pending": 0}
        assert (a.n_aors, a.n_contacts) == (1, 2)
        # A refresh by one server replaces the row the other wrote.
        clock.now += 30
        await a.put(binding(a, "alice@example.com", second.contact, ruid=second.ruid, cseq=9,
                            q=0.2))
        assert [x.cseq for x in await b.get("alice@example.com")] == [42, 9]
        assert await b.delete_contact("alice@example.com", "sip:alice@10.9.9.9") == 1
        assert await a.delete("alice@example.com", first.ruid) == 1
        assert await a.get("alice@example.com") == []
        # Expiry: hidden at once, rows deleted by the purge.
        await a.put(binding(a, "dave", "sip:dave@10.0.0.4", expires=60))
        clock.now += 61
        assert await b.get("dave") == []
        assert len(await b.get("dave", include_expired=True)) == 1
        assert await b.purge_expired() == 1
        assert await storage.count("location") == 0
        assert await a.delete("dave") == 0
    finally:
        await a.stop()
        await b.stop()
        if other is not storage:
            await other.close()


async def test_rows_written_by_kamailio_are_read(storage):
    """A row as Kamailio's usrloc writes it (use_domain = 1, methods NULL, q -1, Path as the
    header value) reads as the binding it stands for."""
    when = datetime.datetime.fromtimestamp(T0 + 600)
    await storage.insert("location", {
        "ruid": "uloc-5f3b8a1e-27b1-1", "username": "bob", "domain": "example.org",
        "contact": "sip:bob@203.0.113.5:5060;transport=udp", "received": None,
        "path": "<sip:10.0.0.1;lr;received=sip:203.0.113.5:5060>", "expires": when,
        "q": -1, "callid": "k1", "cseq": 7, "last_modified": datetime.datetime.fromtimestamp(T0),
        "flags": 0, "cflags": 0, "user_agent": "Kamailio-UA", "socket": "udp:10.0.0.2:5060",
        "methods": None, "instance": None, "reg_id": 0, "server_id": 0, "connection_id": -1,
        "keepalive": 0, "partition": 0})
    for mode in (1, 3):
        loc = Location(storage, db_mode=mode, clock=Clock())
        await loc.start()
        try:
            (b,) = await loc.get("bob@example.org")
            assert b.q is None and b.methods is None and b.cseq == 7
            assert b.path == ("sip:10.0.0.1;lr;received=sip:203.0.113.5:5060",)
            assert b.expires == T0 + 600 and b.ruid == "uloc-5f3b8a1e-27b1-1"
        finally:
            await loc.stop()


# --- a database that fails (a locked SQLite file) ------------------------------------------


class LockedSqlite:
    """An SQLite storage and a second connection that can hold its write lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = open_storage(f"sqlite:///{path}", busy_timeout=0.05, retry_interval=0.01)
        self.other: sqlite3.Connection | None = None

    def lock(self) -> None:
        self.other = sqlite3.connect(self.path, isolation_level=None)
        self.other.execute("BEGIN EXCLUSIVE")

    def unlock(self) -> None:
        if self.other is not None:
            self.other.execute("ROLLBACK")
            self.other.close()
            self.other = None


@pytest.fixture
async def sq(tmp_path):
    locked = LockedSqlite(tmp_path / "loc.sqlite")
    await locked.db.open()
    await locked.db.ensure_tables(["location"])
    try:
        yield locked
    finally:
        locked.unlock()
        await locked.db.close()


async def test_write_through_keeps_memory_when_the_database_fails(sq, caplog):
    caplog.set_level(logging.WARNING, logger="siprouter.location")
    clock = Clock()
    loc = Location(sq.db, db_mode=1, clock=clock)
    await loc.start()
    sq.lock()
    b = binding(loc)
    await loc.put(b)  # logged, not raised
    await loc.put(binding(loc, "bob", "sip:bob@192.0.2.11"))
    assert await loc.get("alice") == [b]
    assert (await loc.stats())["pending"] == 2
    sq.unlock()
    await asyncio.sleep(0.02)  # the storage's next probe
    await loc.timer_round()
    assert (await loc.stats())["pending"] == 0
    assert await sq.db.count("location") == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "siprouter.location"]
    assert sum("cannot write" in w for w in warnings) == 1  # once per outage
    assert any("work again" in w for w in warnings)
    await loc.stop()


async def test_database_only_raises_when_the_database_fails(sq):
    loc = Location(sq.db, db_mode=3, clock=Clock())
    sq.lock()
    with pytest.raises(StorageUnavailable):
        await loc.put(binding(loc))
    with pytest.raises(StorageUnavailable):
        await loc.get("alice")


async def test_start_fails_when_the_table_cannot_be_read(tmp_path):
    db = open_storage(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    await db.open()  # no location table
    try:
        loc = Location(db, db_mode=1)
        with pytest.raises(StorageSchemaError, match="location"):
            await loc.start()
    finally:
        await db.close()
