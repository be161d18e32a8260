# SPDX-License-Identifier: Apache-2.0
"""Kamailio compatibility: a database created from the ``*-create.sql`` files Debian's
kamailio packages ship (what kamdbctl runs) is opened, read and written by siprouter;
``siprouter db migrate`` adopts it, adding only what is missing, without touching Kamailio's
rows; and the schema siprouter creates matches Kamailio's, column by column."""

from __future__ import annotations

import datetime
import math
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
from db_backends import _skip_loudly, unique_name

from siprouter.storage import Cond, open_storage, schema
from siprouter.storage.migrate import ALEMBIC_VERSION_TABLE, head_revision, migrate_database

KAMAILIO_SQL = Path("/usr/share/kamailio")
# backend -> (directory of the SQL files, Debian package that ships them)
SQL_DIRS = {
    "sqlite": ("db_sqlite", "kamailio-sqlite-modules"),
    "postgresql": ("postgres", "kamailio-postgres-modules"),
    "mysql": ("mysql", "kamailio-mysql-modules"),
}
# The kamdbctl schema files this test loads. "dialplan" and "htable" are left out on
# purpose: migrate must add exactly those tables. "presence" is not siprouter's: migrate must
# leave its tables alone.
LOADED = ("standard", "auth_db", "usrloc", "registrar", "dispatcher", "permissions", "acc",
          "dialog", "domain", "alias_db", "speeddial", "avpops", "group", "uri_db", "presence")
LEFT_OUT_TABLES = ("dialplan", "htable")

UNIX_2024 = 1717000000  # 2024-05-29T16:26:40Z


def kamailio_missing(backend: str) -> str:
    directory, package = SQL_DIRS[backend]
    return (f"!!! KAMAILIO'S {backend.upper()} SCHEMA FILES ARE MISSING "
            f"({KAMAILIO_SQL / directory}): the Kamailio compatibility test did NOT run on "
            f"{backend}. Install them with `apt-get install -y {package}` "
            f"(scripts/test.sh does this). !!!")


@dataclass
class KamailioDb:
    """A database built from Kamailio's SQL files. ``native(sql)`` runs SQL with the
    backend's own client, as Kamailio's tools do, returning rows as tuples of text."""

    backend: str
    url: str
    server: object | None
    path: Path | None = None
    database: str = ""

    def native(self, sql: str) -> list[tuple[str, ...]]:
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                rows = conn.execute(sql).fetchall()
            conn.close()
            return [tuple("" if v is None else str(v) for v in r) for r in rows]
        if self.backend == "postgresql":
            out = self.server.psql(sql, database=self.database)
        else:
            out = self.server.sql(sql, database=self.database)
        return [tuple(line.split("|" if self.backend == "postgresql" else "\t"))
                for line in out.splitlines() if line]


def _load(backend: str, files: list[Path], db: KamailioDb) -> None:
    for f in files:
        if backend == "sqlite":
            with sqlite3.connect(db.path) as conn:
                conn.executescript(f.read_text())
            conn.close()
        elif backend == "postgresql":
            db.server.psql(database=db.database, file=f)
        else:
            db.server.sql(database=db.database, file=f)


@pytest.fixture(params=sorted(SQL_DIRS))
def kamailio_db(request: pytest.FixtureRequest, tmp_path: Path) -> KamailioDb:
    backend = request.param
    directory = KAMAILIO_SQL / SQL_DIRS[backend][0]
    files = [directory / f"{name}-create.sql" for name in LOADED]
    if not all(f.exists() for f in files):
        _skip_loudly(kamailio_missing(backend))
    if backend == "sqlite":
        path = tmp_path / "kamailio.sqlite"
        db = KamailioDb(backend, f"sqlite:///{path}", None, path=path)
    else:
        server = request.getfixturevalue("pg_server" if backend == "postgresql"
                                         else "mariadb_server")
        name = unique_name("kam")
        db = KamailioDb(backend, server.create_database(name), server, database=name)
    _load(backend, files, db)
    # Rows as Kamailio writes them. On SQLite Kamailio stores datetimes as Julian days.
    expires = ((UNIX_2024 - 0.5) / 86400 + 2440587.5 if backend == "sqlite"
               else "'2024-05-29 16:26:40'")
    db.native("INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES "
              "('alice', 'example.com', 'secret', 'a1b2', 'c3d4')")
    db.native("INSERT INTO location (ruid, username, domain, contact, expires, q, callid, cseq, "
              "user_agent) VALUES ('uloc-1', 'alice', 'example.com', 'sip:alice@192.0.2.1', "
              f"{expires}, 0.5, 'call-1', 42, 'Kamailio UA')")
    db.native("INSERT INTO dispatcher (setid, destination, flags, priority, attrs, description) "
              "VALUES (1, 'sip:192.0.2.10:5060', 0, 10, 'weight=50', 'gw one')")
    return db


