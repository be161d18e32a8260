# SPDX-License-Identifier: Apache-2.0
"""The db_text backend (siprouter.storage.dbtext) on real files in a temporary directory."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import Cond, StorageError, StorageSchemaError, dbtext, open_storage, schema
from siprouter.storage.dbtext import DbTextStorage

REPO = Path(__file__).resolve().parents[2]
PEOPLE_HEADER = "id(int,auto) name(str) q(double) note(str,null) seen(time,null) avatar(blob,null)\n"


@pytest.fixture
async def open_db(tmp_path):
    """Factory: an opened DbTextStorage on ``tmp_path/db`` (or another directory), closed
    after the test."""
    opened: list[DbTextStorage] = []

    async def factory(directory: Path | None = None, **options) -> DbTextStorage:
        directory = directory or tmp_path / "db"
        db = open_storage(f"text://{directory}", **options)
        assert isinstance(db, DbTextStorage)
        await db.open()
        opened.append(db)
        return db

    yield factory
    for db in opened:
        try:
            await db.close()
        except StorageError:
            pass


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())


# ----------------------------------------------------------------------------- URL, options

class TestUrl:
    def test_path_follows_text_scheme_as_in_kamailio(self, tmp_path):
        db = DbTextStorage(f"text://{tmp_path}/x")
        assert db.directory == tmp_path / "x"
        assert db.scheme == "text"
        assert db.caching and db.flush_interval == 1.0 and not db.write_through

    def test_options_in_the_query_and_as_keywords(self, tmp_path):
        db = DbTextStorage(f"text://{tmp_path}?db_mode=1&delimiter=%7C")
        assert not db.caching and db.write_through and db.delimiter == "|"
        assert DbTextStorage(f"text://{tmp_path}?flush_interval=none").flush_interval is None
        assert DbTextStorage(f"text://{tmp_path}?flush_interval=0").write_through
        assert DbTextStorage(f"text://{tmp_path}?db_mode=1", db_mode=0).caching

    @pytest.mark.parametrize("query", ["db_mode=2", "db_mode=x", "flush_interval=-1",
                                       "flush_interval=soon", "delimiter=ab"])
    def test_bad_options(self, tmp_path, query):
        with pytest.raises(StorageError, match=query.split("=")[0]):
            DbTextStorage(f"text://{tmp_path}?{query}")

    def test_no_directory(self):
        with pytest.raises(StorageError, match="DIRECTORY"):
            DbTextStorage("text://")


# ----------------------------------------------------------------------------- db init

class TestEnsureTables:
    async def test_creates_every_schema_table_with_kamdbctl_headers_and_versions(
            self, open_db, tmp_path):
        db = await open_db()
        created = await db.ensure_tables()
        assert created[0] == "version"
        assert set(created) == set(schema.METADATA.tables)
        location = (tmp_path / "db" / "location").read_text()
        assert location == (
            "id(int,auto) ruid(string) username(string) domain(string,null) contact(string) "
            "received(string,null) path(string,null) expires(int) q(double) callid(string) "
            "cseq(int) last_modified(int) flags(int) cflags(int) user_agent(string) "
            "socket(string,null) methods(int,null) instance(string,null) reg_id(int) "
            "server_id(int) connection_id(int) keepalive(int) partition(int)\n")
        for name, version in schema.KAMAILIO_TABLE_VERSIONS.items():
            assert await db.table_version(name) == version
        version_file = (tmp_path / "db" / "version").read_text().splitlines()
        assert version_file[0] == "id(int,auto) table_name(string) table_version(int)"
        assert version_file[1] == "1:version:1"

    async def test_second_run_creates_nothing_and_keeps_data(self, open_db, tmp_path):
        db = await open_db()
        await db.ensure_tables(["subscriber"])
        await db.insert("subscriber", {"username": "alice", "domain": "example.com"})
        await db.close()
        db = await open_db()
        assert await db.ensure_tables(["subscriber", "location"]) == ["location"]
        assert await db.count("subscriber") == 1
        assert await db.count("version", {"table_name": "subscriber"}) == 1

    async def test_unknown_table(self, open_db):
        db = await open_db()
        with pytest.raises(LocalProtocolError, match="no table 'nosuch'"):
            await db.ensure_tables(["nosuch"])


# ----------------------------------------------------------------------------- data

@pytest.fixture
async def people(open_db, tmp_path):
    write(tmp_path / "db" / "people", PEOPLE_HEADER)
    return await open_db(flush_interval=None)


class TestData:
    async def test_insert_select_and_the_exact_file(self, people, tmp_path):
        seen = datetime(2024, 5, 6, 7, 8, 9)
        assert await people.insert("people", {"name": "a:b\n", "q": 0.5, "seen": seen}) == 1
        assert await people.insert("people", {"name": "c", "q": 1, "avatar": b"\x00\xff"}) == 2
        rows = await people.select("people")
        assert rows == [
            {"id": 1, "name": "a:b\n", "q": 0.5, "note": None, "seen": seen, "avatar": None},
            {"id": 2, "name": "c", "q": 1.0, "note": None, "seen": None, "avatar": b"\x00\xff"},
        ]
        assert await people.dump() == ["people"]
        assert (tmp_path / "db" / "people").read_bytes() == (
            PEOPLE_HEADER.encode()
            + f"1:a\\:b\\n:0.50::{int(seen.timestamp())}:\n".encode()
            + b"2:c:1.00:::\\0\xff\n")

    async def test_returned_rows_are_copies(self, people):
        await people.insert("people", {"name": "x", "q": 1.0})
        (row,) = await people.select("people")
        row["name"] = "changed"
        assert (await people.select("people", ["name"])) == [{"name": "x"}]

    async def test_auto_values_continue_after_the_largest(self, people):
        await people.insert("people", {"id": 41, "name": "x", "q": 1.0})
        assert await people.insert("people", {"name": "y", "q": 1.0}) == 42
        await people.insert_many("people", [{"name": "z", "q": 1.0}, {"name": "w", "q": 1.0}])
        assert [r["id"] for r in await people.select("people", ["id"])] == [41, 42, 43, 44]

    async def test_schema_defaults_and_kinds(self, open_db):
        db = await open_db()
        await db.ensure_tables(["location"])
        await db.insert("location", {"ruid": "r1", "username": "alice",
                                     "contact": "sip:alice@192.0.2.1"})
        (row,) = await db.select("location")
        # Kamailio's defaults; expires is a datetime although the file column is int.
        assert row["expires"] == datetime(2030, 5, 28, 21, 32, 15)
        assert row["q"] == 1.0 and row["callid"] == "Default-Call-ID" and row["cseq"] == 1
        assert row["domain"] is None and row["user_agent"] == ""

    async def test_datetimes_keep_whole_seconds(self, people):
        await people.insert("people", {"name": "x", "q": 1.0,
                                       "seen": datetime(2024, 1, 1, 0, 0, 0, 999999)})
        assert (await people.select("people"))[0]["seen"] == datetime(2024, 1, 1)

    @pytest.mark.parametrize("row, error, text", [
        ({"name": 5, "q": 1.0}, StorageSchemaError, "column name: expected a str"),
        ({"name": "x", "q": "1"}, StorageSchemaError, "column q: expected a finite float"),
        ({"name": "x", "q": float("nan")}, StorageSchemaError, "finite"),
        ({"name": "x", "q": 1.0, "seen": 5}, StorageSchemaError, "expected a datetime"),
        ({"name": "x", "q": 1.0, "avatar": "s"}, StorageSchemaError, "expected bytes"),
        ({"name": "x", "q": 1.0, "nope": 1}, StorageSchemaError, "no column nope"),
        ({"name": "x"}, StorageError, "column q may not be null"),
        ({"name": None, "q": 1.0}, StorageError, "column name may not be null"),
        ({}, LocalProtocolError, "empty row"),
    ])
    async def test_bad_rows(self, people, row, error, text):
        with pytest.raises(error, match=text):
            await people.insert("people", row)
        assert await people.count("people") == 0

    async def test_insert_many_is_all_or_nothing(self, people):
        with pytest.raises(StorageSchemaError):
            await people.insert_many("people", [{"name": "a", "q": 1.0}, {"name": "b", "q": "x"}])
        assert await people.count("people") == 0
        with pytest.raises(LocalProtocolError, match="same columns"):
            await people.insert_many("people", [{"name": "a", "q": 1.0}, {"name": "b"}])

    async def test_unknown_table_and_bad_names(self, people):
        with pytest.raises(StorageSchemaError, match="no table nosuch .*db init"):
            await people.select("nosuch")
        with pytest.raises(LocalProtocolError):
            await people.select("../people")
        assert not people.has_table("nosuch") and people.has_table("people")

    async def test_closed_storage_is_misuse(self, people):
        await people.close()
        await people.close()  # idempotent
        with pytest.raises(LocalProtocolError, match="before open"):
            await people.select("people")


class TestUniqueKeys:
    """The schema's primary and unique keys are enforced on changes, as in SQL."""

    @pytest.fixture
    async def db(self, open_db):
        db = await open_db(flush_interval=None)
        await db.ensure_tables(["subscriber"])
        await db.insert("subscriber", {"username": "alice", "domain": "a.example"})
        await db.insert("subscriber", {"username": "bob", "domain": "a.example"})
        return db

    async def test_insert(self, db):
        with pytest.raises(StorageError, match="duplicate key: a row with username='alice', "
                                               "domain='a.example' exists"):
            await db.insert("subscriber", {"username": "alice", "domain": "a.example"})
        with pytest.raises(StorageError, match="duplicate key: a row with id=1"):
            await db.insert("subscriber", {"id": 1, "username": "carol", "domain": "a.example"})
        with pytest.raises(StorageError, match="duplicate key"):
            await db.insert_many("subscriber", [{"username": "c", "domain": "x"},
                                                {"username": "c", "domain": "x"}])
        assert await db.insert("subscriber", {"username": "alice", "domain": "b.example"}) == 3
        assert await db.count("subscriber") == 3

    async def test_update_and_replace(self, db):
        with pytest.raises(StorageError, match="duplicate key"):
            await db.update("subscriber", {"username": "alice"}, {"username": "bob"})
        with pytest.raises(StorageError, match="duplicate key"):   # both rows would clash
            await db.update("subscriber", {"username": "zed"}, {"domain": "a.example"})
        assert await db.update("subscriber", {"username": "alice", "password": "pw"},
                               {"username": "alice"}) == 1      # keeps its own key
        await db.replace("subscriber", {"username": "bob", "domain": "a.example",
                                        "password": "new"}, ["username", "domain"])
        assert [(r["id"], r["username"], r["password"]) for r in await db.select("subscriber")
                ] == [(1, "alice", "pw"), (2, "bob", "new")]

    async def test_kamdbctl_version_file_with_repeated_ids_still_loads(self, open_db, tmp_path):
        write(tmp_path / "kam" / "version",
              "id(int,auto) table_name(string) table_version(int) \n0:version:1\n0:acc:5\n")
        db = await open_db(tmp_path / "kam")
        assert await db.table_version("acc") == 5
        assert await db.insert("version", {"table_name": "x", "table_version": 1}) == 1


