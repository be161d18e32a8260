# SPDX-License-Identifier: Apache-2.0
"""MySQL / MariaDB backend, on aiomysql.

A pool of connections (``pool_size``, default 4) in autocommit mode, ``utf8mb4``, with the
``CLIENT_FOUND_ROWS`` flag so that ``update`` returns the rows matched, as the other
backends do (MySQL otherwise counts only rows whose values changed). aiomysql has no
statement timeout of its own: each call runs under ``asyncio.timeout(command_timeout)``
and a connection interrupted that way is closed, never returned to the pool.

``replace`` is "update; if no row matched, insert unless a row with the keys exists; if
none was inserted, update again": each statement is atomic, so the loop settles even
when two writers race on the same keys.

URL: ``mysql://USER:PASS@HOST[:PORT]/DB`` (``mariadb://`` too). Options: ``pool_size``,
``connect_timeout``, ``command_timeout``, ``retry_interval`` (seconds), ``unix_socket``
(path; then HOST is ignored), ``charset`` (default utf8mb4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT
from sqlalchemy.dialects.mysql.aiomysql import dialect as _mysql_dialect

from siprouter.storage._sql import (
    DEFAULT_POOL_SIZE,
    ReplaceCall,
    SqlStorage,
    TableInfo,
    int_option,
)
from siprouter.storage.base import (
    StorageError,
    StorageSchemaError,
    StorageUnavailable,
    mask_url,
)

__all__ = ["MysqlStorage", "mysql_kind"]

# MySQL error numbers that mean "the server cannot be used right now".
_UNAVAILABLE_CODES = frozenset({
    1040,  # ER_CON_COUNT_ERROR: too many connections
    1053,  # ER_SERVER_SHUTDOWN
    1152, 1153, 1158, 1159, 1160, 1161,  # aborted connection, net read/write errors
    1205,  # ER_LOCK_WAIT_TIMEOUT
    1927,  # ER_CONNECTION_KILLED (MariaDB)
    2002, 2003, 2005, 2006, 2013, 2014, 2055,  # client: cannot connect, gone away, lost
})
# Unknown table / column / database, bad field, no such function.
_SCHEMA_CODES = frozenset({1044, 1049, 1054, 1146, 1305, 1109})

_MYSQL_KINDS = {
    "int": "int", "integer": "int", "smallint": "int", "bigint": "int", "tinyint": "int",
    "mediumint": "int",
    "float": "float", "double": "float", "decimal": "float", "real": "float",
    "varchar": "str", "char": "str", "text": "str", "tinytext": "str", "mediumtext": "str",
    "longtext": "str",
    "blob": "bytes", "tinyblob": "bytes", "mediumblob": "bytes", "longblob": "bytes",
    "binary": "bytes", "varbinary": "bytes",
    "datetime": "datetime", "timestamp": "datetime",
}


def mysql_kind(data_type: str) -> str:
    """Value kind for an ``information_schema.columns.data_type``."""
    return _MYSQL_KINDS.get(data_type.lower(), "any")


class MysqlStorage(SqlStorage):
    """A MySQL or MariaDB database; see the module docstring."""

    scheme = "mysql"
    dialect = _mysql_dialect()

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        masked = mask_url(url)
        self.pool_size = int_option(self.options, "pool_size", DEFAULT_POOL_SIZE, masked)
        self.unix_socket = self.options.pop("unix_socket", None)
        self.charset = str(self.options.pop("charset", "utf8mb4"))
        if self.options:
            raise StorageError(f"unknown option(s) {', '.join(sorted(self.options))}",
                               url=masked)
        self._pool: aiomysql.Pool | None = None

    async def _connect(self) -> None:
        u = self.sa_url
        kwargs: dict[str, Any] = {}
        if self.unix_socket:
            kwargs["unix_socket"] = self.unix_socket
        self._pool = await asyncio.wait_for(aiomysql.create_pool(
            minsize=1, maxsize=self.pool_size, host=u.host or "localhost",
            port=u.port or 3306, user=u.username, password=u.password or "", db=u.database,
            charset=self.charset, autocommit=True, client_flag=CLIENT.FOUND_ROWS,
            connect_timeout=self.connect_timeout, program_name="siprouter", **kwargs,
        ), self.connect_timeout * 2)

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            try:
                await asyncio.wait_for(pool.wait_closed(), self.connect_timeout)
            except (TimeoutError, OSError):
                pool.terminate()

    def _on_outage(self) -> None:
        if self._pool is not None:
            self._keep(asyncio.get_running_loop().create_task(self._pool.clear()))

    def _p(self) -> aiomysql.Pool:
        if self._pool is None:
            raise StorageUnavailable("the database is closed", url=self.url)
        return self._pool

    async def _run(self, work: Any) -> Any:
        """Run ``work(conn)`` on a pooled connection under the command timeout; a
        connection whose call was interrupted is closed, not reused."""
        pool = self._p()
        conn = await pool.acquire()
        try:
            async with asyncio.timeout(self.command_timeout):
                return await work(conn)
        except BaseException:
            conn.close()
            raise
        finally:
            pool.release(conn)

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        async def work(conn: Any) -> Any:
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
                return await cur.fetchall()

        return await self._run(work)

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        async def work(conn: Any) -> int:
            async with conn.cursor() as cur:
                return await cur.execute(sql, args or None)

        return await self._run(work)

    async def _insert_returning_id(self, sql: str, args: Sequence[Any], auto_id: bool) -> int | None:
        async def work(conn: Any) -> int | None:
            async with conn.cursor() as cur:
                await cur.execute(sql, args)
                return cur.lastrowid if auto_id else None

        return await self._run(work)

    async def _execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        async def work(conn: Any) -> None:
            await conn.begin()
            try:
                async with conn.cursor() as cur:
                    await cur.executemany(sql, rows)
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

        await self._run(work)

    async def _replace_rows(self, r: ReplaceCall) -> None:
        async def work(conn: Any) -> bool:
            async with conn.cursor() as cur:
                for _ in range(3):
                    if await cur.execute(r.update, r.update_args):
                        return True
                    if await cur.execute(r.insert_if_absent, r.insert_if_absent_args):
                        return True
            return False

        if not await self._run(work):
            raise StorageError("replace did not settle after 3 attempts", url=self.url,
                               table=r.info.name)

    async def _reflect(self) -> dict[str, TableInfo]:
        rows = await self._fetch(
            "SELECT table_name, column_name, data_type, extra "
            "FROM information_schema.columns WHERE table_schema = DATABASE() "
            "ORDER BY table_name, ordinal_position", ())
        columns: dict[str, list[tuple[str, str, bool]]] = {}
        for table, column, data_type, extra in rows:
            auto = column == "id" and "auto_increment" in (extra or "").lower()
            columns.setdefault(table, []).append((column, mysql_kind(data_type), auto))
        return {
            t: TableInfo(t, tuple(c for c, _, _ in cols), {c: k for c, k, _ in cols},
                         any(a for _, _, a in cols))
            for t, cols in columns.items()
        }

    def _classify(self, exc: BaseException) -> type[StorageError] | None:
        if isinstance(exc, pymysql.err.MySQLError):
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if code in _UNAVAILABLE_CODES or isinstance(exc, pymysql.err.InterfaceError):
                return StorageUnavailable
            if code in _SCHEMA_CODES:
                return StorageSchemaError
            if isinstance(exc, pymysql.err.OperationalError) and code == 0:
                return StorageUnavailable
            return StorageError
        if isinstance(exc, OSError | TimeoutError | asyncio.IncompleteReadError | EOFError):
            return StorageUnavailable
        if isinstance(exc, RuntimeError) and "closed" in str(exc).lower():
            return StorageUnavailable
        return None
