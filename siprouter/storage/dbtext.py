# SPDX-License-Identifier: Apache-2.0
"""db_text: a directory is a database, a file is a table (Kamailio/OpenSIPS ``db_text``).

How this works
--------------
``text:///var/lib/kamailio/dbtext`` names a directory (as in Kamailio's ``db_url``:
everything after ``text://`` is the path, so three slashes make it absolute). Each file
whose name is a plain identifier is a table; :mod:`siprouter.storage.dbtext_format`
reads and writes its text. Dot files are not tables (our temporary files are dot files).

Rows live in memory as dicts of the values the :class:`~siprouter.storage.base.Storage`
interface speaks. A row dict is never changed in place: an update puts a new dict in the
table's list. So a writer can take a shallow copy of the list and format it in a worker
thread while the event loop goes on changing the table.

Modes (``db_mode``, as Kamailio's module parameter):

* ``0``, caching (the default): every table is loaded by ``open()`` and served from
  memory. Changes are written back by :meth:`DbTextStorage.dump` (the ``dbt.dump``
  command), by ``close()`` and, unless ``flush_interval`` is ``None``, by a background
  task ``flush_interval`` seconds after the first unsaved change (default 1 s; Kamailio
  itself writes only on ``db_text.dump`` and at shutdown). ``flush_interval=0`` writes
  each change before the call returns. A file changed by someone else is read again only
  by :meth:`DbTextStorage.reload` (``dbt.reload``).
* ``1``, non-caching: before each use of a table its file is looked at (``stat``:
  modification time, size and inode; ``os.replace`` gives a new inode, so a rewrite in
  the same second as the last read is seen) and read again when it changed. Every change
  is written to the file before the call returns, so the file is always the truth.

A write never leaves a half-written table: the whole file goes to a temporary file in the
same directory, is flushed and ``fsync``-ed, then ``os.replace``-d over the table (atomic
on POSIX), and the directory is ``fsync``-ed. A write that fails leaves the old file;
in the modes that write before returning, the change is also undone in memory and the
caller gets :class:`StorageUnavailable`. File reads and writes run in a worker thread
(``asyncio.to_thread``) so that a large table does not stall the event loop.

Columns and values: the file header gives the columns. For tables of the shared schema
(:mod:`siprouter.storage.schema`) the schema refines how values look in memory, as
Kamailio's kamdbctl writes them: a ``datetime`` column is an ``int`` column in the file
(seconds since the epoch) and a ``datetime`` in memory; a binary column is a ``string``
column in the file and ``bytes`` in memory. Missing values on insert take the schema's
server default. ``ensure_tables`` (``siprouter db init text:///DIR``) writes new table
files with exactly the headers of Kamailio's kamdbctl templates and fills ``version``.

Unreadable lines: a bad header makes the table unusable (each call on it raises
:class:`StorageSchemaError` naming file and line); a bad row is logged with file, line
and what was expected, the rest of the table is served, and the line is kept (written
back at the end of the file) so that an operator's typo is reported, not deleted.
:meth:`DbTextStorage.reload` raises :class:`StorageSchemaError` listing such lines after
it has loaded everything else.

Lookups: a ``where`` made only of plain equalities is answered from a hash index on
those columns, built on first use and kept up to date by every change (at most
``MAX_INDEXES_PER_TABLE`` per table); other conditions scan the table. Results come in
file order either way.

Differences from Kamailio's db_text worth knowing: Kamailio puts a newly inserted row at
the top of the file, we append it (each reads the other's files; row order carries no
meaning). Kamailio writes doubles with two decimals, we write more when two would change
the value (see :mod:`~siprouter.storage.dbtext_format`). An empty string in a not-null
string column is an empty field, as Kamailio writes it; Kamailio reads such a file back
only with ``modparam("db_text", "emptystring", 1)`` (otherwise it refuses the table), and
in a nullable column an empty field reads as null in both.

Keys: for schema tables, changes that would give two rows the same primary or unique key
raise :class:`StorageError`, as in SQL (Kamailio's db_text does not check; rows already in
a file are not checked against each other, so kamdbctl's ``version`` file, whose ids are
all 0, still loads).

Not done here (db_text does not do it either): transactions across tables, and locking against another process that writes the same files (two processes
writing one table in non-caching mode can lose each other's changes).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from siprouter.sip.errors import LocalProtocolError
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
)
from siprouter.storage.dbtext_format import (
    ENCODING,
    ENCODING_ERRORS,
    BadLine,
    Column,
    ColumnType,
    DbTextFormatError,
    ParsedTable,
    datetime_to_epoch,
    epoch_to_datetime,
    format_header,
    format_table,
    parse_table,
)

__all__ = ["DbTextStorage", "table_columns_for_schema", "DEFAULT_FLUSH_INTERVAL",
           "TEMP_SUFFIX"]

log = logging.getLogger("siprouter.storage.dbtext")

#: Caching mode: seconds between the first unsaved change and the write-back.
DEFAULT_FLUSH_INTERVAL = 1.0
#: Equality indexes kept per table (the least recently created is dropped beyond this).
MAX_INDEXES_PER_TABLE = 8
#: Our temporary files: ``.<table>.<pid>.<random>.tmp`` in the database directory.
TEMP_SUFFIX = ".tmp"
_TABLE_FILE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TEMP_FILE = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)\.(\d+)\..*\.tmp\Z")

#: Testing hook: called with the temporary file's path after it is written and synced,
#: before the rename. A crash test sets it (in a child process) to ``os._exit``.
_before_replace: Callable[[str], None] | None = None

Signature = tuple[int, int, int]  # st_mtime_ns, st_size, st_ino
_UNSET: Any = object()


# ----------------------------------------------------------------------------- schema glue

def _schema_table(name: str) -> Any:
    """The SQLAlchemy ``Table`` called ``name`` in the shared schema, or None."""
    from siprouter.storage import schema

    return schema.METADATA.tables.get(name)


def _schema_kinds(name: str) -> dict[str, str]:
    from siprouter.storage import schema

    return schema.COLUMN_KINDS.get(name, {})


def table_columns_for_schema(sa_table: Any) -> tuple[Column, ...]:
    """The db_text header of a schema table, as Kamailio's kamdbctl templates have it
    (``doc/stylesheets/dbschema_k/xsl/dbtext.xsl``): integers and datetimes are ``int``,
    floats ``double``, strings, texts and binaries ``string``; nullable columns
    ``null``; the auto-increment primary key ``int,auto``."""
    from siprouter.storage import schema

    kinds = schema.column_kinds(sa_table)
    pk = list(sa_table.primary_key.columns)
    columns = []
    for col in sa_table.columns:
        kind = kinds[col.name]
        ctype = {"int": ColumnType.INT, "datetime": ColumnType.INT,
                 "float": ColumnType.DOUBLE}.get(kind, ColumnType.STRING)
        auto = (len(pk) == 1 and pk[0] is col and kind == "int"
                and col.autoincrement in (True, "auto"))
        columns.append(Column(col.name, ctype, bool(col.nullable), auto))
    return tuple(columns)


def _schema_defaults(name: str, kinds: Mapping[str, str]) -> dict[str, Any]:
    """Column -> value from the schema's server defaults (what SQL fills in on insert)."""
    sa_table = _schema_table(name)
    if sa_table is None:
        return {}
    defaults: dict[str, Any] = {}
    for col in sa_table.columns:
        clause = col.server_default
        if clause is None or not hasattr(clause, "arg"):
            continue
        arg = clause.arg
        if isinstance(arg, str):
            text = arg                    # a literal value (SQL quotes it)
        elif isinstance(getattr(arg, "text", None), str):
            text = arg.text.strip()       # SQL text: NULL, a number or a quoted literal
            if len(text) >= 2 and text[0] == text[-1] == "'":
                text = text[1:-1].replace("''", "'")
            elif kinds.get(col.name) not in ("int", "float"):
                continue                  # NULL, CURRENT_TIMESTAMP ...: no literal value
        else:
            continue
        kind = kinds.get(col.name, "str")
        try:
            if kind == "int":
                defaults[col.name] = int(text)
            elif kind == "float":
                defaults[col.name] = float(text)
            elif kind == "datetime":
                defaults[col.name] = datetime.fromisoformat(text)
            elif kind == "bytes":
                defaults[col.name] = text.encode()
            else:
                defaults[col.name] = text
        except ValueError:
            log.debug("db_text: default %r of %s.%s not used", text, name, col.name)
    return defaults