class TestQueries:
    @pytest.fixture
    async def db(self, people):
        for name, q, note in [("a", 0.1, None), ("b", 0.5, "x"), ("c", 1.0, "y"), ("d", 0.5, None)]:
            await people.insert("people", {"name": name, "q": q, "note": note})
        return people

    async def names(self, db, where=None, **kw):
        return [r["name"] for r in await db.select("people", ["name"], where, **kw)]

    async def test_conditions(self, db):
        assert await self.names(db, {"q": 0.5}) == ["b", "d"]
        assert await self.names(db, {"q": 0.5, "note": "x"}) == ["b"]
        assert await self.names(db, {"note": None}) == ["a", "d"]
        assert await self.names(db, {"note": Cond("is null")}) == ["a", "d"]
        assert await self.names(db, {"note": Cond("is not null")}) == ["b", "c"]
        assert await self.names(db, {"note": Cond("!=", "x")}) == ["c"]   # NULL != x is not true
        assert await self.names(db, {"q": Cond("<", 0.5)}) == ["a"]
        assert await self.names(db, {"q": Cond("<=", 0.5)}) == ["a", "b", "d"]
        assert await self.names(db, {"q": Cond(">", 0.5)}) == ["c"]
        assert await self.names(db, {"q": Cond(">=", 1)}) == ["c"]
        assert await self.names(db, {"name": Cond("in", ["a", "c", "z"])}) == ["a", "c"]
        assert await self.names(db, {"name": Cond("in", [])}) == []
        assert await self.names(db, {"note": Cond("<", None)}) == []
        with pytest.raises(LocalProtocolError):
            await db.select("people", where={"q": Cond("like", "a%")})
        with pytest.raises(StorageSchemaError, match="no column nope"):
            await db.count("people", {"nope": 1})

    async def test_order_and_limit(self, db):
        assert await self.names(db, order_by=["-q", "name"]) == ["c", "b", "d", "a"]
        assert await self.names(db, order_by=["note", "name"]) == ["a", "d", "b", "c"]  # nulls first
        assert await self.names(db, order_by=["-note"]) == ["c", "b", "a", "d"]         # nulls last
        assert await self.names(db, order_by=["name"], limit=2) == ["a", "b"]
        assert await self.names(db, {"q": 0.5}, limit=1) == ["b"]
        assert await self.names(db, limit=0) == []
        with pytest.raises(LocalProtocolError):
            await db.select("people", limit=-1)

    async def test_update_delete_count_replace(self, db):
        assert await db.update("people", {"note": "z"}, {"q": 0.5}) == 2
        assert await self.names(db, {"note": "z"}) == ["b", "d"]
        assert await db.update("people", {"q": 0.2}, {}) == 4
        with pytest.raises(LocalProtocolError):
            await db.update("people", {"q": 0.2}, None)
        with pytest.raises(StorageError, match="may not be null"):
            await db.update("people", {"q": None}, {})
        assert await db.delete("people", {"name": "a"}) == 1
        assert await db.count("people") == 3
        await db.replace("people", {"name": "b", "q": 0.9}, ["name"])
        await db.replace("people", {"name": "e", "q": 0.3}, ["name"])
        assert [(r["id"], r["name"], r["q"]) for r in await db.select("people", order_by=["id"])
                ] == [(2, "b", 0.9), (3, "c", 0.2), (4, "d", 0.2), (5, "e", 0.3)]
        with pytest.raises(LocalProtocolError):
            await db.replace("people", {"name": "x"}, ["q"])
        assert await db.delete("people") == 4


