# SPDX-License-Identifier: Apache-2.0
"""The storage contract: every backend in ``conftest.CONTRACT_BACKENDS`` passes every test
here (the ``storage`` / ``backend`` fixtures run each test once per backend), on Kamailio's
own tables."""

from __future__ import annotations

import asyncio
import datetime

import pytest

from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import Cond, StorageError, StorageSchemaError, schema

T0 = datetime.datetime(2026, 3, 1, 12, 0, 0)
KAMAILIO_DEFAULT_EXPIRES = datetime.datetime(2030, 5, 28, 21, 32, 15)


def contact(n: int, **extra):
    """A location row as usrloc writes it."""
    row = {
        "ruid": f"uloc-{n}",
        "username": f"user{n % 5}",
        "domain": "example.com",
        "contact": f"sip:user{n}@192.0.2.{n % 250}:5060;transport=udp",
        "received": None,
        "path": None,
        "expires": T0 + datetime.timedelta(seconds=n),
        "q": 0.5,
        "callid": f"call-{n}@host",
        "cseq": n,
        "last_modified": T0,
        "flags": 0,
        "cflags": 0,
        "user_agent": "test UA/1.0",
        "socket": "udp:127.0.0.1:5060",
        "methods": 8191,
        "instance": None,
        "reg_id": 0,
        "server_id": 0,
        "connection_id": -1,
        "keepalive": 0,
        "partition": 0,
    }
    row.update(extra)
    return row


async def test_insert_returns_new_ids_and_select_reads_back_every_value(storage):
    first = await storage.insert("location", contact(1))
    second = await storage.insert("location", contact(2))
    assert isinstance(first, int) and isinstance(second, int)
    assert second != first
    rows = await storage.select("location", where={"id": first})
    assert len(rows) == 1
    row = rows[0]
    assert row == {"id": first, **contact(1)}
    assert list(row) == list(schema.table("location").columns.keys())


async def test_omitted_columns_take_kamailio_defaults(storage):
    new_id = await storage.insert("location", {"ruid": "r", "username": "alice",
                                               "contact": "sip:alice@192.0.2.1"})
    (row,) = await storage.select("location", where={"id": new_id})
    assert row["callid"] == "Default-Call-ID"
    assert row["cseq"] == 1
    assert row["q"] == 1.0
    assert row["expires"] == KAMAILIO_DEFAULT_EXPIRES
    assert row["domain"] is None and row["received"] is None and row["methods"] is None
    assert row["user_agent"] == ""


@pytest.mark.parametrize("text", [
    "plain",
    "",
    "colon:and\\backslash",
    "new\nline\r\ttab",
    "quote ' double \" percent %s %% semicolon ;",
    "Ünïcödé ☎ 電話",
])
async def test_strings_round_trip(storage, text):
    new_id = await storage.insert("subscriber", {"username": text, "domain": "d",
                                                 "ha1": "x" * 128})
    (row,) = await storage.select("subscriber", ["username", "ha1"], {"id": new_id})
    assert row == {"username": text, "ha1": "x" * 128}
    assert await storage.count("subscriber", {"username": text}) == 1


async def test_empty_string_and_null_are_different(storage):
    await storage.insert("location", contact(1, domain=""))
    await storage.insert("location", contact(2, domain=None))
    assert [r["ruid"] for r in await storage.select("location", ["ruid"], {"domain": ""})] == [
        "uloc-1"]
    assert [r["ruid"] for r in await storage.select("location", ["ruid"], {"domain": None})] == [
        "uloc-2"]
    assert [r["ruid"] for r in await storage.select(
        "location", ["ruid"], {"domain": Cond("is null")})] == ["uloc-2"]
    assert [r["ruid"] for r in await storage.select(
        "location", ["ruid"], {"domain": Cond("is not null")})] == ["uloc-1"]
    assert [r["ruid"] for r in await storage.select(
        "location", ["ruid"], {"domain": Cond("!=", None)})] == ["uloc-1"]


async def test_numbers_round_trip(storage):
    await storage.insert("location", contact(1, q=0.9, cseq=2**31 - 1, flags=-5,
                                             methods=None))
    (row,) = await storage.select("location", ["q", "cseq", "flags", "methods"])
    assert row == {"q": 0.9, "cseq": 2**31 - 1, "flags": -5, "methods": None}
    assert isinstance(row["q"], float) and isinstance(row["cseq"], int)