def _schema_unique_keys(name: str) -> list[tuple[str, ...]]:
    """The primary key and unique constraints of a schema table (column name tuples)."""
    from sqlalchemy import UniqueConstraint

    sa_table = _schema_table(name)
    if sa_table is None:
        return []
    keys = [tuple(c.name for c in sa_table.primary_key.columns)]
    keys += [tuple(c.name for c in constraint.columns) for constraint in sa_table.constraints
             if isinstance(constraint, UniqueConstraint)]
    return [k for k in keys if k]


def _value_kind(column: Column, schema_kind: str | None) -> str:
    """How a column's values look in memory: the file type, refined by the schema."""
    ctype = column.type
    if ctype is ColumnType.INT:
        return "datetime" if schema_kind == "datetime" else "int"
    if ctype is ColumnType.TIME:
        return "datetime"
    if ctype is ColumnType.DOUBLE:
        return "float"
    if ctype is ColumnType.BLOB:
        return "bytes"
    return "bytes" if schema_kind == "bytes" else "str"


# ----------------------------------------------------------------------------- value checks

def _coercer(table: str, column: Column, kind: str) -> Callable[[Any], Any]:
    """A function value -> value as stored, raising StorageSchemaError for a value the
    column cannot hold (wrong type, NaN). None passes (nullability is checked apart)."""
    name = column.name

    def wrong(value: Any, expected: str) -> StorageSchemaError:
        return StorageSchemaError(
            f"column {name}: expected {expected}, got {type(value).__name__} {value!r:.60}",
            table=table)

    if kind == "int":
        def coerce(value: Any) -> Any:
            if value is None or type(value) is int:
                return value
            if isinstance(value, int):  # bool, IntEnum
                return int(value)
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise wrong(value, "an int")
    elif kind == "float":
        def coerce(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, int | float):
                value = float(value)
                if math.isfinite(value):
                    return value
            raise wrong(value, "a finite float")
    elif kind == "datetime":
        def coerce(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, datetime):
                # What the file can hold: whole seconds, local time (as it reads back).
                return epoch_to_datetime(datetime_to_epoch(value))
            raise wrong(value, "a datetime")
    elif kind == "bytes":
        def coerce(value: Any) -> Any:
            if value is None or type(value) is bytes:
                return value
            if isinstance(value, bytes | bytearray | memoryview):
                return bytes(value)
            raise wrong(value, "bytes")
    else:
        def coerce(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, str):
                if not value.isascii():
                    try:
                        value.encode(ENCODING, ENCODING_ERRORS)
                    except UnicodeEncodeError:
                        raise wrong(value, "text that can be written as UTF-8") from None
                return str(value)
            raise wrong(value, "a str")
    return coerce


# ----------------------------------------------------------------------------- a table