# ----------------------------------------------------------------------------- modes

class TestCachingMode:
    async def test_serves_memory_until_reload(self, people, tmp_path):
        path = tmp_path / "db" / "people"
        write(path, PEOPLE_HEADER + "7:outside:1.00:::\n")
        assert await people.count("people") == 0
        assert await people.reload("people") == ["people"]
        assert await self_names(people) == ["outside"]
        assert await people.insert("people", {"name": "next", "q": 1.0}) == 8

    async def test_dump_writes_only_modified_tables(self, open_db, tmp_path):
        write(tmp_path / "db" / "a", "x(int)\n1\n")
        write(tmp_path / "db" / "b", "x(int)\n2\n")
        db = await open_db(flush_interval=None)
        before = os.stat(tmp_path / "db" / "b").st_ino
        await db.insert("a", {"x": 3})
        assert await db.dump() == ["a"]
        assert await db.dump() == []
        assert (tmp_path / "db" / "a").read_text() == "x(int)\n1\n3\n"
        assert os.stat(tmp_path / "db" / "b").st_ino == before

    async def test_nothing_written_without_dump_when_flush_interval_is_none(self, people, tmp_path):
        await people.insert("people", {"name": "x", "q": 1.0})
        await asyncio.sleep(0.05)
        assert (tmp_path / "db" / "people").read_text() == PEOPLE_HEADER
        await people.close()
        assert (tmp_path / "db" / "people").read_text().endswith("1:x:1.00:::\n")

    async def test_background_flush(self, open_db, tmp_path):
        write(tmp_path / "db" / "people", PEOPLE_HEADER)
        db = await open_db(flush_interval=0.02)
        await db.insert("people", {"name": "x", "q": 1.0})
        assert (tmp_path / "db" / "people").read_text() == PEOPLE_HEADER
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "1:x" in (tmp_path / "db" / "people").read_text():
                break
        assert (tmp_path / "db" / "people").read_text() == PEOPLE_HEADER + "1:x:1.00:::\n"
        await db.close()

    async def test_flush_interval_zero_writes_before_returning(self, open_db, tmp_path):
        write(tmp_path / "db" / "people", PEOPLE_HEADER)
        db = await open_db(flush_interval=0)
        await db.insert("people", {"name": "x", "q": 1.0})
        assert (tmp_path / "db" / "people").read_text() == PEOPLE_HEADER + "1:x:1.00:::\n"

    async def test_reload_drops_unsaved_changes_and_finds_new_and_removed_files(
            self, people, tmp_path, caplog):
        await people.insert("people", {"name": "unsaved", "q": 1.0})
        write(tmp_path / "db" / "fresh", "x(int)\n1\n")
        with caplog.at_level(logging.WARNING, "siprouter.storage.dbtext"):
            assert await people.reload() == ["fresh", "people"]
        assert "unsaved changes dropped" in caplog.text
        assert await people.count("people") == 0
        assert await people.select("fresh") == [{"x": 1}]
        (tmp_path / "db" / "fresh").unlink()
        assert await people.reload() == ["people"]
        assert not people.has_table("fresh")


