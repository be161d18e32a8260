# SPDX-License-Identifier: Apache-2.0
"""PostgreSQL backend, on asyncpg.

A pool of connections (``pool_size``, default 4); asyncpg prepares each statement once per
connection and keeps it, so a repeated call costs one round trip. Statements get their
parameters with exactly the Python type of their column (asyncpg refuses ``"5"`` for an
INTEGER), converted here from the column kinds read at ``open()``. ``REAL`` columns (float4,
Kamailio's ``q``) come back as the shortest decimal that float4 stores, so 0.9 stays 0.9.

``replace`` runs in a transaction that first takes a transaction-scoped advisory lock on
(table, keys' values), so two writers replacing the same new row cannot both insert it.

When the server goes away the pool's broken connections are expired at once; the next
probe (see ``siprouter.storage._sql``) connects afresh.

URL: ``postgresql://USER:PASS@HOST[:PORT]/DB``. Options: ``pool_size``, ``connect_timeout``,
``command_timeout``, ``retry_interval`` (seconds), ``ssl`` (asyncpg's ``sslmode`` values:
``disable``, ``prefer``, ``require``, ``verify-ca``, ``verify-full``), ``application_name``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import dialect as _pg_dialect

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

__all__ = ["PostgresStorage", "float4_value", "pg_kind"]

_PACK_F = struct.Struct("<f")


def float4_value(value: float) -> float:
    """The shortest decimal that reads back as the same float4: asyncpg widens 0.9f to
    0.8999999761581421; this gives 0.9 again."""
    for digits in (6, 7, 8, 9):
        candidate = float(f"{value:.{digits}g}")
        if _PACK_F.unpack(_PACK_F.pack(candidate))[0] == value:
            return candidate
    return value


_PG_KINDS = {
    "integer": "int", "smallint": "int", "bigint": "int",
    "real": "float4", "double precision": "float", "numeric": "float",
    "character varying": "str", "character": "str", "text": "str",
    "bytea": "bytes",
    "timestamp without time zone": "datetime", "timestamp with time zone": "datetime",
}


def pg_kind(data_type: str) -> str:
    """Value kind for an ``information_schema.columns.data_type``."""
    return _PG_KINDS.get(data_type, "any")


def _to_int(v: Any) -> Any:
    return v if type(v) is int else int(v)


def _to_float(v: Any) -> Any:
    return v if type(v) is float else float(v)


def _to_str(v: Any) -> Any:
    if type(v) is str:
        return v
    if isinstance(v, bytes):
        return v.decode()
    return str(v)


def _to_bytes(v: Any) -> Any:
    if type(v) is bytes:
        return v
    if isinstance(v, str):
        return v.encode()
    return bytes(v)


def _to_datetime(v: Any) -> Any:
    if type(v) is datetime.datetime:
        return v.replace(microsecond=0) if v.microsecond else v
    if isinstance(v, str):
        return datetime.datetime.fromisoformat(v)
    return v


_COERCE: dict[str, Callable[[Any], Any]] = {
    "int": _to_int, "float": _to_float, "float4": _to_float, "str": _to_str,
    "bytes": _to_bytes, "datetime": _to_datetime,
}


# A connection that raised one of these is not used again: its protocol state is unknown
# (seen when the server shuts down in the middle of a statement: asyncpg's
# InternalClientError "cannot switch to state ..., another operation is in progress").
# (Connections lost for other reasons are closed already; the pool drops them.)
_BROKEN = asyncpg.exceptions.InternalClientError


def _discard(con: Any) -> None:
    with contextlib.suppress(asyncpg.InterfaceError):  # already released by the pool
        con.terminate()


async def _keep_session(con: Any) -> None:
    """Pool reset hook: nothing to reset. asyncpg's default sends ``RESET ALL; CLOSE ALL;
    UNLISTEN *; SELECT pg_advisory_unlock_all()`` on every release — a round trip per call
    that tripled the cost of a select. We leave no session state behind: no SET, LISTEN or
    cursors, advisory locks are transaction-scoped, and asyncpg itself still rolls back a
    transaction left open."""


def _rows_affected(status: str) -> int:
    """asyncpg's command status ("UPDATE 3", "INSERT 0 1", "CREATE TABLE") -> rows."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class PostgresStorage(SqlStorage):
    """A PostgreSQL database; see the module docstring."""

    scheme = "postgresql"
    dialect = _pg_dialect()
    insert_uses_returning = True

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        masked = mask_url(url)
        self.pool_size = int_option(self.options, "pool_size", DEFAULT_POOL_SIZE, masked)
        self.ssl = self.options.pop("ssl", None) or self.options.pop("sslmode", None)
        self.application_name = self.options.pop("application_name", "siprouter")
        if self.options:
            raise StorageError(f"unknown option(s) {', '.join(sorted(self.options))}",
                               url=masked)
        self._pool: asyncpg.Pool | None = None

    async def _connect(self) -> None:
        u = self.sa_url
        kwargs: dict[str, Any] = {}
        if self.ssl:
            kwargs["ssl"] = self.ssl
        self._pool = await asyncio.wait_for(asyncpg.create_pool(
            host=u.host, port=u.port, user=u.username, password=u.password,
            database=u.database, min_size=1, max_size=self.pool_size,
            timeout=self.connect_timeout, command_timeout=self.command_timeout,
            server_settings={"application_name": str(self.application_name)},
            reset=_keep_session, **kwargs,
        ), self.connect_timeout * 2)

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self.connect_timeout)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    def _on_outage(self) -> None:
        if self._pool is not None:
            # Every pooled connection is likely broken; make the next acquire connect anew.
            self._keep(asyncio.get_running_loop().create_task(self._pool.expire_connections()))

    def _args(self, stmt: Any, values: list[Any]) -> list[Any]:
        if stmt.order is not None:
            consts = stmt.constants
            values = [values[i] if i >= 0 else consts[-1 - i] for i in stmt.order]
        out = []
        for v, kind in zip(values, stmt.param_kinds, strict=True):
            if v is not None:
                conv = _COERCE.get(kind)
                if conv is not None:
                    try:
                        v = conv(v)
                    except (TypeError, ValueError) as exc:
                        raise StorageSchemaError(
                            f"value {v!r} does not fit a {kind} column: {exc}",
                            url=self.url) from None
            out.append(v)
        return out

    def _read_converter(self, kind: str) -> Callable[[Any], Any] | None:
        return float4_value if kind == "float4" else None

    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StorageUnavailable("the database is closed", url=self.url)
        return self._pool

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        async with self._p().acquire() as con:
            try:
                return await con.fetch(sql, *args)
            except _BROKEN:
                _discard(con)
                raise

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        async with self._p().acquire() as con:
            try:
                return _rows_affected(await con.execute(sql, *args))
            except _BROKEN:
                _discard(con)
                raise

    async def _insert_returning_id(self, sql: str, args: Sequence[Any], auto_id: bool) -> int | None:
        async with self._p().acquire() as con:
            try:
                if auto_id:
                    return await con.fetchval(sql, *args)
                await con.execute(sql, *args)
                return None
            except _BROKEN:
                _discard(con)
                raise

    async def _execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        async with self._p().acquire() as con:
            try:
                async with con.transaction():
                    await con.executemany(sql, rows)
            except _BROKEN:
                _discard(con)
                raise

    async def _replace_rows(self, r: ReplaceCall) -> None:
        digest = hashlib.blake2b(repr((r.info.name, r.keys, r.key_values)).encode(),
                                 digest_size=8).digest()
        lock_key = int.from_bytes(digest, "big", signed=True)
        async with self._p().acquire() as con:
            try:
                async with con.transaction():
                    await con.execute("SELECT pg_advisory_xact_lock($1)", lock_key)
                    if _rows_affected(await con.execute(r.update, *r.update_args)):
                        return
                    await con.execute(r.insert, *r.insert_args)
            except _BROKEN:
                _discard(con)
                raise

    async def _reflect(self) -> dict[str, TableInfo]:
        rows = await self._p().fetch(
            "SELECT table_name, column_name, data_type, column_default, is_identity "
            "FROM information_schema.columns WHERE table_schema = current_schema() "
            "ORDER BY table_name, ordinal_position")
        columns: dict[str, list[tuple[str, str, bool]]] = {}
        for table, column, data_type, default, identity in rows:
            auto = column == "id" and (identity == "YES" or
                                       (default or "").startswith("nextval("))
            columns.setdefault(table, []).append((column, pg_kind(data_type), auto))
        return {
            t: TableInfo(t, tuple(c for c, _, _ in cols), {c: k for c, k, _ in cols},
                         any(a for _, _, a in cols))
            for t, cols in columns.items()
        }

    def _classify(self, exc: BaseException) -> type[StorageError] | None:
        if isinstance(exc, asyncpg.PostgresError):
            state = getattr(exc, "sqlstate", "") or ""
            # 08: connection exception; 57: operator intervention (shutdown, cancel);
            # 53: insufficient resources (too many connections, disk full).
            if state[:2] in ("08", "57", "53"):
                return StorageUnavailable
            if state in ("42P01", "42703") or state[:2] == "42":
                return StorageSchemaError
            return StorageError
        if isinstance(exc, asyncpg.exceptions.InternalClientError):
            return StorageUnavailable  # a connection in an unknown state (terminated)
        if isinstance(exc, asyncpg.InterfaceError):
            if isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError) or \
                    "closed" in str(exc) or "closing" in str(exc):
                return StorageUnavailable
            if isinstance(exc, asyncpg.exceptions.DataError):
                return StorageSchemaError
            return StorageError
        if isinstance(exc, OSError | TimeoutError | asyncio.IncompleteReadError | EOFError):
            return StorageUnavailable
        return None
