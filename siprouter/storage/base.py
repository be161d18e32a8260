# SPDX-License-Identifier: Apache-2.0
"""The one async storage interface every module uses, and its errors.

How this works
--------------
A ``Storage`` is a database reached through a URL (``open_storage`` in this package picks the
backend by scheme). It speaks in tables, columns and rows (``dict`` column -> value); the
tables and columns are Kamailio 5.6's (``siprouter.storage.schema``), so a database that
Kamailio uses can be shared. There is deliberately no SQL in this interface: the same calls
run on SQLite, PostgreSQL, MySQL/MariaDB and db_text files.

Values are ``int``, ``float``, ``str``, ``bytes``, ``datetime.datetime`` (naive, local wall
clock time, as Kamailio stores its datetime columns) or ``None`` (SQL NULL; an empty field in
db_text).

A condition (``Where``) maps column names to values: ``{"username": "alice"}`` means
``username = 'alice'``; a ``Cond`` gives another operator: ``{"expires": Cond("<", now)}``.
All conditions of one ``Where`` must hold (AND). ``None`` as a plain value means
``IS NULL``. ``Cond("in", [...])`` with an empty list matches nothing.

Errors: every failure is a ``StorageError``. ``StorageUnavailable`` means "the database
cannot be reached right now" (a caller answering SIP maps it to 500/503 and carries on; the
backend reconnects by itself). ``StorageSchemaError`` means "the database is not what we
need" (unknown table or column, wrong table version): an operator must act. Misuse of the
API (an unknown ``Cond`` operator, an empty row) raises ``LocalProtocolError``.
"""

from __future__ import annotations

import abc
import datetime
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

from siprouter.sip.errors import LocalProtocolError

__all__ = [
    "StorageError",
    "StorageUnavailable",
    "StorageSchemaError",
    "Cond",
    "Where",
    "Value",
    "Row",
    "COND_OPS",
    "Storage",
    "mask_url",
    "check_where",
    "check_identifier",
]

Value: TypeAlias = int | float | str | bytes | datetime.datetime | None
Row: TypeAlias = dict[str, Any]

# The operators a Cond may use (Kamailio's db API has "=", "<>", "<", ">", "<=", ">=",
# "is null"/"is not null" through NULL values, and "in" through raw queries).
COND_OPS = frozenset({"=", "!=", "<", "<=", ">", ">=", "is null", "is not null", "in"})


def mask_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``:
    ``postgresql://kam:secret@db/kam`` -> ``postgresql://kam:***@db/kam``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{path}"