def _expected_expires(backend: str) -> datetime.datetime:
    if backend == "sqlite":  # a Julian day is UTC-based; siprouter speaks local time
        return datetime.datetime.fromtimestamp(UNIX_2024)
    return datetime.datetime(2024, 5, 29, 16, 26, 40)


async def test_siprouter_reads_and_writes_a_kamailio_database(kamailio_db):
    backend = kamailio_db.backend
    async with open_storage(kamailio_db.url) as db:
        # read what Kamailio wrote
        (sub,) = await db.select("subscriber", where={"username": "alice"})
        assert (sub["domain"], sub["password"], sub["ha1"], sub["ha1b"]) == (
            "example.com", "secret", "a1b2", "c3d4")
        (loc,) = await db.select("location", where={"ruid": "uloc-1"})
        assert loc["expires"] == _expected_expires(backend)
        assert loc["q"] == 0.5 and loc["cseq"] == 42 and loc["callid"] == "call-1"
        assert loc["last_modified"] == datetime.datetime(2000, 1, 1, 0, 0, 1)  # DDL default
        (gw,) = await db.select("dispatcher", ["destination", "attrs", "priority"])
        assert gw == {"destination": "sip:192.0.2.10:5060", "attrs": "weight=50", "priority": 10}
        # the version rows kamdbctl wrote
        for table, version in schema.KAMAILIO_TABLE_VERSIONS.items():
            if table not in LEFT_OUT_TABLES:
                assert await db.table_version(table) == version, table
        assert not db.has_table("dialplan")
        # write
        new_id = await db.insert("location", {
            "ruid": "uloc-2", "username": "bob", "domain": "example.com",
            "contact": "sip:bob@192.0.2.2", "expires": datetime.datetime(2031, 1, 2, 3, 4, 5),
            "q": 1.0, "callid": "call-2", "cseq": 1})
        assert isinstance(new_id, int)
        assert await db.update("subscriber", {"ha1": "new"}, {"username": "alice"}) == 1
        assert await db.count("location", {"expires": Cond(">", datetime.datetime(2030, 1, 1))}
                              ) == 1
    # ... and Kamailio's client sees it
    assert kamailio_db.native("SELECT ha1 FROM subscriber WHERE username = 'alice'") == [("new",)]
    (row,) = kamailio_db.native("SELECT username, callid FROM location WHERE ruid = 'uloc-2'")
    assert row == ("bob", "call-2")
    if backend == "sqlite":
        # stored as Kamailio stores it: a Julian day that db_sqlite turns into this time_t
        ((jd,),) = kamailio_db.native("SELECT expires FROM location WHERE ruid = 'uloc-2'")
        unix = int(86400.0 * (float(jd) - 2440587.5) + 0.5)  # db_sqlite's sqlite_to_timet
        assert unix == int(datetime.datetime(2031, 1, 2, 3, 4, 5).timestamp())


async def test_migrate_adopts_a_kamailio_database_without_touching_its_data(kamailio_db):
    async with open_storage(kamailio_db.url) as db:
        tables = [t for t in schema.METADATA.tables if db.has_table(t)]
        before = {t: await db.select(t, order_by=["id"]) for t in tables}
    presence_before = kamailio_db.native("SELECT COUNT(*) FROM presentity")

    report = await migrate_database(kamailio_db.url)

    assert report.stamped
    assert report.revision_before is None and report.revision_after == head_revision()
    assert sorted(report.tables_created) == sorted(LEFT_OUT_TABLES)
    assert sorted(report.version_rows_added) == sorted(LEFT_OUT_TABLES)
    assert report.version_mismatches == {}
    async with open_storage(kamailio_db.url) as db:
        for t in tables:
            after = await db.select(t, order_by=["id"])
            if t == schema.VERSION_TABLE:  # Kamailio's rows kept, one added per new table
                added = [r for r in after if r not in before[t]]
                assert sorted(r["table_name"] for r in added) == sorted(LEFT_OUT_TABLES)
                after = [r for r in after if r not in added]
            assert after == before[t], t
        for table, version in schema.KAMAILIO_TABLE_VERSIONS.items():
            assert await db.table_version(table) == version, table
        assert db.has_table("dialplan") and db.has_table(ALEMBIC_VERSION_TABLE)
        assert db.has_table("presentity")  # not siprouter's: left alone
    assert kamailio_db.native("SELECT COUNT(*) FROM presentity") == presence_before
    # exactly one version row per table
    counts = kamailio_db.native(
        "SELECT table_name, COUNT(*) FROM version GROUP BY table_name HAVING COUNT(*) > 1")
    assert counts == []

    again = await migrate_database(kamailio_db.url)
    assert again.revision_before == again.revision_after == head_revision()
    assert again.tables_created == [] and again.version_rows_added == []


