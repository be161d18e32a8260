# SPDX-License-Identifier: Apache-2.0
"""What the SQL backends share: statements built with SQLAlchemy Core and cached as SQL text,
the tables' columns read from the database, value conversion, and outage handling.

How this works
--------------
*Why the drivers directly, not SQLAlchemy's async engine.* Each backend runs its cached SQL
text straight on its asyncio driver (asyncpg, aiomysql, aiosqlite). SQLAlchemy Core still
builds every statement (quoting, parameter style, dialect quirks such as MySQL's ``FROM
DUAL``), defines the schema and drives Alembic; only execution bypasses its engine. The
engine's asyncio layer runs every call through a greenlet and, on aiosqlite, costs several
trips to the database thread per statement (cursor, execute, fetch, close), where the
driver's own calls need one; and owning the driver call lets us tell "database gone"
(``StorageUnavailable``, logged once per outage) from "bad table or column"
(``StorageSchemaError``) precisely and fail fast during an outage. Measured figures are in
``bench/storage_rates.py``'s output (see the closing note of issue 4).

*Statements.* A call's shape (operation, table, columns, condition operators, number of
``in`` values, order, limit) is the key of a per-storage cache of ``_Statement`` (SQL text,
order of parameters, result columns). The values travel separately, as driver parameters:
nothing a caller passes is ever put into SQL text. Column names are checked against the
columns read from the database at ``open()``, so an unknown column is a
``StorageSchemaError`` before any SQL is sent.

*Values.* ``datetime`` values are stored to the second (Kamailio's resolution; MySQL
``DATETIME`` and SQLite's Julian day numbers keep no more). Backends convert what their
driver does not: SQLite's datetime columns (``_to_julian`` / ``_from_sqlite_time``),
PostgreSQL's exact parameter types, PostgreSQL ``REAL`` read back at float4 precision.

*Outages.* A driver error that means "cannot reach the database" marks the storage
unavailable and is logged once at ERROR with the reason; every call then raises
``StorageUnavailable`` at once, without I/O, except one probe every ``retry_interval``
seconds that tries the database again. The first call that succeeds logs, once, that the
database is back and how many calls failed meanwhile. Connection pools drop broken
connections by themselves (asyncpg, aiomysql), so no restart is needed. A write that fails
is not retried: the caller gets ``StorageUnavailable`` and decides.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.engine.interfaces import Dialect

from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import schema
from siprouter.storage.base import (
    Cond,
    Row,
    Storage,
    StorageError,
    StorageSchemaError,
    StorageUnavailable,
    Where,
    check_identifier,
    check_where,
    mask_url,
)

__all__ = ["SqlStorage", "TableInfo", "parse_url", "DEFAULT_RETRY_INTERVAL",
           "DEFAULT_CONNECT_TIMEOUT", "DEFAULT_POOL_SIZE"]

log = logging.getLogger("siprouter.storage")

# While the database is unreachable, one call in this many seconds tries it again; the
# others fail at once (no pile-up of calls waiting for connect timeouts).
DEFAULT_RETRY_INTERVAL = 1.0
# How long opening a connection may take (a remote host that drops packets would otherwise
# hold a call for the OS's TCP timeout, minutes).
DEFAULT_CONNECT_TIMEOUT = 5.0
# How long one statement may take before the call fails with StorageUnavailable.
DEFAULT_COMMAND_TIMEOUT = 10.0
# Connections per PostgreSQL/MySQL storage. One event loop rarely needs more than a few
# statements in flight; the server handles the rest.
DEFAULT_POOL_SIZE = 4
# Statement shapes cached per storage; beyond this the cache is cleared (a caller building
# ever-new shapes, e.g. "in" lists of every length, must not grow memory without bound).
STATEMENT_CACHE_SIZE = 1024

_P = "p"  # prefix of our bind parameter names: p0, p1, ...


class TableInfo(NamedTuple):
    """A table as read from the database: its columns in order, each column's value kind
    (``int``, ``float``, ``float4``, ``str``, ``bytes``, ``datetime`` or ``any``), and
    whether ``id`` is filled in by the database."""

    name: str
    columns: tuple[str, ...]
    kinds: dict[str, str]
    auto_id: bool


class _Statement(NamedTuple):
    sql: str
    # For each driver parameter, in order: the index into the call's values, or -1-k for
    # the k-th constant SQLAlchemy bound itself (e.g. SQLite's "OFFSET ?" after LIMIT).
    order: tuple[int, ...] | None  # None: values go in as they are
    constants: tuple[Any, ...]
    columns: tuple[str, ...]  # result columns (select) or target columns (insert)
    # Result converters: (position, function) for columns that need one.
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    # The value kind of each driver parameter (its column's), for strict drivers.
    param_kinds: tuple[str, ...]


class ReplaceCall(NamedTuple):
    """The statements of one ``replace`` call, with their driver parameters."""

    info: TableInfo
    keys: tuple[str, ...]
    key_values: list[Any]
    update: str
    update_args: list[Any]
    insert: str
    insert_args: list[Any]
    insert_if_absent: str  # INSERT ... SELECT ... WHERE NOT EXISTS (the keys' row)
    insert_if_absent_args: list[Any]


def parse_url(url: str, options: Mapping[str, Any]) -> tuple[URL, dict[str, Any]]:
    """Parse ``url``; return it without its query and the options: the URL's query
    parameters overridden by ``options``. Raises ``StorageError`` for a malformed URL."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy.exc.ArgumentError, ValueError
        raise StorageError(f"malformed database URL: {exc}", url=mask_url(url)) from None
    merged: dict[str, Any] = dict(parsed.query)
    merged.update(options)
    return parsed.set(query={}), merged