async def self_names(db, table="people"):
    return [r["name"] for r in await db.select(table, ["name"])]


class TestNonCachingMode:
    async def test_rereads_a_changed_file_and_writes_through(self, open_db, tmp_path):
        path = tmp_path / "db" / "people"
        write(path, PEOPLE_HEADER + "1:a:1.00:::\n")
        db = await open_db(db_mode=1)
        assert await self_names(db) == ["a"]
        # Same size, same second: os.replace gives a new inode, which is noticed.
        tmp = tmp_path / "db" / ".swap"
        write(tmp, PEOPLE_HEADER + "1:b:1.00:::\n")
        os.utime(tmp, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns))
        os.replace(tmp, path)
        assert await self_names(db) == ["b"]
        # In-place edit of another size (an editor, echo >>).
        with open(path, "a") as f:
            f.write("2:c:1.00:::\n")
        assert await self_names(db) == ["b", "c"]
        assert await db.insert("people", {"name": "d", "q": 0.5}) == 3
        assert path.read_text().endswith("2:c:1.00:::\n3:d:0.50:::\n")

    async def test_sees_tables_created_and_removed_by_others(self, open_db, tmp_path):
        db = await open_db(db_mode=1)
        assert not db.has_table("late")
        write(tmp_path / "db" / "late", "x(int)\n5\n")
        assert db.has_table("late")
        assert await db.select("late") == [{"x": 5}]
        (tmp_path / "db" / "late").unlink()
        with pytest.raises(StorageSchemaError, match="no table late"):
            await db.select("late")