class _Table:
    """One table: its file, columns and rows, and what has been saved."""

    __slots__ = (
        "name", "path", "columns", "column_names", "kinds", "coercers",
        "defaults", "unique_keys", "unique_columns", "auto_name", "auto_value", "rows", "next_rowid", "indexes", "bad_lines",
        "generation", "saved_generation", "signature", "io_lock", "reloading", "broken",
    )

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.columns: tuple[Column, ...] = ()
        self.column_names: frozenset[str] = frozenset()
        self.kinds: dict[str, str] = {}
        self.coercers: dict[str, Callable[[Any], Any]] = {}
        self.defaults: dict[str, Any] = {}
        self.unique_keys: tuple[tuple[str, ...], ...] = ()
        self.unique_columns: frozenset[str] = frozenset()
        self.auto_name: str | None = None
        self.auto_value = 0
        #: row id -> row, in file order (ids only grow, so id order is file order).
        self.rows: dict[int, dict[str, Any]] = {}
        self.next_rowid = 0
        #: equality indexes, built on first use: columns -> key values -> row ids (sorted)
        self.indexes: dict[tuple[str, ...], dict[tuple[Any, ...], list[int]]] = {}
        self.bad_lines: list[BadLine] = []
        self.generation = 0          # bumped by each change in memory
        self.saved_generation = 0    # the generation the file holds
        self.signature: Signature | None = None
        self.io_lock = asyncio.Lock()
        self.reloading: asyncio.Event | None = None
        self.broken: StorageSchemaError | None = None

    @property
    def modified(self) -> bool:
        return self.generation != self.saved_generation

    def set_columns(self, columns: tuple[Column, ...]) -> None:
        schema_kinds = _schema_kinds(self.name)
        self.columns = columns
        self.column_names = frozenset(c.name for c in columns)
        self.kinds = {c.name: _value_kind(c, schema_kinds.get(c.name)) for c in columns}
        self.coercers = {c.name: _coercer(self.name, c, self.kinds[c.name]) for c in columns}
        defaults = _schema_defaults(self.name, self.kinds)
        self.defaults = {}
        for name, value in defaults.items():
            if name in self.coercers:
                with contextlib.suppress(StorageSchemaError):
                    self.defaults[name] = self.coercers[name](value)
        self.auto_name = next((c.name for c in columns if c.auto), None)
        self.unique_keys = tuple(k for k in _schema_unique_keys(self.name)
                                 if self.column_names.issuperset(k))
        self.unique_columns = frozenset(c for k in self.unique_keys for c in k)

    def install(self, parsed: ParsedTable, signature: Signature | None) -> None:
        """Take what was read from the file (replacing rows and unsaved changes)."""
        if parsed.columns != self.columns:
            self.set_columns(parsed.columns)
        self.set_rows(parsed.rows)
        self.bad_lines = parsed.bad_lines
        self.auto_value = parsed.max_auto
        self.generation += 1
        self.saved_generation = self.generation
        self.signature = signature
        self.broken = None

    def set_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        self.rows = dict(enumerate(rows))
        self.next_rowid = len(self.rows)
        self.indexes.clear()

    def add(self, row: dict[str, Any]) -> None:
        rowid = self.next_rowid
        self.next_rowid = rowid + 1
        self.rows[rowid] = row
        for columns, index in self.indexes.items():
            key = tuple([row[c] for c in columns])
            bucket = index.get(key)
            if bucket is None:
                index[key] = [rowid]
            else:
                bucket.append(rowid)  # the largest id: the bucket stays sorted

    def replace_row(self, rowid: int, new: dict[str, Any], changed: frozenset[str]) -> None:
        old = self.rows[rowid]
        self.rows[rowid] = new
        for columns, index in self.indexes.items():
            if changed.isdisjoint(columns):
                continue
            old_key = tuple([old[c] for c in columns])
            new_key = tuple([new[c] for c in columns])
            if old_key != new_key:
                self._unindex(index, old_key, rowid)
                bisect.insort(index.setdefault(new_key, []), rowid)

    def remove(self, rowid: int) -> None:
        row = self.rows.pop(rowid)
        for columns, index in self.indexes.items():
            self._unindex(index, tuple([row[c] for c in columns]), rowid)

    @staticmethod
    def _unindex(index: dict[tuple[Any, ...], list[int]], key: tuple[Any, ...],
                 rowid: int) -> None:
        bucket = index[key]
        if len(bucket) == 1:
            del index[key]
        else:
            del bucket[bisect.bisect_left(bucket, rowid)]

    def index(self, columns: tuple[str, ...]) -> dict[tuple[Any, ...], list[int]]:
        """The equality index on ``columns``, built now if there is none."""
        index = self.indexes.get(columns)
        if index is None:
            if len(self.indexes) >= MAX_INDEXES_PER_TABLE:
                del self.indexes[next(iter(self.indexes))]
            index = {}
            for rowid, row in self.rows.items():
                key = tuple([row[c] for c in columns])
                bucket = index.get(key)
                if bucket is None:
                    index[key] = [rowid]
                else:
                    bucket.append(rowid)
            self.indexes[columns] = index
        return index

    def datetime_columns(self) -> set[str]:
        return {n for n, k in _schema_kinds(self.name).items() if k == "datetime"}

    def binary_columns(self) -> set[str]:
        return {n for n, k in _schema_kinds(self.name).items() if k == "bytes"}


@dataclass(slots=True)
class _Loaded:
    """What a worker thread read from a table file."""

    parsed: ParsedTable | None
    signature: Signature | None
    header_error: DbTextFormatError | None = None


# ----------------------------------------------------------------------------- file I/O
# These run in worker threads: no event-loop objects in them.