async def test_datetimes_are_kept_to_the_second(storage):
    precise = datetime.datetime(2027, 12, 31, 23, 59, 58, 765432)
    new_id = await storage.insert("location", contact(1, expires=precise))
    (row,) = await storage.select("location", ["expires"], {"id": new_id})
    assert row["expires"] == precise.replace(microsecond=0)
    assert type(row["expires"]) is datetime.datetime


@pytest.mark.parametrize(("op", "value", "expected"), [
    ("=", 3, [3]),
    ("!=", 3, [0, 1, 2, 4, 5]),
    ("<", 2, [0, 1]),
    ("<=", 2, [0, 1, 2]),
    (">", 3, [4, 5]),
    (">=", 3, [3, 4, 5]),
    ("in", [1, 4, 99], [1, 4]),
    ("in", [], []),
])
async def test_conditions_on_integers(storage, op, value, expected):
    await storage.insert_many("location", [contact(n) for n in range(6)])
    rows = await storage.select("location", ["cseq"], {"cseq": Cond(op, value)},
                                order_by=["cseq"])
    assert [r["cseq"] for r in rows] == expected
    assert await storage.count("location", {"cseq": Cond(op, value)}) == len(expected)


async def test_conditions_on_datetimes_and_strings_combine_with_and(storage):
    await storage.insert_many("location", [contact(n) for n in range(10)])
    now = T0 + datetime.timedelta(seconds=5)
    expired = await storage.select("location", ["cseq"],
                                   {"expires": Cond("<", now), "username": "user1"},
                                   order_by=["cseq"])
    assert [r["cseq"] for r in expired] == [1]
    live = await storage.select("location", ["cseq"], {"expires": Cond(">=", now)},
                                order_by=["cseq"])
    assert [r["cseq"] for r in live] == [5, 6, 7, 8, 9]
    assert await storage.count("location", {"username": Cond("in", ["user0", "user2"]),
                                            "cseq": Cond(">", 4)}) == 2


async def test_order_by_and_limit(storage):
    await storage.insert_many("location", [contact(n) for n in (3, 1, 4, 5, 9, 2, 6)])
    asc = await storage.select("location", ["cseq"], order_by=["cseq"])
    assert [r["cseq"] for r in asc] == [1, 2, 3, 4, 5, 6, 9]
    desc = await storage.select("location", ["cseq"], order_by=["-cseq"], limit=3)
    assert [r["cseq"] for r in desc] == [9, 6, 5]
    two_keys = await storage.select("location", ["username", "cseq"],
                                    order_by=["username", "-cseq"])
    assert [(r["username"], r["cseq"]) for r in two_keys] == [
        ("user0", 5), ("user1", 6), ("user1", 1), ("user2", 2), ("user3", 3),
        ("user4", 9), ("user4", 4)]
    assert await storage.select("location", ["cseq"], limit=0) == []


async def test_update_counts_matched_rows_even_when_values_do_not_change(storage):
    await storage.insert_many("location", [contact(n) for n in range(8)])
    assert await storage.update("location", {"flags": 7}, {"username": "user1"}) == 2
    assert await storage.update("location", {"flags": 7}, {"username": "user1"}) == 2
    assert await storage.update("location", {"flags": 1}, {"username": "nobody"}) == 0
    rows = await storage.select("location", ["cseq", "flags"], order_by=["cseq"])
    assert [(r["cseq"], r["flags"]) for r in rows] == [
        (0, 0), (1, 7), (2, 0), (3, 0), (4, 0), (5, 0), (6, 7), (7, 0)]


async def test_update_sets_null_and_datetimes(storage):
    new_id = await storage.insert("location", contact(1, received="sip:1.2.3.4:5"))
    later = T0 + datetime.timedelta(days=1)
    assert await storage.update("location", {"received": None, "expires": later},
                                {"id": new_id}) == 1
    (row,) = await storage.select("location", ["received", "expires"], {"id": new_id})
    assert row == {"received": None, "expires": later}


async def test_delete_counts_and_without_where_deletes_all(storage):
    await storage.insert_many("location", [contact(n) for n in range(6)])
    assert await storage.delete("location", {"cseq": Cond(">=", 4)}) == 2
    assert await storage.delete("location", {"cseq": Cond("in", [])}) == 0
    assert await storage.count("location") == 4
    assert await storage.delete("location") == 4
    assert await storage.count("location") == 0


