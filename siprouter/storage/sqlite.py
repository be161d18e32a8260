# SPDX-License-Identifier: Apache-2.0
"""SQLite backend (the embedded default), on aiosqlite.

One connection, whose own thread (aiosqlite's) runs every statement: the event loop never
waits on the file. Writes are serialized by an ``asyncio.Lock`` so a multi-statement write
(``insert_many``'s transaction) never has another coroutine's statement run inside it; reads
do not take it. The file is opened in WAL mode with ``synchronous=NORMAL`` (a committed write
survives a crash of this process; after a power failure the last transactions may be lost —
pass ``?synchronous=full`` to trade speed for that) and a busy timeout, so that another
process (``siprouter db``, Kamailio's own tools) may use the file at the same time.

Datetime columns are stored as Kamailio's db_sqlite stores them, as a Julian day number
(REAL), so Kamailio reads what siprouter writes; text values (the defaults in Kamailio's
``CREATE TABLE``, e.g. ``'2030-05-28 21:32:15'``) are read too. A naive datetime is local
time, converted like Kamailio converts its ``time_t``.

URL: ``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``sqlite:///:memory:``.
Options: ``busy_timeout`` (seconds, default 5), ``synchronous`` (``normal``/``full``/``off``),
``retry_interval``.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as _sqlite_dialect

from siprouter.storage._sql import ReplaceCall, SqlStorage, TableInfo, float_option
from siprouter.storage.base import (
    StorageError,
    StorageSchemaError,
    StorageUnavailable,
    mask_url,
)

__all__ = ["SqliteStorage", "to_julian_day", "from_sqlite_time", "sqlite_kind"]

# Unix epoch as a Julian day number, and seconds per day (Kamailio's db_sqlite uses these).
_EPOCH_JD = 2440587.5
_DAY = 86400.0
# Added before truncating a Julian day to whole seconds: Kamailio writes t - 0.5 s, we write
# t; both come back as t (a double near 2.46e6 days is exact to about 40 µs).
_JD_ROUND = 0.501

DEFAULT_BUSY_TIMEOUT = 5.0
_SYNCHRONOUS = ("off", "normal", "full", "extra")


def to_julian_day(value: datetime.datetime) -> float:
    """A naive local datetime as the Julian day number Kamailio's db_sqlite stores."""
    return math.floor(value.timestamp()) / _DAY + _EPOCH_JD


def from_sqlite_time(value: Any) -> Any:
    """A datetime column's stored value as a naive local datetime: a Julian day number
    (what Kamailio and we write) or ISO text (Kamailio's column defaults)."""
    if isinstance(value, float | int):
        return datetime.datetime.fromtimestamp(math.floor((value - _EPOCH_JD) * _DAY + _JD_ROUND))
    if isinstance(value, str):
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def sqlite_kind(decltype: str) -> str:
    """The value kind of a column from its declared type, scanned the way SQLite and
    Kamailio's db_sqlite scan it."""
    t = decltype.upper()
    if "INT" in t or "SERI" in t:
        return "int"
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return "str"
    if "BLOB" in t:
        return "bytes"
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return "float"
    if "DATE" in t or "TIME" in t:
        return "datetime"
    return "any"


class SqliteStorage(SqlStorage):
    """A SQLite database file; see the module docstring."""

    scheme = "sqlite"
    dialect = _sqlite_dialect()

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        masked = mask_url(url)
        self.busy_timeout = float_option(self.options, "busy_timeout", DEFAULT_BUSY_TIMEOUT,
                                          masked)
        self.synchronous = str(self.options.pop("synchronous", "normal")).lower()
        if self.synchronous not in _SYNCHRONOUS:
            raise StorageError(f"option synchronous={self.synchronous!r}: expected one of "
                               f"{', '.join(_SYNCHRONOUS)}", url=masked)
        self.options.pop("pool_size", None)  # one connection; accepted for symmetry
        if self.options:
            raise StorageError(f"unknown option(s) {', '.join(sorted(self.options))}",
                               url=masked)
        database = self.sa_url.database or ":memory:"
        self.path = database
        self._conn: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> None:
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable(f"cannot create the directory {parent}: {exc}",
                                         url=self.url) from exc
        pending = aiosqlite.connect(self.path, isolation_level=None, timeout=self.busy_timeout)
        # aiosqlite runs the connection in a thread of its own; a storage nobody closed
        # (a test, a crash path) must not keep the process from exiting.
        thread = getattr(pending, "_thread", None)
        if thread is not None:
            thread.daemon = True
        conn = await pending
        self._conn = conn
        if self.path != ":memory:":
            await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _write_value(self, value: Any) -> Any:
        if type(value) is datetime.datetime:
            return to_julian_day(value)
        return value

    def _read_converter(self, kind: str) -> Callable[[Any], Any] | None:
        return from_sqlite_time if kind == "datetime" else None

    def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageUnavailable("the database is closed", url=self.url)
        return self._conn

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        return await self._db().execute_fetchall(sql, args)  # type: ignore[return-value]

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        async with self._write_lock:
            return await self._execute_unlocked(sql, args)

    async def _execute_unlocked(self, sql: str, args: Sequence[Any]) -> int:
        cursor = await self._db().execute(sql, args)
        n = cursor.rowcount
        await cursor.close()
        return n

    async def _insert_returning_id(self, sql: str, args: Sequence[Any], auto_id: bool) -> int | None:
        async with self._write_lock:
            if not auto_id:
                await self._execute_unlocked(sql, args)
                return None
            row = await self._db().execute_insert(sql, args)
        return None if row is None else int(row[0])

    async def _execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        db = self._db()
        async with self._write_lock:
            await db.execute("BEGIN")
            try:
                await db.executemany(sql, rows)
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    async def _replace_rows(self, r: ReplaceCall) -> None:
        # Each statement is atomic and SQLite runs one writer at a time, so "update, else
        # insert if absent, else update again" is race-free without a transaction.
        async with self._write_lock:
            for _ in range(3):
                if await self._execute_unlocked(r.update, r.update_args):
                    return
                if await self._execute_unlocked(r.insert_if_absent, r.insert_if_absent_args):
                    return
        raise StorageError("replace did not settle after 3 attempts", url=self.url,
                           table=r.info.name)

    async def _reflect(self) -> dict[str, TableInfo]:
        rows = await self._db().execute_fetchall(
            "SELECT m.name, p.name, p.type, p.pk FROM sqlite_master AS m "
            "JOIN pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid")
        columns: dict[str, list[tuple[str, str, int]]] = {}
        for table, column, decltype, pk in rows:
            columns.setdefault(table, []).append((column, decltype or "", pk))
        out = {}
        for table, cols in columns.items():
            auto_id = any(c == "id" and pk == 1 and t.upper() == "INTEGER" for c, t, pk in cols)
            out[table] = TableInfo(table, tuple(c for c, _, _ in cols),
                                   {c: sqlite_kind(t) for c, t, _ in cols}, auto_id)
        return out

    def _classify(self, exc: BaseException) -> type[StorageError] | None:
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "no such table" in text or "no such column" in text or "has no column" in text:
                return StorageSchemaError
            if ("locked" in text or "unable to open" in text or "disk I/O" in text
                    or "readonly" in text or "busy" in text):
                return StorageUnavailable
            return StorageError
        if isinstance(exc, sqlite3.Error):
            return StorageError
        if isinstance(exc, OSError):
            return StorageUnavailable
        if isinstance(exc, ValueError) and "closed" in str(exc):
            return StorageUnavailable  # aiosqlite: "Connection closed"
        return None