class StorageError(Exception):
    """A storage operation failed.

    :param message: what went wrong, for logs and the operator (never for SIP peers).
    :param url: the database URL; kept with its password masked.
    :param table: the table the operation was about, if any.
    """

    def __init__(self, message: str, *, url: str | None = None, table: str | None = None):
        self.url = mask_url(url) if url else url
        self.table = table
        where = []
        if self.url:
            where.append(self.url)
        if table:
            where.append(f"table {table}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.message = message


class StorageUnavailable(StorageError):
    """The database cannot be reached right now (connection refused or lost, server
    shutting down, timeout). Map to 500/503; the backend reconnects by itself."""


class StorageSchemaError(StorageError):
    """The database does not have what is asked for: unknown table or column, a table
    whose Kamailio ``version`` row does not match, a value of the wrong type for its
    column. The operator must act (``siprouter db migrate``)."""


class Cond(NamedTuple):
    """A condition on one column other than plain equality: ``Cond("<", value)``,
    ``Cond("in", [v1, v2])``, ``Cond("is null", None)``. ``op`` is one of ``COND_OPS``."""

    op: str
    value: Any = None


Where: TypeAlias = Mapping[str, Any]  # column -> value (equality) or Cond; AND of all

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_where(where: Where | None) -> None:
    """Raise ``LocalProtocolError`` if ``where`` uses an unknown operator, an ``in``
    without a sequence of values, or a column name that is not a plain identifier.
    Backends call it before building a query."""
    if not where:
        return
    for column, value in where.items():
        if not isinstance(column, str) or not _IDENTIFIER.match(column):
            raise LocalProtocolError(f"storage: bad column name {column!r}")
        if type(value) is Cond:
            if value.op not in COND_OPS:
                raise LocalProtocolError(
                    f"storage: unknown condition operator {value.op!r} for column {column!r}; "
                    f"expected one of {', '.join(sorted(COND_OPS))}"
                )
            if value.op == "in" and (
                isinstance(value.value, str | bytes) or not isinstance(value.value, Iterable)
            ):
                raise LocalProtocolError(
                    f"storage: Cond('in', ...) for column {column!r} needs a list of values"
                )


def check_identifier(name: str, what: str = "column") -> None:
    """Raise ``LocalProtocolError`` unless ``name`` is a plain SQL identifier."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise LocalProtocolError(f"storage: bad {what} name {name!r}")


class Storage(abc.ABC):
    """A database: tables of rows. Open it before use, close it when done; it is also an
    async context manager (``async with open_storage(url) as db: ...``).

    Every method may raise ``StorageUnavailable`` (cannot reach the database now),
    ``StorageSchemaError`` (no such table or column) or another ``StorageError``.
    """

    url: str
    scheme: str  # "sqlite" | "postgresql" | "mysql" | "text"

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {mask_url(self.url)}>"

    __str__ = __repr__

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (SQL) or load (db_text). Raises ``StorageUnavailable`` with a clear
        message when the database cannot be reached, ``StorageError`` when the URL is
        unusable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and files; pending writes are flushed. Idempotent."""

    @abc.abstractmethod
    async def select(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        where: Where | None = None,
        order_by: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """Rows of ``table`` matching ``where`` (all rows when None), each a dict of the
        requested ``columns`` (all columns when None). ``order_by`` names columns, each
        optionally prefixed with ``-`` for descending order."""

    @abc.abstractmethod
    async def insert(self, table: str, row: Mapping[str, Any]) -> int | None:
        """Insert one row; return the value of its auto-increment ``id`` column, or None
        when the table has none."""

    @abc.abstractmethod
    async def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows in one go (one transaction where the backend has them). Every row
        must have the same columns."""

    @abc.abstractmethod
    async def update(self, table: str, values: Mapping[str, Any], where: Where) -> int:
        """Set ``values`` in the rows matching ``where``; return how many rows matched."""

    @abc.abstractmethod
    async def delete(self, table: str, where: Where | None = None) -> int:
        """Delete the rows matching ``where`` (all rows when None); return how many."""

    @abc.abstractmethod
    async def replace(self, table: str, row: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Upsert: update the row whose ``keys`` columns equal ``row``'s, or insert ``row``
        when there is none. Atomic on each backend."""

    @abc.abstractmethod
    async def count(self, table: str, where: Where | None = None) -> int:
        """How many rows of ``table`` match ``where``."""

    @abc.abstractmethod
    async def table_version(self, table: str) -> int | None:
        """The Kamailio ``version`` table's ``table_version`` for ``table``, or None when
        there is no row for it (or no ``version`` table)."""

    @abc.abstractmethod
    def has_table(self, table: str) -> bool:
        """Does ``table`` exist? Known from ``open()`` (plus the tables created since by
        ``ensure_tables``)."""

    async def ensure_tables(self, tables: Iterable[str] | None = None) -> list[str]:
        """Create each named table of ``schema.METADATA`` (all of them when None) that does
        not exist yet, with its indexes, and add its Kamailio ``version`` row
        (``schema.KAMAILIO_TABLE_VERSIONS``) when missing. Existing tables and rows are left
        untouched. Return the names of the tables created, in creation order.

        ``siprouter db init`` / ``db migrate`` use this for backends without Alembic
        (db_text); the SQL backends also implement it (Alembic's baseline does the same).
        """
        raise NotImplementedError(f"{type(self).__name__}.ensure_tables")