def float_option(opts: dict[str, Any], name: str, default: float, url: str) -> float:
    value = opts.pop(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise StorageError(f"option {name}={value!r}: expected a number greater than 0", url=url)
    return number


def int_option(opts: dict[str, Any], name: str, default: int, url: str) -> int:
    value = opts.pop(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise StorageError(f"option {name}={value!r}: expected a whole number greater than 0",
                           url=url)
    return number


def _shape_columns(shape: tuple) -> tuple[str, ...]:
    """The column of each bind parameter a where shape adds, in order."""
    out: list[str] = []
    for column, _op, count in shape:
        out.extend([column] * count)
    return tuple(out)


def _whole_seconds(value: datetime.datetime) -> datetime.datetime:
    return value.replace(microsecond=0) if value.microsecond else value


class SqlStorage(Storage):
    """The SQL backends' common part. A subclass sets ``scheme`` and ``dialect`` and
    implements the driver calls (``_connect``, ``_disconnect``, ``_fetch``, ``_execute``,
    ``_insert_returning_id``, ``_execute_many``, ``_replace_rows``, ``_reflect``) and
    ``_classify`` (which driver errors mean what)."""

    dialect: Dialect
    # Does the driver need every parameter of exactly its column's Python type?
    strict_parameter_types = False

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url)
        self.sa_url, self.options = parse_url(url, options)
        masked = mask_url(url)
        self.retry_interval = float_option(self.options, "retry_interval",
                                            DEFAULT_RETRY_INTERVAL, masked)
        self.connect_timeout = float_option(self.options, "connect_timeout",
                                             DEFAULT_CONNECT_TIMEOUT, masked)
        self.command_timeout = float_option(self.options, "command_timeout",
                                             DEFAULT_COMMAND_TIMEOUT, masked)
        self._tables: dict[str, TableInfo] = {}
        self._statements: dict[tuple, _Statement] = {}
        self._opened = False
        # Outage state: see the module docstring.
        self._up = True
        self._down_since = 0.0
        self._next_probe = 0.0
        self._failed_calls = 0
        self._background: set[asyncio.Task] = set()

    def _keep(self, task: asyncio.Task) -> None:
        """Hold a reference to a fire-and-forget task until it is done."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------------------------
    # What subclasses implement.

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _fetch(self, sql: str, args: Sequence[Any]) -> list[Sequence[Any]]:
        raise NotImplementedError

    async def _execute(self, sql: str, args: Sequence[Any]) -> int:
        """Run a statement; return the number of rows it matched."""
        raise NotImplementedError

    async def _insert_returning_id(self, sql: str, args: Sequence[Any], auto_id: bool) -> int | None:
        raise NotImplementedError

    async def _execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        raise NotImplementedError

    async def _replace_rows(self, r: ReplaceCall) -> None:
        """Run ``r.update``; when it matched no row, insert the row (atomically with
        respect to other writers of the same keys)."""
        raise NotImplementedError

    async def _reflect(self) -> dict[str, TableInfo]:
        raise NotImplementedError

    def _classify(self, exc: BaseException) -> type[StorageError] | None:
        """``StorageUnavailable``, ``StorageSchemaError`` or ``StorageError`` for a driver
        error; None when ``exc`` is not a database error at all (a bug: re-raised as is)."""
        raise NotImplementedError

    def _write_value(self, value: Any) -> Any:
        """A value as the driver takes it (datetime conversion)."""
        if type(value) is datetime.datetime:
            return _whole_seconds(value)
        return value

    def _read_converter(self, kind: str) -> Callable[[Any], Any] | None:
        return None

    # ------------------------------------------------------------------------------------
    # Opening and closing.

    async def open(self) -> None:
        if self._opened:
            return
        try:
            await self._connect()
            tables = await self._reflect()
        except Exception as exc:
            await self._quiet_disconnect()
            raise self._error(exc, None, opening=True) from exc
        self._tables = tables
        self._opened = True
        self._up = True
        log.debug("storage opened: %s (%d tables)", mask_url(self.url), len(tables))

    async def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        self._statements.clear()
        await self._quiet_disconnect()

    async def _quiet_disconnect(self) -> None:
        try:
            await self._disconnect()
        except Exception as exc:  # closing a connection to a dead server
            log.debug("storage: error while disconnecting from %s: %s",
                      mask_url(self.url), exc)

    def has_table(self, table: str) -> bool:
        return table in self._tables

    def table_info(self, table: str) -> TableInfo:
        """Columns of ``table`` as read at ``open()``; ``StorageSchemaError`` when there is
        no such table."""
        info = self._tables.get(table)
        if info is None:
            if not self._opened:
                raise LocalProtocolError(f"storage {mask_url(self.url)} used before open()")
            raise StorageSchemaError(
                "no such table (run `siprouter db migrate` to create siprouter's tables)",
                url=self.url, table=table)
        return info

    async def refresh_tables(self) -> None:
        """Read the tables and columns from the database again (after DDL run elsewhere)."""
        try:
            self._tables = await self._reflect()
        except Exception as exc:
            raise self._error(exc, None) from exc
        self._statements.clear()

    # ------------------------------------------------------------------------------------
    # Errors and outages.

    def _error(self, exc: BaseException, table: str | None, opening: bool = False) -> BaseException:
        """The StorageError to raise for driver error ``exc`` (or ``exc`` itself when it is
        ours or a bug); enters the outage state for connection errors."""
        if isinstance(exc, StorageError | LocalProtocolError):
            return exc
        kind = self._classify(exc)
        if kind is None:
            return exc
        text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if kind is StorageUnavailable:
            if opening:
                return StorageUnavailable(f"cannot connect to the database: {text}", url=self.url)
            self._enter_outage(text)
            return StorageUnavailable(f"database unavailable: {text}", url=self.url, table=table)
        return kind(text, url=self.url, table=table)

    def _enter_outage(self, reason: str) -> None:
        now = time.monotonic()
        self._next_probe = now + self.retry_interval
        self._failed_calls += 1
        if self._up:
            self._up = False
            self._down_since = now
            self._failed_calls = 1
            log.error(
                "database %s unavailable: %s; calls fail with StorageUnavailable until it "
                "is back (tried again every %gs)",
                mask_url(self.url), reason, self.retry_interval,
            )
            self._on_outage()

    def _on_outage(self) -> None:
        """Hook: drop pooled connections (they are likely all broken)."""

    def _gate(self, table: str | None) -> None:
        """Called before I/O while the database is down: raise at once unless it is time
        for a probe."""
        if not self._opened:
            raise LocalProtocolError(f"storage {mask_url(self.url)} used before open()")
        now = time.monotonic()
        if now < self._next_probe:
            self._failed_calls += 1
            raise StorageUnavailable("database unavailable (waiting to retry)",
                                     url=self.url, table=table)
        self._next_probe = now + self.retry_interval  # this call is the probe

    def _back_up(self) -> None:
        down_for = time.monotonic() - self._down_since
        log.warning("database %s is reachable again after %.1fs; %d calls failed meanwhile",
                    mask_url(self.url), down_for, self._failed_calls)
        self._up = True
        self._failed_calls = 0

    @property
    def available(self) -> bool:
        """False while the storage is in an outage (see the module docstring)."""
        return self._up

    # ------------------------------------------------------------------------------------
    # Statement building.

    def _where_shape(self, info: TableInfo, where: Where | None,
                     args: list[Any]) -> tuple:
        """The shape of ``where`` for the statement cache; appends the values to ``args``."""
        if not where:
            return ()
        check_where(where)
        kinds = info.kinds
        shape = []
        for column, value in where.items():
            if column not in kinds:
                raise self._unknown_column(info, column)
            if type(value) is Cond:
                op = value.op
                if op == "in":
                    values = list(value.value)
                    shape.append((column, "in", len(values)))
                    args.extend(values)
                    continue
                if op in ("is null", "is not null"):
                    shape.append((column, op, 0))
                    continue
                if value.value is None:
                    if op not in ("=", "!="):
                        raise LocalProtocolError(
                            f"storage: Cond({op!r}, None) for column {column!r}: NULL "
                            "compares only with = or != (is null / is not null)")
                    shape.append((column, "is null" if op == "=" else "is not null", 0))
                    continue
                shape.append((column, op, 1))
                args.append(value.value)
            elif value is None:
                shape.append((column, "is null", 0))
            else:
                shape.append((column, "=", 1))
                args.append(value)
        return tuple(shape)

    def _unknown_column(self, info: TableInfo, column: str) -> StorageSchemaError:
        check_identifier(column)
        return StorageSchemaError(f"no such column {column!r}", url=self.url, table=info.name)

    @staticmethod
    def _where_clause(shape: tuple, first: int) -> tuple[list[Any], int]:
        clauses: list[Any] = []
        n = first
        for column, op, count in shape:
            c = sa.column(column)
            if op == "in":
                if count == 0:
                    clauses.append(sa.false())
                else:
                    clauses.append(c.in_([sa.bindparam(f"{_P}{n + i}") for i in range(count)]))
                n += count
            elif op == "is null":
                clauses.append(c.is_(None))
            elif op == "is not null":
                clauses.append(c.is_not(None))
            else:
                p = sa.bindparam(f"{_P}{n}")
                n += 1
                clauses.append({"=": c == p, "!=": c != p, "<": c < p, "<=": c <= p,
                                ">": c > p, ">=": c >= p}[op])
        return clauses, n

    def _finish(self, stmt: Any, columns: tuple[str, ...], info: TableInfo | None,
                result_kinds: bool, param_columns: Sequence[str] = ()) -> _Statement:
        """Compile ``stmt``; ``param_columns[i]`` is the column bind parameter ``p<i>``
        is compared with or assigned to."""
        compiled = stmt.compile(dialect=self.dialect)
        names = compiled.positiontup or []
        order: list[int] = []
        constants: list[Any] = []
        for name in names:
            if name.startswith(_P) and name[len(_P):].isdigit():
                order.append(int(name[len(_P):]))
            else:
                constants.append(compiled.params[name])
                order.append(-len(constants))
        converters: list[tuple[int, Callable[[Any], Any]]] = []
        if result_kinds and info is not None:
            for i, column in enumerate(columns):
                conv = self._read_converter(info.kinds.get(column, "any"))
                if conv is not None:
                    converters.append((i, conv))
        identity = order == list(range(len(order)))
        kinds = info.kinds if info is not None else {}
        param_kinds = tuple(
            kinds.get(param_columns[i], "any") if 0 <= i < len(param_columns) else "any"
            for i in order)
        return _Statement(str(compiled), None if identity else tuple(order), tuple(constants),
                          columns, tuple(converters), param_kinds)

    def _cached(self, key: tuple, build: Callable[[], _Statement]) -> _Statement:
        stmt = self._statements.get(key)
        if stmt is None:
            if len(self._statements) >= STATEMENT_CACHE_SIZE:
                self._statements.clear()
            stmt = self._statements[key] = build()
        return stmt

    def _args(self, stmt: _Statement, values: list[Any]) -> list[Any]:
        """The driver's parameters for ``stmt`` from the call's ``values``."""
        if stmt.order is not None:
            consts = stmt.constants
            values = [values[i] if i >= 0 else consts[-1 - i] for i in stmt.order]
        write = self._write_value
        return [write(v) for v in values]

    def _check_columns(self, info: TableInfo, columns: Iterable[str]) -> None:
        kinds = info.kinds
        for column in columns:
            if column not in kinds:
                raise self._unknown_column(info, column)

    # ------------------------------------------------------------------------------------
    # The interface.

    async def select(self, table: str, columns: Sequence[str] | None = None,
                     where: Where | None = None, order_by: Sequence[str] | None = None,
                     limit: int | None = None) -> list[Row]:
        info = self.table_info(table)
        cols = info.columns if columns is None else tuple(columns)
        if columns is not None:
            if not cols:
                raise LocalProtocolError("storage: select with an empty column list")
            self._check_columns(info, cols)
        values: list[Any] = []
        shape = self._where_shape(info, where, values)
        order = tuple(order_by) if order_by else ()
        if limit is not None and (type(limit) is not int or limit < 0):
            raise LocalProtocolError(f"storage: limit {limit!r}: expected an int >= 0")
        key = ("select", table, cols, shape, order, limit)

        def build() -> _Statement:
            if order:
                self._check_columns(info, (o[1:] if o.startswith("-") else o for o in order))
            clauses, _ = self._where_clause(shape, 0)
            stmt = sa.select(*[sa.column(c) for c in cols]).select_from(sa.table(table))
            if clauses:
                stmt = stmt.where(*clauses)
            for o in order:
                stmt = stmt.order_by(sa.column(o[1:]).desc() if o.startswith("-")
                                     else sa.column(o))
            if limit is not None:
                stmt = stmt.limit(sa.literal_column(str(limit)))
            return self._finish(stmt, cols, info, True, _shape_columns(shape))

        stmt = self._cached(key, build)
        args = self._args(stmt, values)
        if not self._up:
            self._gate(table)
        try:
            rows = await self._fetch(stmt.sql, args)
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()
        if stmt.converters:
            out = []
            for r in rows:
                r = list(r)
                for i, conv in stmt.converters:
                    if r[i] is not None:
                        r[i] = conv(r[i])
                out.append(dict(zip(cols, r, strict=True)))
            return out
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def _insert_statement(self, info: TableInfo, cols: tuple[str, ...]) -> _Statement:
        key = ("insert", info.name, cols)

        def build() -> _Statement:
            self._check_columns(info, cols)
            t = sa.table(info.name, *[sa.column(c) for c in cols])
            stmt = sa.insert(t).values({c: sa.bindparam(f"{_P}{i}") for i, c in enumerate(cols)})
            if info.auto_id and self.insert_uses_returning:
                stmt = stmt.returning(sa.column("id"))
            return self._finish(stmt, cols, info, False, cols)

        return self._cached(key, build)

    insert_uses_returning = False

    async def insert(self, table: str, row: Mapping[str, Any]) -> int | None:
        info = self.table_info(table)
        if not row:
            raise LocalProtocolError(f"storage: insert into {table} with an empty row")
        cols = tuple(row)
        stmt = self._insert_statement(info, cols)
        args = self._args(stmt, list(row.values()))
        if not self._up:
            self._gate(table)
        try:
            new_id = await self._insert_returning_id(stmt.sql, args, info.auto_id)
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()
        return new_id

    async def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        info = self.table_info(table)
        if not rows:
            return
        cols = tuple(rows[0])
        if not cols:
            raise LocalProtocolError(f"storage: insert_many into {table} with an empty row")
        all_args = []
        stmt = self._insert_statement(info, cols)
        for row in rows:
            if tuple(row) != cols:
                raise LocalProtocolError(
                    f"storage: insert_many into {table}: every row must have the columns "
                    f"{', '.join(cols)} in that order")
            all_args.append(self._args(stmt, list(row.values())))
        if not self._up:
            self._gate(table)
        try:
            await self._execute_many(stmt.sql if not self.insert_uses_returning or not info.auto_id
                                     else self._plain_insert_sql(info, cols), all_args)
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()

    def _plain_insert_sql(self, info: TableInfo, cols: tuple[str, ...]) -> str:
        key = ("insert-plain", info.name, cols)

        def build() -> _Statement:
            t = sa.table(info.name, *[sa.column(c) for c in cols])
            stmt = sa.insert(t).values({c: sa.bindparam(f"{_P}{i}") for i, c in enumerate(cols)})
            return self._finish(stmt, cols, info, False, cols)

        return self._cached(key, build).sql

    def _update_statement(self, info: TableInfo, set_cols: tuple[str, ...],
                          shape: tuple) -> _Statement:
        key = ("update", info.name, set_cols, shape)

        def build() -> _Statement:
            self._check_columns(info, set_cols)
            t = sa.table(info.name, *[sa.column(c) for c in set_cols])
            clauses, _ = self._where_clause(shape, len(set_cols))
            stmt = sa.update(t).values(
                {c: sa.bindparam(f"{_P}{i}") for i, c in enumerate(set_cols)})
            if clauses:
                stmt = stmt.where(*clauses)
            return self._finish(stmt, set_cols, info, False,
                                set_cols + _shape_columns(shape))

        return self._cached(key, build)

    async def update(self, table: str, values: Mapping[str, Any], where: Where) -> int:
        info = self.table_info(table)
        if not values:
            raise LocalProtocolError(f"storage: update of {table} with no values")
        if where is None:
            raise LocalProtocolError(
                f"storage: update of {table} without where (pass {{}} to update every row)")
        set_cols = tuple(values)
        call_values = list(values.values())
        shape = self._where_shape(info, where, call_values)
        stmt = self._update_statement(info, set_cols, shape)
        args = self._args(stmt, call_values)
        return await self._run_execute(stmt.sql, args, table)

    async def _run_execute(self, sql: str, args: list[Any], table: str) -> int:
        if not self._up:
            self._gate(table)
        try:
            n = await self._execute(sql, args)
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()
        return n

    async def delete(self, table: str, where: Where | None = None) -> int:
        info = self.table_info(table)
        values: list[Any] = []
        shape = self._where_shape(info, where, values)
        key = ("delete", table, shape)

        def build() -> _Statement:
            clauses, _ = self._where_clause(shape, 0)
            stmt = sa.delete(sa.table(table))
            if clauses:
                stmt = stmt.where(*clauses)
            return self._finish(stmt, (), info, False, _shape_columns(shape))

        stmt = self._cached(key, build)
        return await self._run_execute(stmt.sql, self._args(stmt, values), table)

    async def count(self, table: str, where: Where | None = None) -> int:
        info = self.table_info(table)
        values: list[Any] = []
        shape = self._where_shape(info, where, values)
        key = ("count", table, shape)

        def build() -> _Statement:
            clauses, _ = self._where_clause(shape, 0)
            stmt = sa.select(sa.func.count()).select_from(sa.table(table))
            if clauses:
                stmt = stmt.where(*clauses)
            return self._finish(stmt, ("count",), info, False, _shape_columns(shape))

        stmt = self._cached(key, build)
        args = self._args(stmt, values)
        if not self._up:
            self._gate(table)
        try:
            rows = await self._fetch(stmt.sql, args)
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()
        return int(rows[0][0])

    async def replace(self, table: str, row: Mapping[str, Any], keys: Sequence[str]) -> None:
        info = self.table_info(table)
        if not keys:
            raise LocalProtocolError(f"storage: replace into {table} without keys")
        missing = [k for k in keys if k not in row]
        if missing:
            raise LocalProtocolError(
                f"storage: replace into {table}: the row has no value for key "
                f"{', '.join(missing)}")
        cols = tuple(row)
        key_values = [row[k] for k in keys]
        set_values = list(row.values())
        update_values = set_values + key_values
        shape = self._where_shape(info, {k: row[k] for k in keys}, [])
        update = self._update_statement(info, cols, shape)
        insert = self._insert_statement(info, cols)
        absent = self._insert_if_absent_statement(info, cols, tuple(keys))
        update_args = self._args(update, update_values)
        insert_args = self._args(insert, set_values)
        absent_args = self._args(absent, update_values)
        if not self._up:
            self._gate(table)
        try:
            await self._replace_rows(
                ReplaceCall(info, tuple(keys), key_values, update.sql, update_args,
                         insert.sql, insert_args, absent.sql, absent_args))
        except Exception as exc:
            raise self._error(exc, table) from exc
        if not self._up:
            self._back_up()

    def _insert_if_absent_statement(self, info: TableInfo, cols: tuple[str, ...],
                                    keys: tuple[str, ...]) -> _Statement:
        """``INSERT INTO t (cols) SELECT p0.. WHERE NOT EXISTS (row with these keys)``:
        the parameters are the row's values, then the keys' values."""
        key = ("insert-absent", info.name, cols, keys)

        def build() -> _Statement:
            t = sa.table(info.name, *[sa.column(c) for c in cols])
            n = len(cols)
            exists = sa.exists(
                sa.select(sa.literal_column("1")).select_from(sa.table(info.name)).where(
                    *[sa.column(k) == sa.bindparam(f"{_P}{n + i}") for i, k in enumerate(keys)]))
            sel = sa.select(*[sa.bindparam(f"{_P}{i}") for i in range(n)]).where(~exists)
            return self._finish(sa.insert(t).from_select(list(cols), sel), cols, info, False,
                                cols + keys)

        return self._cached(key, build)

    async def table_version(self, table: str) -> int | None:
        if not self.has_table(schema.VERSION_TABLE):
            return None
        rows = await self.select(schema.VERSION_TABLE, ["table_version"],
                                 {"table_name": table})
        if not rows:
            return None
        return int(rows[0]["table_version"])

    # ------------------------------------------------------------------------------------
    # Schema creation (siprouter db init / migrate use Alembic, whose baseline migration
    # does the same through SQLAlchemy's create_all).

    async def ensure_tables(self, tables: Iterable[str] | None = None) -> list[str]:
        from siprouter.storage.migrate import ddl_for_missing_tables

        names = list(schema.METADATA.tables) if tables is None else list(tables)
        for name in names:
            if name not in schema.METADATA.tables:
                raise LocalProtocolError(f"storage: no table {name!r} in siprouter's schema")
        missing = [n for n in names if not self.has_table(n)]
        if not self.has_table(schema.VERSION_TABLE) and schema.VERSION_TABLE not in missing:
            missing.insert(0, schema.VERSION_TABLE)
        # "version" first, as kamdbctl does (standard-create.sql), then the schema's order
        created = sorted((t.name for t in schema.METADATA.sorted_tables if t.name in missing),
                         key=lambda n: n != schema.VERSION_TABLE)
        if not self._up:
            self._gate(None)
        try:
            for sql in ddl_for_missing_tables(self.dialect, created):
                await self._execute(sql, [])
            self._tables = await self._reflect()
        except Exception as exc:
            raise self._error(exc, None) from exc
        self._statements.clear()
        for name in created + [n for n in names if n not in created]:
            if name in schema.KAMAILIO_TABLE_VERSIONS and await self.table_version(name) is None:
                await self.insert(schema.VERSION_TABLE, {
                    "table_name": name, "table_version": schema.KAMAILIO_TABLE_VERSIONS[name]})
        return created