# ----------------------------------------------------------------------------- bad files

class TestBadFiles:
    async def test_bad_rows_are_reported_with_file_and_line_and_kept(
            self, open_db, tmp_path, caplog):
        path = tmp_path / "db" / "people"
        write(path, PEOPLE_HEADER + "1:a:1.00:::\n2:b:lots:::\n3:c:1.00:::\n")
        with caplog.at_level(logging.ERROR, "siprouter.storage.dbtext"):
            db = await open_db(flush_interval=None)
        expected = f"{path}:3: expected column 'q' (double): a number (found 'lots')"
        assert expected in caplog.text
        assert db.load_problems == {"people": [expected]}
        assert await self_names(db) == ["a", "c"]
        await db.insert("people", {"name": "d", "q": 1.0})
        await db.dump()
        # The unreadable line is written back (after the rows), not deleted.
        assert path.read_text() == (PEOPLE_HEADER + "1:a:1.00:::\n3:c:1.00:::\n"
                                    "4:d:1.00:::\n2:b:lots:::\n")
        with pytest.raises(StorageSchemaError) as info:
            await db.reload("people")
        assert f"{path}:5: expected column 'q'" in str(info.value)
        assert await self_names(db) == ["a", "c", "d"]

    async def test_a_bad_header_makes_only_that_table_unusable(self, open_db, tmp_path, caplog):
        write(tmp_path / "db" / "broken", "id(int) name(varchar)\n1:x\n")
        write(tmp_path / "db" / "fine", "x(int)\n1\n")
        with caplog.at_level(logging.ERROR, "siprouter.storage.dbtext"):
            db = await open_db()
        assert db.has_table("broken")
        with pytest.raises(StorageSchemaError) as info:
            await db.select("broken")
        assert f"{tmp_path}/db/broken:1: expected column 'name': a type int" in str(info.value)
        assert str(info.value) in caplog.text or "broken:1:" in caplog.text
        assert await db.select("fine") == [{"x": 1}]
        write(tmp_path / "db" / "broken", "id(int) name(str)\n1:x\n")
        await db.reload("broken")
        assert await db.select("broken") == [{"id": 1, "name": "x"}]

    async def test_not_a_directory(self, tmp_path):
        write(tmp_path / "file", "x")
        db = open_storage(f"text://{tmp_path}/file")
        with pytest.raises(StorageError, match="db_text directory unusable"):
            await db.open()

    async def test_non_table_files_are_ignored(self, open_db, tmp_path):
        write(tmp_path / "db" / "README.txt", "not a table")
        write(tmp_path / "db" / ".hidden", "not a table")
        write(tmp_path / "db" / "t", "x(int)\n")
        db = await open_db()
        assert db.tables() == ["t"]