async def test_replace_inserts_then_updates_by_keys(storage):
    await storage.replace("location", contact(1, cseq=10), ["ruid"])
    await storage.replace("location", contact(1, cseq=11, user_agent="new"), ["ruid"])
    rows = await storage.select("location", ["ruid", "cseq", "user_agent"])
    assert rows == [{"ruid": "uloc-1", "cseq": 11, "user_agent": "new"}]
    # composite keys (usrloc's username/domain/contact/callid shape)
    keys = ["username", "domain", "contact"]
    await storage.replace("location", contact(2, cseq=1, ruid="a"), keys)
    await storage.replace("location", contact(2, cseq=2, ruid="b"), keys)
    await storage.replace("location", contact(3, cseq=3, ruid="c"), keys)
    rows = await storage.select("location", ["ruid", "cseq"], order_by=["cseq"])
    assert rows == [{"ruid": "b", "cseq": 2}, {"ruid": "c", "cseq": 3},
                    {"ruid": "uloc-1", "cseq": 11}]


async def test_concurrent_replaces_of_one_key_leave_one_row(storage):
    await asyncio.gather(*(storage.replace("location", contact(7, cseq=n), ["ruid"])
                           for n in range(20)))
    rows = await storage.select("location", ["ruid", "cseq"])
    assert len(rows) == 1
    assert rows[0]["ruid"] == "uloc-7" and rows[0]["cseq"] in range(20)


async def test_concurrent_inserts_are_all_kept(storage):
    ids = await asyncio.gather(*(storage.insert("location", contact(n)) for n in range(30)))
    assert len(set(ids)) == 30
    assert await storage.count("location") == 30


async def test_insert_many(storage):
    await storage.insert_many("location", [])
    await storage.insert_many("location", [contact(n) for n in range(50)])
    assert await storage.count("location") == 50
    with pytest.raises(LocalProtocolError):
        await storage.insert_many("location", [contact(1), {"ruid": "only"}])


async def test_table_version_and_has_table(storage):
    assert storage.has_table("location")
    assert storage.has_table("version")
    assert not storage.has_table("no_such_table")
    for table, version in schema.KAMAILIO_TABLE_VERSIONS.items():
        assert await storage.table_version(table) == version, table
    assert await storage.table_version("no_such_table") is None


async def test_unknown_table_or_column_is_a_schema_error(storage):
    with pytest.raises(StorageSchemaError):
        await storage.select("no_such_table")
    with pytest.raises(StorageSchemaError):
        await storage.insert("no_such_table", {"a": 1})
    with pytest.raises(StorageSchemaError):
        await storage.select("location", ["no_such_column"])
    with pytest.raises(StorageSchemaError):
        await storage.select("location", where={"no_such_column": 1})
    with pytest.raises(StorageSchemaError):
        await storage.insert("location", {"no_such_column": 1})
    with pytest.raises(StorageSchemaError):
        await storage.update("location", {"no_such_column": 1}, {})
    assert issubclass(StorageSchemaError, StorageError)


async def test_api_misuse_is_a_local_protocol_error(storage):
    with pytest.raises(LocalProtocolError):
        await storage.select("location", where={"cseq": Cond("like", "x%")})
    with pytest.raises(LocalProtocolError):
        await storage.select("location", where={"cseq": Cond("in", 5)})


async def test_data_survives_close_and_reopen(backend, storage):
    await storage.insert_many("location", [contact(n) for n in range(3)])
    await storage.replace("subscriber", {"username": "alice", "domain": "example.com",
                                         "ha1": "abc"}, ["username", "domain"])
    await storage.close()
    again = backend.new_storage()
    await again.open()
    try:
        assert await again.count("location") == 3
        assert await again.select("subscriber", ["username", "ha1"]) == [
            {"username": "alice", "ha1": "abc"}]
    finally:
        await again.close()


async def test_repr_and_errors_mask_the_password(backend, storage):
    assert "***" in repr(storage) or "@" not in backend.url
    if "@" in backend.url:
        password = backend.url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password not in repr(storage)
        with pytest.raises(StorageError) as info:
            await storage.select("no_such_table")
        assert password not in str(info.value)