def _signature(st: os.stat_result) -> Signature:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _read_table_file(path: Path, delimiter: str, datetime_columns: set[str],
                     binary_columns: set[str]) -> _Loaded:
    """Read and parse one table file. OSError propagates (the caller reports it)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    text = data.decode(ENCODING, ENCODING_ERRORS)
    try:
        parsed = parse_table(text, delimiter=delimiter, datetime_columns=datetime_columns,
                             binary_columns=binary_columns)
    except DbTextFormatError as exc:
        return _Loaded(None, _signature(st), exc)
    return _Loaded(parsed, _signature(st))


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _write_file_atomically(path: Path, data: bytes, *, replace: bool = True) -> Signature:
    """Write ``data`` as ``path`` without ever leaving a partial file there: a temporary
    file in the same directory, flushed and fsync-ed, renamed over ``path``
    (``replace=False``: linked, failing with FileExistsError if ``path`` exists), then the
    directory fsync-ed. Keeps the old file's permission bits."""
    directory = path.parent
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
            st = os.fstat(f.fileno())
        if _before_replace is not None:
            _before_replace(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return _signature(st)


def _fsync_directory(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _write_table(path: Path, columns: Sequence[Column], rows: Iterable[Mapping[str, Any]],
                 bad_lines: Iterable[BadLine], delimiter: str) -> Signature:
    text = format_table(columns, rows, delimiter=delimiter, bad_lines=bad_lines)
    return _write_file_atomically(path, text.encode(ENCODING, ENCODING_ERRORS))


def _remove_stale_temp_files(directory: Path) -> None:
    """Remove temporary files left by a process of ours that died before its rename."""
    for entry in os.scandir(directory):
        m = _TEMP_FILE.match(entry.name)
        if m is None:
            continue
        pid = int(m.group(2))
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running (it may be writing right now)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            log.info("db_text: removed %s, left by process %d", entry.path, pid)


def _list_table_files(directory: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(directory)
                  if _TABLE_FILE.match(e.name) and e.is_file())


# ----------------------------------------------------------------------------- the backend

def _parse_options(url: str) -> tuple[Path, dict[str, str]]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().split("+", 1)[0] != "text":
        raise StorageError("expected a db_text URL text:///DIRECTORY", url=url)
    path, _, query = rest.partition("?")
    if not path:
        raise StorageError("db_text URL without a directory: expected text:///DIRECTORY",
                           url=url)
    return Path(unquote(path)), dict(parse_qsl(query))


class DbTextStorage(Storage):
    """The db_text backend (see the module documentation).

    :param url: ``text:///DIRECTORY`` (Kamailio's spelling: the path follows ``text://``),
        optionally with the options below as query parameters.
    :param db_mode: 0 caching (default), 1 non-caching (as Kamailio's ``db_mode``).
    :param flush_interval: caching mode: seconds from the first unsaved change to its
        write-back; 0 writes before each call returns; None only on ``dump``/``close``.
    :param delimiter: the field separator (Kamailio's ``db_delim``), ``:`` by default.
    """

    scheme = "text"

    def __init__(self, url: str, *, db_mode: int | str | None = None,
                 flush_interval: float | str | None | object = _UNSET,
                 delimiter: str | None = None) -> None:
        super().__init__(url)
        self.directory, query = _parse_options(url)
        mode = db_mode if db_mode is not None else query.get("db_mode", "0")
        try:
            mode = int(mode)
        except ValueError:
            mode = -1
        if mode not in (0, 1):
            raise StorageError("db_mode: expected 0 (caching) or 1 (non-caching)", url=url)
        self.caching = mode == 0
        if flush_interval is _UNSET:
            flush_interval = query.get("flush_interval", DEFAULT_FLUSH_INTERVAL)
        if isinstance(flush_interval, str):
            if flush_interval.lower() in ("", "none", "off", "never"):
                flush_interval = None
            else:
                try:
                    flush_interval = float(flush_interval)
                except ValueError:
                    raise StorageError("flush_interval: expected seconds or 'none'",
                                       url=url) from None
        if flush_interval is not None and (not math.isfinite(flush_interval)
                                           or flush_interval < 0):
            raise StorageError("flush_interval: expected seconds >= 0 or 'none'", url=url)
        self.flush_interval: float | None = flush_interval
        self.delimiter = delimiter if delimiter is not None else query.get("delimiter", ":")
        if len(self.delimiter) != 1 or self.delimiter in "\\\n\rnrt0\x00":
            raise StorageError("delimiter: expected one character (not \\, n, r, t, 0 or a "
                               "line end)", url=url)
        #: Changes are on disk before the call returns (non-caching, or flush_interval 0).
        self.write_through = not self.caching or self.flush_interval == 0
        self._tables: dict[str, _Table] = {}
        self._open = False
        self._flusher: asyncio.Task[None] | None = None
        self._dirty: asyncio.Event | None = None
        self._failing = False
        #: Unreadable lines found by the last load of each table (file:line: expected).
        self.load_problems: dict[str, list[str]] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Load every table file of the directory (creating the directory if needed).

        :raises StorageUnavailable: the directory cannot be created or read.
        """
        if self._open:
            return
        self._tables = {}
        self.load_problems = {}
        try:
            await asyncio.to_thread(self._prepare_directory)
            names = await asyncio.to_thread(_list_table_files, self.directory)
        except OSError as exc:
            raise StorageUnavailable(f"db_text directory unusable: {exc}", url=self.url) from exc
        for name in names:
            table = _Table(name, self.directory / name)
            try:
                await self._load(table)
            except FileNotFoundError:
                continue  # removed since the directory was listed
            self._tables[name] = table
        self._open = True
        if self.caching and self.flush_interval:
            self._dirty = asyncio.Event()
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name=f"db_text flush {self.directory}")
        log.info("db_text: %d tables in %s (%s)", len(self._tables), self.directory,
                 "caching" if self.caching else "non-caching")

    def _prepare_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.directory.is_dir():
            raise NotADirectoryError(f"{self.directory} is not a directory")
        _remove_stale_temp_files(self.directory)

    async def close(self) -> None:
        """Write back modified tables (caching mode) and stop. Idempotent.

        :raises StorageUnavailable: a table could not be written (it stays modified).
        """
        if not self._open:
            return
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        try:
            await self.dump()
        finally:
            self._open = False

    # -- loading ---------------------------------------------------------------------

    async def _load(self, table: _Table) -> list[str]:
        """Read ``table`` from its file; return its problems (file:line: expected)."""
        try:
            loaded = await asyncio.to_thread(
                _read_table_file, table.path, self.delimiter,
                table.datetime_columns(), table.binary_columns())
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StorageUnavailable(f"cannot read {table.path}: {exc}", url=self.url,
                                     table=table.name) from exc
        if loaded.header_error is not None:
            err = loaded.header_error
            problem = f"{table.path}:{err.line_no}: expected {err.expected}"
            table.broken = StorageSchemaError(problem, url=self.url, table=table.name)
            table.signature = loaded.signature
            table.set_rows(())
            table.bad_lines = []
            log.error("db_text: %s; the table is not usable until the file is fixed", problem)
            self.load_problems[table.name] = [problem]
            return [problem]
        assert loaded.parsed is not None
        if table.modified and table.columns:
            log.warning("db_text: %s reloaded from its file; unsaved changes dropped",
                        table.path)
        table.install(loaded.parsed, loaded.signature)
        problems = [f"{table.path}:{bad.line_no}: expected {bad.expected}"
                    for bad in loaded.parsed.bad_lines]
        for problem in problems:
            log.error("db_text: %s (line kept, row not loaded)", problem)
        if problems:
            self.load_problems[table.name] = problems
        else:
            self.load_problems.pop(table.name, None)
        return problems

    async def _reload_table(self, table: _Table) -> list[str]:
        """Read ``table`` again, holding back changes that arrive meanwhile until done."""
        async with table.io_lock:
            table.reloading = event = asyncio.Event()
            try:
                return await self._load(table)
            finally:
                table.reloading = None
                event.set()

    async def _fresh(self, name: str) -> _Table | None:
        """Non-caching mode: the table, read again if its file changed (None if gone)."""
        table = self._tables.get(name)
        path = table.path if table is not None else self.directory / name
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if table is not None and table.signature is not None:
                log.warning("db_text: %s was removed", path)
                del self._tables[name]
            return None
        except OSError as exc:
            raise StorageUnavailable(f"cannot stat {path}: {exc}", url=self.url,
                                     table=name) from exc
        if table is None:
            table = self._tables.setdefault(name, _Table(name, path))
        if table.signature != _signature(st):
            async with table.io_lock:
                if table.signature != _signature(os.stat(path)):
                    try:
                        await self._load(table)
                    except FileNotFoundError:
                        return None
        return table

    # -- getting a table -------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise LocalProtocolError(f"storage {self!r} used before open() or after close()")

    async def _table(self, name: str) -> _Table:
        self._check_open()
        table = self._tables.get(name)
        if not self.caching:
            check_identifier(name, "table")
            table = await self._fresh(name)
        if table is None:
            check_identifier(name, "table")
            raise StorageSchemaError(
                f"no table {name} in {self.directory} (create it with "
                f"`siprouter db init text://{self.directory}`)", url=self.url, table=name)
        if table.broken is not None:
            raise table.broken
        return table

    def has_table(self, table: str) -> bool:
        """Does the table's file exist (as of ``open()``, or now in non-caching mode)?"""
        if table in self._tables:
            return True
        if not self.caching and _TABLE_FILE.match(table):
            return (self.directory / table).is_file()
        return False

    def tables(self) -> list[str]:
        """The names of the tables loaded."""
        return sorted(self._tables)

    # -- conditions ------------------------------------------------------------------

    def _check_columns(self, table: _Table, names: Iterable[str]) -> None:
        for name in names:
            if name not in table.column_names:
                check_identifier(name)
                raise StorageSchemaError(f"no column {name} in {table.path}", url=self.url,
                                         table=table.name)

    def _find(self, t: _Table, where: Where | None) -> list[int]:
        """The ids of the rows matching ``where``, in file order. Plain equalities use
        (and build) an index on their columns; anything else scans the table."""
        if not where:
            return list(t.rows)
        check_where(where)
        self._check_columns(t, where)
        for value in where.values():
            if value is None or type(value) is Cond:
                match = self._matcher(t, where)
                assert match is not None
                return [rowid for rowid, row in t.rows.items() if match(row)]
        coercers = t.coercers
        key = tuple([coercers[c](v) for c, v in where.items()])
        return list(t.index(tuple(where)).get(key, ()))

    def _matcher(self, table: _Table,
                 where: Where | None) -> Callable[[dict[str, Any]], bool] | None:
        if not where:
            return None
        check_where(where)
        self._check_columns(table, where)
        tests = [self._predicate(table, column, value) for column, value in where.items()]
        if len(tests) == 1:
            return tests[0]
        if len(tests) == 2:
            first, second = tests
            return lambda row: first(row) and second(row)
        return lambda row: all(test(row) for test in tests)

    def _predicate(self, table: _Table, column: str,
                   value: Any) -> Callable[[dict[str, Any]], bool]:
        if type(value) is Cond:
            op, value = value.op, value.value
        else:
            op = "="
        if op == "is null" or (op == "=" and value is None):
            return lambda row: row[column] is None
        if op == "is not null" or (op == "!=" and value is None):
            return lambda row: row[column] is not None
        coerce = table.coercers[column]
        if op == "in":
            wanted = [coerce(v) for v in value if v is not None]
            try:
                wanted_set = frozenset(wanted)
            except TypeError:
                return lambda row: row[column] is not None and row[column] in wanted
            return lambda row: row[column] in wanted_set
        if value is None:
            return lambda row: False  # SQL: a comparison with NULL is never true
        value = coerce(value)
        if op == "=":
            return lambda row: row[column] == value
        if op == "!=":
            return lambda row: (v := row[column]) is not None and v != value
        if op == "<":
            return lambda row: (v := row[column]) is not None and v < value
        if op == "<=":
            return lambda row: (v := row[column]) is not None and v <= value
        if op == ">":
            return lambda row: (v := row[column]) is not None and v > value
        if op == ">=":
            return lambda row: (v := row[column]) is not None and v >= value
        raise LocalProtocolError(f"storage: unknown condition operator {op!r}")

    # -- reads -----------------------------------------------------------------------

    async def select(self, table: str, columns: Sequence[str] | None = None,
                     where: Where | None = None, order_by: Sequence[str] | None = None,
                     limit: int | None = None) -> list[Row]:
        """Rows matching ``where``, in file order unless ``order_by`` (``-col`` descends;
        nulls sort first ascending, last descending, as SQLite and MySQL do)."""
        t = await self._table(table)
        if columns is not None:
            columns = list(columns)
            if not columns:
                raise LocalProtocolError("storage: select with an empty column list")
            self._check_columns(t, columns)
        if limit is not None and (type(limit) is not int or limit < 0):
            raise LocalProtocolError(f"storage: limit {limit!r}: expected an int >= 0")
        all_rows = t.rows
        if where:
            rows = [all_rows[rowid] for rowid in self._find(t, where)]
        else:
            rows = list(all_rows.values())
        if order_by:
            keys = [(k[1:], True) if k.startswith("-") else (k, False) for k in order_by]
            self._check_columns(t, (k for k, _ in keys))
            for key, descending in reversed(keys):
                rows.sort(key=lambda r, k=key: (r[k] is not None, r[k]) if r[k] is not None
                          else (False, 0), reverse=descending)
        if limit is not None:
            rows = rows[:limit]
        if columns is None:
            return [r.copy() for r in rows]
        return [{c: r[c] for c in columns} for r in rows]

    async def count(self, table: str, where: Where | None = None) -> int:
        """How many rows match ``where``."""
        t = await self._table(table)
        return len(self._find(t, where)) if where else len(t.rows)

    async def table_version(self, table: str) -> int | None:
        """``table_version`` of ``table``'s row in the ``version`` table, or None."""
        if not self.has_table("version"):
            return None
        rows = await self.select("version", ["table_version"], {"table_name": table},
                                 limit=1)
        return rows[0]["table_version"] if rows else None

    # -- writes ----------------------------------------------------------------------

    def _prepare_row(self, t: _Table, row: Mapping[str, Any]) -> dict[str, Any]:
        """A full row for ``t`` in column order: values checked, defaults filled in
        (the auto column stays None for :meth:`_assign_auto`)."""
        if not row:
            raise LocalProtocolError("storage: insert of an empty row")
        if not t.column_names.issuperset(row):
            self._check_columns(t, row)
        coercers = t.coercers
        defaults = t.defaults
        new: dict[str, Any] = {}
        for column in t.columns:
            name = column.name
            value = coercers[name](row[name]) if name in row else defaults.get(name)
            if value is None and not (column.nullable or column.auto):
                raise StorageError(f"column {name} may not be null", url=self.url,
                                   table=t.name)
            new[name] = value
        return new

    def _check_unique(self, t: _Table, changes: Sequence[tuple[int | None, dict[str, Any]]],
                      columns: Iterable[str] | None = None) -> None:
        """Refuse changes that would give two rows the same primary or unique key of the
        schema (as the SQL backends do; Kamailio's db_text does not check). ``changes``
        are (row id or None for a new row, row as it would be); ``columns`` are the
        columns an update sets (keys without them cannot change). Null keys never clash.
        Rows already in the file are not checked against each other."""
        if not t.unique_keys:
            return
        changing = {rowid for rowid, _ in changes if rowid is not None}
        for key_columns in t.unique_keys:
            if columns is not None and set(columns).isdisjoint(key_columns):
                continue
            index = t.index(key_columns)
            claimed: set[tuple[Any, ...]] = set()
            for _, row in changes:
                key = tuple([row[c] for c in key_columns])
                if None in key:
                    continue
                holders = index.get(key, ())
                if key in claimed or any(h not in changing for h in holders):
                    shown = ", ".join(f"{c}={v!r}" for c, v in zip(key_columns, key, strict=True))
                    raise StorageError(f"duplicate key: a row with {shown} exists",
                                       url=self.url, table=t.name)
                claimed.add(key)

    def _assign_auto(self, t: _Table, row: dict[str, Any]) -> int | None:
        name = t.auto_name
        if name is None:
            return None
        value = row[name]
        if value is None:
            t.auto_value += 1
            row[name] = value = t.auto_value
        elif value > t.auto_value:
            t.auto_value = value
        return value

    async def _change(self, table: str, change: Callable[[_Table], tuple[bool, Any]]) -> Any:
        """Apply ``change`` (returns (changed?, result)) and get it to disk as the mode
        says. In write-through modes a failed write undoes the change."""
        t = await self._table(table)
        if not self.write_through:
            while t.reloading is not None:
                await t.reloading.wait()
            changed, result = change(t)
            if changed:
                t.generation += 1
                if self._dirty is not None:
                    self._dirty.set()
            return result
        async with t.io_lock:
            if not self.caching:
                t = await self._table_locked(table, t)
            saved_rows, saved_next, saved_auto = dict(t.rows), t.next_rowid, t.auto_value
            changed, result = change(t)
            if not changed:
                return result
            t.generation += 1
            try:
                await self._write(t)
            except StorageUnavailable:
                t.rows, t.next_rowid, t.auto_value = saved_rows, saved_next, saved_auto
                t.indexes.clear()
                t.saved_generation = t.generation = t.generation + 1
                if not self.caching:
                    t.signature = None  # read the file again before next use
                raise
            return result

    async def _table_locked(self, name: str, t: _Table) -> _Table:
        """Non-caching mode with ``t.io_lock`` held: re-read ``t`` if its file changed."""
        try:
            st = os.stat(t.path)
        except FileNotFoundError:
            raise StorageSchemaError(f"table file {t.path} was removed", url=self.url,
                                     table=name) from None
        if t.signature != _signature(st):
            await self._load(t)
        if t.broken is not None:
            raise t.broken
        return t

    async def insert(self, table: str, row: Mapping[str, Any]) -> int | None:
        """Insert one row; return its auto-increment value (None without an auto column).
        Missing columns take the schema's default, else null."""
        def change(t: _Table) -> tuple[bool, Any]:
            new = self._prepare_row(t, row)
            self._check_unique(t, [(None, new)])
            auto = self._assign_auto(t, new)
            t.add(new)
            return True, auto
        return await self._change(table, change)

    async def insert_many(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert rows: all of them or, if one is invalid, none."""
        if not rows:
            return
        first = set(rows[0])
        for row in rows:
            if set(row) != first:
                raise LocalProtocolError("storage: insert_many rows must have the same columns")

        def change(t: _Table) -> tuple[bool, Any]:
            prepared = [self._prepare_row(t, row) for row in rows]
            self._check_unique(t, [(None, new) for new in prepared])
            for new in prepared:
                self._assign_auto(t, new)
            for new in prepared:
                t.add(new)
            return True, None
        await self._change(table, change)

    def _prepare_values(self, t: _Table, values: Mapping[str, Any]) -> dict[str, Any]:
        if not values:
            raise LocalProtocolError("storage: update without values")
        self._check_columns(t, values)
        prepared = {name: t.coercers[name](value) for name, value in values.items()}
        for column in t.columns:
            if (column.name in prepared and prepared[column.name] is None
                    and not column.nullable):
                raise StorageError(f"column {column.name} may not be null",
                                   url=self.url, table=t.name)
        return prepared

    def _update_rows(self, t: _Table, rowids: Sequence[int], prepared: dict[str, Any]) -> None:
        rows = t.rows
        changed = frozenset(prepared)
        if rowids and not changed.isdisjoint(t.unique_columns):
            self._check_unique(t, [(rowid, {**rows[rowid], **prepared}) for rowid in rowids],
                               changed)
        for rowid in rowids:
            t.replace_row(rowid, {**rows[rowid], **prepared}, changed)
        auto = t.auto_name
        if auto is not None and auto in prepared and rowids:
            t.auto_value = max(t.auto_value, *(r[auto] for r in rows.values()))

    async def update(self, table: str, values: Mapping[str, Any], where: Where) -> int:
        """Set ``values`` in the rows matching ``where`` (``{}``: every row); return how
        many matched."""
        if where is None:
            raise LocalProtocolError(
                f"storage: update of {table} without where (pass {{}} to update every row)")
        def change(t: _Table) -> tuple[bool, Any]:
            prepared = self._prepare_values(t, values)
            rowids = self._find(t, where)
            self._update_rows(t, rowids, prepared)
            return bool(rowids), len(rowids)
        return await self._change(table, change)

    async def delete(self, table: str, where: Where | None = None) -> int:
        """Delete the rows matching ``where`` (all when None); return how many."""
        def change(t: _Table) -> tuple[bool, Any]:
            if not where:
                removed = len(t.rows)
                t.set_rows(())
            else:
                rowids = self._find(t, where)
                for rowid in rowids:
                    t.remove(rowid)
                removed = len(rowids)
            return removed > 0, removed
        return await self._change(table, change)

    async def replace(self, table: str, row: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Update the rows whose ``keys`` equal ``row``'s, or insert ``row``."""
        if not keys:
            raise LocalProtocolError("storage: replace needs key columns")
        for key in keys:
            if key not in row:
                raise LocalProtocolError(f"storage: replace key {key!r} is not in the row")

        def change(t: _Table) -> tuple[bool, Any]:
            prepared = self._prepare_values(t, row)
            rowids = self._find(t, {k: row[k] for k in keys})
            if rowids:
                self._update_rows(t, rowids, prepared)
            else:
                new = self._prepare_row(t, row)
                self._check_unique(t, [(None, new)])
                self._assign_auto(t, new)
                t.add(new)
            return True, None
        await self._change(table, change)

    # -- writing files ---------------------------------------------------------------

    async def _write(self, t: _Table) -> None:
        """Write ``t`` to its file (caller holds ``t.io_lock``).

        A cancelled caller still waits for the worker thread to finish before this
        returns (and the lock is released): otherwise a later, newer write could be
        renamed into place before this older one, which would then overwrite it.
        """
        generation = t.generation
        rows = list(t.rows.values())
        bad_lines = list(t.bad_lines)
        future = asyncio.ensure_future(asyncio.to_thread(
            _write_table, t.path, t.columns, rows, bad_lines, self.delimiter))
        cancelled = False
        while not future.done():
            try:
                await asyncio.shield(future)
            except asyncio.CancelledError:
                cancelled = True
            except BaseException:  # noqa: BLE001 - the future's own outcome, read below
                pass
        try:
            signature = future.result()
        except (OSError, ValueError) as exc:
            self._note_failure(f"cannot write {t.path}: {exc}")
            if cancelled:
                raise asyncio.CancelledError from exc
            raise StorageUnavailable(f"cannot write {t.path}: {exc}", url=self.url,
                                     table=t.name) from exc
        self._note_success()
        t.saved_generation = max(t.saved_generation, generation)
        t.signature = signature
        if cancelled:
            raise asyncio.CancelledError

    def _note_failure(self, message: str) -> None:
        if not self._failing:
            self._failing = True
            log.error("db_text: %s (further failures not logged until a write succeeds)",
                      message)

    def _note_success(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("db_text: writing to %s works again", self.directory)

    async def dump(self, table: str | None = None) -> list[str]:
        """Write back the modified tables (or ``table``, if modified); return the names
        written. The ``dbt.dump`` management command.

        :raises StorageUnavailable: a file could not be written (the table stays modified
            and is tried again by the next dump); the other tables are still written.
        """
        self._check_open()
        if table is not None:
            targets = [await self._table(table)]
        else:
            targets = [t for t in self._tables.values() if t.modified and t.broken is None]
        written: list[str] = []
        first_error: StorageUnavailable | None = None
        for t in targets:
            async with t.io_lock:
                if not t.modified or t.broken is not None:
                    continue
                try:
                    await self._write(t)
                except StorageUnavailable as exc:
                    first_error = first_error or exc
                    continue
            written.append(t.name)
        if first_error is not None:
            raise first_error
        return written

    async def _flush_loop(self) -> None:
        assert self._dirty is not None and self.flush_interval is not None
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.flush_interval)
            self._dirty.clear()
            try:
                await self.dump()
            except StorageError:
                self._dirty.set()  # logged once by _note_failure; try again later
            except Exception:
                log.exception("db_text: write-back failed")
                self._dirty.set()

    async def reload(self, table: str | None = None) -> list[str]:
        """Read tables again from their files, dropping unsaved changes (the
        ``dbt.reload`` management command). Without ``table``: every table, plus new
        files in the directory; tables whose file is gone are forgotten. Return the
        names read.

        :raises StorageSchemaError: after loading, if lines could not be read (each
            problem names file and line); the readable rows are in use.
        """
        self._check_open()
        if table is not None:
            check_identifier(table, "table")
            t = self._tables.get(table)
            if t is None:
                if not (self.directory / table).is_file():
                    raise StorageSchemaError(f"no table {table} in {self.directory}",
                                             url=self.url, table=table)
                t = self._tables.setdefault(table, _Table(table, self.directory / table))
            targets = [t]
        else:
            try:
                names = await asyncio.to_thread(_list_table_files, self.directory)
            except OSError as exc:
                raise StorageUnavailable(f"cannot list {self.directory}: {exc}",
                                         url=self.url) from exc
            for name in list(self._tables):
                if name not in names:
                    log.warning("db_text: table file %s is gone; table dropped",
                                self.directory / name)
                    del self._tables[name]
            targets = [self._tables.setdefault(n, _Table(n, self.directory / n))
                       for n in names]
        problems: list[str] = []
        reloaded: list[str] = []
        for t in targets:
            try:
                problems += await self._reload_table(t)
            except FileNotFoundError:
                self._tables.pop(t.name, None)
                continue
            reloaded.append(t.name)
        if problems:
            raise StorageSchemaError("unreadable lines: " + "; ".join(problems),
                                     url=self.url, table=table)
        return reloaded

    # -- creating tables -------------------------------------------------------------

    async def ensure_tables(self, tables: Iterable[str] | None = None) -> list[str]:
        """Create the schema tables that have no file yet (headers as Kamailio's kamdbctl
        writes them) and add each named table's ``version`` row when missing."""
        from siprouter.storage import schema

        self._check_open()
        if tables is None:
            names = [t.name for t in schema.METADATA.sorted_tables]
        else:
            names = list(tables)
        for name in names:
            if name not in schema.METADATA.tables:
                raise LocalProtocolError(f"storage: no table {name!r} in siprouter's schema")
        version = schema.VERSION_TABLE
        if names and version not in names and version in schema.METADATA.tables:
            names.insert(0, version)
        elif version in names:
            names.remove(version)
            names.insert(0, version)
        created: list[str] = []
        for name in names:
            if self.has_table(name):
                continue
            columns = table_columns_for_schema(schema.METADATA.tables[name])
            t = _Table(name, self.directory / name)
            t.set_columns(columns)
            data = format_header(columns).encode(ENCODING, ENCODING_ERRORS)
            try:
                t.signature = await asyncio.to_thread(
                    _write_file_atomically, t.path, data, replace=False)
            except FileExistsError:
                continue  # someone else created it: leave it as it is
            except OSError as exc:
                raise StorageUnavailable(f"cannot create {t.path}: {exc}", url=self.url,
                                         table=name) from exc
            self._tables[name] = t
            created.append(name)
        if self.has_table(version):
            have = {r["table_name"] for r in await self.select(version, ["table_name"])}
            missing = [{"table_name": n, "table_version": schema.KAMAILIO_TABLE_VERSIONS[n]}
                       for n in names
                       if n not in have and n in schema.KAMAILIO_TABLE_VERSIONS]
            if missing:
                await self.insert_many(version, missing)
                if not self.write_through:
                    await self.dump(version)
        return created