# ----------------------------------------------------------------------------- concurrency

class TestConcurrency:
    async def test_changes_made_during_a_reload_are_applied_after_it(self, open_db, tmp_path):
        rows = "".join(f"{i}:n{i}:1.00:::\n" for i in range(1, 20001))
        write(tmp_path / "db" / "people", PEOPLE_HEADER + rows)
        db = await open_db(flush_interval=None)
        await db.insert("people", {"name": "unsaved", "q": 1.0})   # dropped by the reload

        async def insert(i):
            await asyncio.sleep(0)
            return await db.insert("people", {"name": f"new{i}", "q": 0.5})

        reload_task = asyncio.create_task(db.reload("people"))
        await asyncio.sleep(0)   # the reload has started reading
        ids = await asyncio.gather(*(insert(i) for i in range(50)))
        await reload_task
        assert sorted(ids) == list(range(20001, 20051))
        assert await db.count("people") == 20050
        assert await db.count("people", {"name": "unsaved"}) == 0
        await db.dump()
        text = (tmp_path / "db" / "people").read_text()
        assert text.count("\n") == 20051 and "new49" in text

    async def test_reloads_dumps_and_writes_race_without_losing_writes(self, open_db, tmp_path):
        write(tmp_path / "db" / "people", PEOPLE_HEADER)
        db = await open_db(db_mode=1)

        async def writer(i):
            await db.insert("people", {"name": f"w{i}", "q": 1.0})

        async def reloader():
            for _ in range(5):
                await db.reload()
                await db.dump()

        await asyncio.gather(reloader(), *(writer(i) for i in range(40)), reloader())
        assert sorted(await self_names(db)) == sorted(f"w{i}" for i in range(40))
        fresh = await open_db(tmp_path / "db")
        assert await fresh.count("people") == 40

    async def test_large_table_io_leaves_the_event_loop_running(self, open_db, tmp_path):
        rows = "".join(f"{i}:name{i}:1.00:note\\:{i}:1700000000:\n" for i in range(1, 50001))
        write(tmp_path / "db" / "people", PEOPLE_HEADER + rows)
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            db = await open_db(flush_interval=None)
            ticks_during_open = ticks
            await db.update("people", {"q": 0.5}, {})
            ticks = 0
            await db.dump()
            ticks_during_dump = ticks
        finally:
            task.cancel()
        assert await db.count("people") == 50000
        assert ticks_during_open > 0 and ticks_during_dump > 0


    async def test_a_cancelled_write_cannot_land_after_a_newer_one(
            self, open_db, tmp_path, monkeypatch):
        write(tmp_path / "db" / "people", PEOPLE_HEADER)
        db = await open_db(flush_interval=None)
        await db.insert("people", {"name": "first", "q": 1.0})
        slow = threading.Event()

        def before_replace(tmp):   # the first write dawdles between fsync and rename
            if not slow.is_set():
                slow.set()
                time.sleep(0.3)

        monkeypatch.setattr(dbtext, "_before_replace", before_replace)
        first_dump = asyncio.create_task(db.dump())
        while not slow.is_set():
            await asyncio.sleep(0.005)
        first_dump.cancel()
        await db.insert("people", {"name": "second", "q": 1.0})
        assert await db.dump() == ["people"]
        with pytest.raises(asyncio.CancelledError):
            await first_dump
        await asyncio.sleep(0.4)   # long enough for a stray first write to land, if any
        assert (tmp_path / "db" / "people").read_text() == (
            PEOPLE_HEADER + "1:first:1.00:::\n2:second:1.00:::\n")