async def test_migrate_reports_but_keeps_a_different_table_version(kamailio_db):
    kamailio_db.native("UPDATE version SET table_version = 8 WHERE table_name = 'location'")
    report = await migrate_database(kamailio_db.url)
    assert report.version_mismatches == {"location": (8, 9)}
    assert any("location has version 8" in line for line in report.lines())
    assert kamailio_db.native(
        "SELECT table_version FROM version WHERE table_name = 'location'") == [("8",)]


# -------------------------------------------------------------------------------------------
# The schema siprouter creates is Kamailio's, column by column.


def _sqlite_columns(path: Path) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            out[t] = [(name, notnull, _norm_default(default), pk)
                      for _cid, name, _type, notnull, default, pk in
                      conn.execute(f"PRAGMA table_info({t})")]
    conn.close()
    return out


def _modules() -> list[str]:
    """Kamailio schema files of siprouter's tables, "standard" (the version table) first."""
    names = {t.info["kamailio_module"] for t in schema.METADATA.tables.values()}
    return ["standard"] + sorted(names - {"standard"})


def _norm_default(default):
    if default is None or default == "NULL":
        return None
    text = str(default).strip("()'")
    try:
        number = float(text)
    except ValueError:
        return text
    return number if not math.isnan(number) else text


def test_siprouter_schema_matches_kamailio_sqlite_files(tmp_path):
    directory = KAMAILIO_SQL / SQL_DIRS["sqlite"][0]
    if not directory.is_dir():
        _skip_loudly(kamailio_missing("sqlite"))
    kamailio = tmp_path / "kamailio.sqlite"
    with sqlite3.connect(kamailio) as conn:
        for name in _modules():
            conn.executescript((directory / f"{name}-create.sql").read_text())
    conn.close()
    ours = tmp_path / "siprouter.sqlite"
    with sqlite3.connect(ours) as conn:
        from siprouter.storage.migrate import ddl_for_missing_tables
        from siprouter.storage.sqlite import SqliteStorage

        for sql in ddl_for_missing_tables(SqliteStorage.dialect, list(schema.METADATA.tables)):
            conn.execute(sql)
    conn.close()
    theirs_cols, ours_cols = _sqlite_columns(kamailio), _sqlite_columns(ours)
    for table in schema.METADATA.tables:
        assert ours_cols[table] == theirs_cols[table], table


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
async def test_siprouter_schema_matches_kamailio_server_files(backend, request):
    """Column names, types, NULL-ability and defaults as the server reports them, for a
    database made by ``siprouter db migrate`` and one made from Kamailio's files."""
    directory = KAMAILIO_SQL / SQL_DIRS[backend][0]
    if not directory.is_dir():
        _skip_loudly(kamailio_missing(backend))
    server = request.getfixturevalue("pg_server" if backend == "postgresql"
                                     else "mariadb_server")
    theirs, ours = unique_name("kam"), unique_name("sip")
    server.create_database(theirs)
    ours_url = server.create_database(ours)
    for name in _modules():
        f = directory / f"{name}-create.sql"
        if backend == "postgresql":
            server.psql(database=theirs, file=f)
        else:
            server.sql(database=theirs, file=f)
    await migrate_database(ours_url)

    def columns(database: str) -> set[str]:
        if backend == "postgresql":
            q = ("SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || "
                 "is_nullable || ' ' || COALESCE(character_maximum_length::text, '') || ' ' || "
                 "COALESCE(column_default, '') FROM information_schema.columns "
                 "WHERE table_schema = 'public'")
            out = server.psql(q, database=database)
        else:
            q = ("SELECT CONCAT(table_name, '.', column_name, ' ', column_type, ' ', "
                 "is_nullable, ' ', COALESCE(column_default, ''), ' ', extra) "
                 f"FROM information_schema.columns WHERE table_schema = '{database}'")
            out = server.sql(q)
        # our own revision table is not Kamailio's
        return {line for line in out.splitlines() if not line.startswith(ALEMBIC_VERSION_TABLE)}

    def normalise(lines: set[str]) -> set[str]:
        # MySQL shows display widths (int(10)) only when given; both mean the same type.
        # Kamailio writes DEFAULT NULL on some nullable columns, which PostgreSQL shows as
        # NULL::<type>; a nullable column without a default is the same thing.
        return {re.sub(r" NULL::[a-z ]+$", " ", line)
                .replace("int(11)", "int").replace("int(10) unsigned", "int unsigned")
                .replace("smallint(5) unsigned", "smallint unsigned")
                .replace("int(10)", "int") for line in lines}

    assert normalise(columns(ours)) == normalise(columns(theirs))