# ----------------------------------------------------------------------------- crash safety

CRASH_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {repo!r})
from siprouter.storage import dbtext
from siprouter.storage import dbtext
from siprouter.storage.dbtext import DbTextStorage

async def main():
    db = DbTextStorage("text://" + {directory!r}, flush_interval=None)
    await db.open()
    await db.insert("people", {{"name": "never written", "q": 1.0}})
    dbtext._before_replace = lambda tmp: os._exit(17)   # crash between write and rename
    await db.dump()

asyncio.run(main())
"""


class TestCrashSafety:
    async def test_a_crash_between_write_and_rename_leaves_the_old_file(self, open_db, tmp_path):
        directory = tmp_path / "db"
        old = PEOPLE_HEADER + "1:old:1.00:::\n"
        write(directory / "people", old)
        script = CRASH_SCRIPT.format(repo=str(REPO), directory=str(directory))
        done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
        assert done.returncode == 17, done.stderr.decode()
        assert (directory / "people").read_text() == old
        leftovers = [p.name for p in directory.iterdir() if p.name.startswith(".people.")]
        assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")
        assert "never written" in (directory / leftovers[0]).read_text()  # it was complete
        db = await open_db(directory)
        assert await self_names(db) == ["old"]
        assert [p.name for p in directory.iterdir()] == ["people"]   # stale temp file removed

    async def test_a_failed_write_is_undone_and_reported_once(self, tmp_path):
        directory = tmp_path / "db"
        write(directory / "people", PEOPLE_HEADER + "1:old:1.00:::\n")
        script = textwrap.dedent(f"""
            import asyncio, resource, signal, sys, logging
            sys.path.insert(0, {str(REPO)!r})
            logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(message)s")
            from siprouter.storage import StorageUnavailable
            from siprouter.storage.dbtext import DbTextStorage

            async def main():
                db = DbTextStorage("text://{directory}", db_mode=1)
                await db.open()
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (60, resource.RLIM_INFINITY))
                for _ in range(3):
                    try:
                        await db.insert("people", {{"name": "x" * 100, "q": 1.0}})
                    except StorageUnavailable as exc:
                        print("UNAVAILABLE", exc.table)
                print("ROWS", await db.count("people"))
                resource.setrlimit(resource.RLIMIT_FSIZE,
                                   (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                print("ID", await db.insert("people", {{"name": "y", "q": 1.0}}))

            asyncio.run(main())
        """)
        done = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True,
                              text=True)
        out = done.stdout.splitlines()
        assert out.count("UNAVAILABLE people") == 3, done.stdout + done.stderr
        assert "ROWS 1" in out and "ID 2" in out
        logged = [line for line in out if line.startswith("LOG ")]
        assert len(logged) == 2, logged   # the failure once, the recovery once
        assert "cannot write" in logged[0] and "works again" in logged[1]
        assert (directory / "people").read_text() == (
            PEOPLE_HEADER + "1:old:1.00:::\n2:y:1.00:::\n")


# ----------------------------------------------------------------------------- indexes

_NAMES = st.sampled_from(["a", "b", "c", None])
_QS = st.sampled_from([0.5, 1.0])
_OPS = st.lists(st.one_of(
    st.tuples(st.just("insert"), _NAMES, _QS),
    st.tuples(st.just("update_q"), _NAMES, _QS),
    st.tuples(st.just("update_note"), _QS, _NAMES),
    st.tuples(st.just("delete"), _NAMES, _QS),
    st.tuples(st.just("select"), _NAMES, _QS),
), max_size=40)


class TestIndexes:
    """Equality lookups use indexes kept up to date by every change; a plain scan over a
    list of dicts is the model they must agree with, in file order."""

    @settings(max_examples=60, deadline=None)
    @given(_OPS)
    def test_lookups_agree_with_a_scan(self, ops):
        asyncio.run(self._run(ops))

    async def _run(self, ops):
        with tempfile.TemporaryDirectory() as directory:
            write(Path(directory) / "t", "id(int,auto) note(str,null) q(double)\n")
            db = DbTextStorage(f"text://{directory}", flush_interval=None)
            await db.open()
            model: list[dict] = []
            next_id = 0
            for op, x, y in ops:
                if op == "insert":
                    next_id += 1
                    model.append({"id": next_id, "note": x, "q": y})
                    assert await db.insert("t", {"note": x, "q": y}) == next_id
                elif op == "update_q":     # where note = x (None: is null): set q
                    hit = [r for r in model if r["note"] == x]
                    for r in hit:
                        r["q"] = y
                    assert await db.update("t", {"q": y}, {"note": x}) == len(hit)
                elif op == "update_note":  # where q = x: set note (moves rows between buckets)
                    hit = [r for r in model if r["q"] == x]
                    for r in hit:
                        r["note"] = y
                    assert await db.update("t", {"note": y}, {"q": x}) == len(hit)
                elif op == "delete":
                    kept = [r for r in model if not (r["note"] == x and r["q"] == y)]
                    assert await db.delete("t", {"note": x, "q": y}) == len(model) - len(kept)
                    model = kept
                else:
                    assert await db.select("t", where={"note": x}) == [
                        r for r in model if r["note"] == x]
                    assert await db.select("t", where={"q": y, "note": x}) == [
                        r for r in model if r["q"] == y and r["note"] == x]
                    assert await db.count("t", {"q": y}) == sum(r["q"] == y for r in model)
            assert await db.select("t") == model
            await db.close()
