# SPDX-License-Identifier: Apache-2.0
"""The db_text file format: one table per file, pure functions, no I/O.

How this works
--------------
A db_text table file (Kamailio's and OpenSIPS's ``db_text`` module) is UTF-8-ish text:

* line 1, the header: column definitions separated by one space, each
  ``name(type[,attr])``. Types: ``int``, ``double``, ``str`` (OpenSIPS and Kamailio),
  ``string``, ``blob``, ``time`` (Kamailio 5.6 writes these too); we also read
  ``datetime`` and ``integer``. Attributes: ``null`` (the column may be null) and
  ``auto`` (an int column whose value the database assigns: last value + 1).
* every further line is a row: fields separated by ``:``, in header order, one line per
  row, ending with ``\\n``. An empty field is null (for a not-null string column it is
  the empty string, as Kamailio's ``emptystring`` parameter reads it).
* in string and blob fields the characters newline, carriage return, tab, backslash,
  NUL and ``:`` are written as ``\\n \\r \\t \\\\ \\0 \\:``; any other character after a
  backslash is an error.

What we write is byte for byte what Kamailio 5.6's ``dbt_print_table`` writes
(``src/modules/db_text/dbt_file.c``): the header without a trailing space, ``null``
written in preference to ``auto`` when a column has both, ints as ``%d``, a ``time``
column as seconds since the epoch, doubles as ``%.2f``. That last one loses digits
(q=0.125 would be written 0.12), so a double that ``%.2f`` does not carry exactly is
written with the fewest fixed-point digits that read back to the same float (never with
an exponent, which Kamailio's reader does not accept). The kamdbctl templates Debian
ships (``/usr/share/kamailio/dbtext/kamailio/``) end the header with a space; we read
that and write the header as the db_text module does.

Reading is forgiving where Kamailio is (blank lines are skipped; we also accept CRLF line
ends) and strict where it matters: a row that cannot be read does not make the rest of
the table disappear. :func:`parse_table` returns it as a :class:`BadLine` (line number,
text, what was expected) and goes on; the caller reports it and keeps the line so that
writing the table back does not silently delete what an operator typed.

Values in memory: ``int`` and ``time`` columns hold ``int`` (or ``datetime`` for the
columns named in ``datetime_columns``: seconds since the epoch in the file, naive local
time in memory, as Kamailio converts ``DB1_DATETIME``), ``double`` holds ``float``,
``str``/``string`` hold ``str``, ``blob`` holds ``bytes``. The file is decoded as UTF-8
with ``surrogateescape`` so that bytes which are not UTF-8 survive a read and a write.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

__all__ = [
    "ColumnType",
    "Column",
    "BadLine",
    "ParsedTable",
    "DbTextFormatError",
    "DEFAULT_DELIMITER",
    "ENCODING",
    "ENCODING_ERRORS",
    "parse_header",
    "format_header",
    "parse_table",
    "format_row",
    "format_table",
    "escape",
    "unescape",
    "split_fields",
    "format_double",
    "datetime_to_epoch",
    "epoch_to_datetime",
]

#: Kamailio's ``db_delim`` module parameter defaults to ":" (``_dbt_delim``).
DEFAULT_DELIMITER = ":"
#: Files are bytes; we decode them so that any byte survives a read/write round trip.
ENCODING = "utf-8"
ENCODING_ERRORS = "surrogateescape"


class ColumnType(enum.Enum):
    """A column type as the header spells it; the value is the word Kamailio writes."""

    INT = "int"
    DOUBLE = "double"
    STR = "str"
    STRING = "string"
    BLOB = "blob"
    TIME = "time"

    @property
    def is_text(self) -> bool:
        """True for the types whose fields are escaped text (str, string, blob)."""
        return self in _TEXT_TYPES

    @property
    def is_integer(self) -> bool:
        """True for int and time (both are written as a decimal integer)."""
        return self is ColumnType.INT or self is ColumnType.TIME


_TEXT_TYPES = frozenset({ColumnType.STR, ColumnType.STRING, ColumnType.BLOB})

#: Type words we read (lower-cased) -> type. Kamailio reads by first letter ("s", "i",
#: "d", "b", "t"; a "s" word containing "i" is STRING); we accept the words people write.
_TYPE_WORDS: dict[str, ColumnType] = {
    "int": ColumnType.INT,
    "integer": ColumnType.INT,
    "double": ColumnType.DOUBLE,
    "str": ColumnType.STR,
    "string": ColumnType.STRING,
    "blob": ColumnType.BLOB,
    "time": ColumnType.TIME,
    "datetime": ColumnType.TIME,
}
_ATTRS = ("null", "auto")


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table header: ``name(type[,null][,auto])``."""

    name: str
    type: ColumnType
    nullable: bool = False
    auto: bool = False

    def header_text(self) -> str:
        """The column as Kamailio's ``dbt_print_table_header`` writes it."""
        if self.nullable:
            return f"{self.name}({self.type.value},null)"
        if self.auto and self.type is ColumnType.INT:
            return f"{self.name}({self.type.value},auto)"
        return f"{self.name}({self.type.value})"


class DbTextFormatError(ValueError):
    """A header or row that does not follow the format.

    :param line_no: 1-based line number in the file (the header is line 1).
    :param expected: what the reader expected there, for the operator.
    """

    def __init__(self, line_no: int, expected: str) -> None:
        super().__init__(f"line {line_no}: {expected}")
        self.line_no = line_no
        self.expected = expected


@dataclass(frozen=True, slots=True)
class BadLine:
    """A row line that could not be read: kept verbatim so writing back does not lose it."""

    line_no: int
    text: str
    expected: str


@dataclass(slots=True)
class ParsedTable:
    """What :func:`parse_table` read: header, good rows (dicts in file order), bad lines.

    ``max_auto`` is the largest value seen in the auto column (0 when none), the value
    the next insert continues from.
    """

    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    bad_lines: list[BadLine]
    max_auto: int


# ----------------------------------------------------------------------------- escapes

_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "0": "\x00"}
_needs_escape: dict[str, Callable[[str], re.Match[str] | None]] = {}


def _needs_escape_for(delimiter: str) -> Callable[[str], re.Match[str] | None]:
    search = _needs_escape.get(delimiter)
    if search is None:
        search = re.compile("[" + re.escape("\n\r\t\\\x00" + delimiter) + "]").search
        _needs_escape[delimiter] = search
    return search


def _escape_all(text: str, delimiter: str) -> str:
    # Backslash first: the later replacements add backslashes that must stay single.
    return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t").replace("\x00", "\\0").replace(delimiter, "\\" + delimiter))


def escape(text: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """Escape a string field: ``\\n \\r \\t \\\\ \\0`` and the delimiter (``\\:``)."""
    if _needs_escape_for(delimiter)(text) is None:
        return text
    return _escape_all(text, delimiter)


def unescape(field: str, delimiter: str = DEFAULT_DELIMITER) -> str:
    """Undo :func:`escape`.

    :raises ValueError: a backslash followed by anything but ``n r t \\ 0`` or the
        delimiter, or a backslash at the end.
    """
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while True:
        j = field.find("\\", i)
        if j < 0:
            out.append(field[i:])
            return "".join(out)
        out.append(field[i:j])
        out.append(_unescape_char(field[j + 1:j + 2], delimiter))
        i = j + 2


def _unescape_char(char: str, delimiter: str) -> str:
    if char == delimiter:
        return char
    replacement = _UNESCAPES.get(char)
    if replacement is None:
        if not char:
            raise ValueError("a backslash at the end of the line (escape it as \\\\)")
        raise ValueError(f"an escape \\n \\r \\t \\\\ \\0 or \\{delimiter} (found \\{char})")
    return replacement


def split_fields(line: str, delimiter: str = DEFAULT_DELIMITER) -> list[str]:
    """Split a row line at unescaped delimiters and unescape each field.

    :raises ValueError: on a bad escape (see :func:`unescape`).
    """
    if "\\" not in line:
        return line.split(delimiter)
    if "\\\\" in line or "\x00" in line:
        return _split_fields_scan(line, delimiter)
    # Common case (a SIP URI's "\:"): no escaped backslash, so every backslash starts a
    # two-character escape and the escapes cannot overlap. Mark the escaped delimiters
    # with NUL (not in the line), split, then undo the escapes by replacement.
    fields = line.replace("\\" + delimiter, "\x00").split(delimiter)
    for i, field in enumerate(fields):
        if "\x00" in field:
            field = field.replace("\x00", delimiter)
        if "\\" in field:
            field = (field.replace("\\n", "\n").replace("\\r", "\r").replace("\\t", "\t")
                     .replace("\\0", "\x00"))
            if "\\" in field:
                return _split_fields_scan(line, delimiter)  # raises, naming the escape
        fields[i] = field
    return fields


def _split_fields_scan(line: str, delimiter: str) -> list[str]:
    fields: list[str] = []
    parts: list[str] = []
    i = 0
    while True:
        backslash = line.find("\\", i)
        delim = line.find(delimiter, i)
        if delim >= 0 and (backslash < 0 or delim < backslash):
            parts.append(line[i:delim])
            fields.append("".join(parts))
            parts.clear()
            i = delim + 1
        elif backslash >= 0:
            parts.append(line[i:backslash])
            parts.append(_unescape_char(line[backslash + 1:backslash + 2], delimiter))
            i = backslash + 2
        else:
            parts.append(line[i:])
            fields.append("".join(parts))
            return fields


# ----------------------------------------------------------------------------- numbers, time

def format_double(value: float) -> str:
    """A double as Kamailio writes it (``%.2f``) when that reads back exactly, else the
    shortest fixed-point text that does (Kamailio's reader accepts any number of
    decimals but no exponent).

    :raises ValueError: NaN or infinity (the format has no spelling for them).
    """
    if not math.isfinite(value):
        raise ValueError(f"a finite number (found {value!r})")
    text = f"{value:.2f}"  # Kamailio: fprintf(fout, "%.2f", ...)
    if float(text) == value:
        return text
    return format(Decimal(repr(value)), "f")


def datetime_to_epoch(value: datetime) -> int:
    """Seconds since the epoch; a naive datetime is local time (as Kamailio's mktime)."""
    return math.floor(value.timestamp())


def epoch_to_datetime(seconds: int) -> datetime:
    """Naive local time for seconds since the epoch (as Kamailio's localtime)."""
    return datetime.fromtimestamp(seconds)


# ----------------------------------------------------------------------------- header

_COLUMN_RE = re.compile(r"\s*([^\s(]+)\s*\(([^)]*)\)")


def parse_header(line: str) -> tuple[Column, ...]:
    """Read the header line (``name(type[,attr]) ...``).

    :raises DbTextFormatError: (line 1) with what was expected where.
    """
    line = line.rstrip("\r\n")
    columns: list[Column] = []
    names: set[str] = set()
    auto_seen = False
    pos = 0
    end = len(line.rstrip())
    while pos < end:
        m = _COLUMN_RE.match(line, pos)
        if m is None:
            raise DbTextFormatError(
                1, f"a column definition name(type[,null|auto]) at character {pos + 1} "
                   f"(found {line[pos:pos + 20].strip()!r})")
        name, inner = m.group(1), m.group(2)
        words = [w.strip().lower() for w in inner.split(",")]
        ctype = _TYPE_WORDS.get(words[0])
        if ctype is None:
            raise DbTextFormatError(
                1, f"column {name!r}: a type int, double, str, string, blob or time "
                   f"(found {words[0]!r})")
        nullable = auto = False
        for attr in words[1:]:
            if attr == "null":
                nullable = True
            elif attr == "auto":
                if ctype is not ColumnType.INT:
                    raise DbTextFormatError(1, f"column {name!r}: auto only on an int column")
                if auto_seen:
                    raise DbTextFormatError(1, f"column {name!r}: only one auto column")
                auto = auto_seen = True
            else:
                raise DbTextFormatError(
                    1, f"column {name!r}: an attribute null or auto (found {attr!r})")
        if name in names:
            raise DbTextFormatError(1, f"column names once each ({name!r} is repeated)")
        names.add(name)
        columns.append(Column(name, ctype, nullable, auto))
        pos = m.end()
    if not columns:
        raise DbTextFormatError(1, "a header line with column definitions name(type)")
    return tuple(columns)


def format_header(columns: Sequence[Column]) -> str:
    """The header line as Kamailio writes it, with its newline."""
    return " ".join(c.header_text() for c in columns) + "\n"


# ----------------------------------------------------------------------------- rows

def _decoder(column: Column, as_datetime: bool, as_bytes: bool) -> Callable[[str], Any]:
    """A function field text (already unescaped) -> value, raising ValueError."""
    name = column.name
    nullable_or_auto = column.nullable or column.auto

    def empty() -> None:
        if not nullable_or_auto:
            raise ValueError(f"a value for not-null column {name!r} (the field is empty)")
        return None

    ctype = column.type
    if ctype.is_integer:
        if as_datetime or ctype is ColumnType.TIME:
            def decode(text: str) -> Any:
                return epoch_to_datetime(int(text)) if text else empty()
        else:
            def decode(text: str) -> Any:
                return int(text) if text else empty()
    elif ctype is ColumnType.DOUBLE:
        def decode(text: str) -> Any:
            if not text:
                return empty()
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(f"a finite number (found {text!r})")
            return value
    elif ctype is ColumnType.BLOB or (as_bytes and ctype.is_text):
        if column.nullable:
            def decode(text: str) -> Any:
                return text.encode(ENCODING, ENCODING_ERRORS) if text else None
        else:
            def decode(text: str) -> Any:
                return text.encode(ENCODING, ENCODING_ERRORS)
    else:
        if column.nullable:
            def decode(text: str) -> Any:
                return text or None
        else:
            def decode(text: str) -> Any:
                return text
    return decode


def _type_phrase(column: Column) -> str:
    return {ColumnType.INT: "an integer", ColumnType.TIME: "an integer (seconds)",
            ColumnType.DOUBLE: "a number"}.get(column.type, "text")


def parse_table(text: str, *, delimiter: str = DEFAULT_DELIMITER,
                datetime_columns: Collection[str] = (),
                binary_columns: Collection[str] = ()) -> ParsedTable:
    """Read a whole table file (already decoded, see :data:`ENCODING_ERRORS`).

    ``datetime_columns``: int columns whose values are ``datetime`` in memory (a ``time``
    column always is). ``binary_columns``: string columns whose values are ``bytes`` in
    memory (a ``blob`` column always is); kamdbctl writes binary columns as ``string``.

    Rows that cannot be read are returned in ``bad_lines``; the others in ``rows``.
    Rows whose auto column is empty get the next auto value (as Kamailio does).

    :raises DbTextFormatError: only for the header (without it nothing can be read).
    """
    lines = text.split("\n")
    if not lines or not lines[0].strip():
        raise DbTextFormatError(1, "a header line with column definitions name(type)")
    columns = parse_header(lines[0])
    names = [c.name for c in columns]
    decoders = [_decoder(c, c.name in datetime_columns, c.name in binary_columns)
                for c in columns]
    ncols = len(columns)
    auto_index = next((i for i, c in enumerate(columns) if c.auto), None)
    pairs = list(zip(names, decoders, strict=True))
    rows: list[dict[str, Any]] = []
    bad: list[BadLine] = []
    needs_auto: list[dict[str, Any]] = []
    max_auto = 0
    auto_name = names[auto_index] if auto_index is not None else ""
    for index in range(1, len(lines)):
        line = lines[index]
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            continue  # Kamailio skips empty lines (a one-column null row is lost there too)
        try:
            fields = split_fields(line, delimiter)
            if len(fields) != ncols:
                raise ValueError(f"{ncols} fields separated by {delimiter!r} "
                                 f"(found {len(fields)})")
            row = {name: decode(field) for (name, decode), field in zip(pairs, fields, strict=True)}
        except ValueError as exc:
            bad.append(BadLine(index + 1, line, _explain(exc, line, columns, decoders,
                                                          delimiter)))
            continue
        if auto_index is not None:
            value = row[auto_name]
            if value is None:
                needs_auto.append(row)
            elif value > max_auto:
                max_auto = value
        rows.append(row)
    for row in needs_auto:
        max_auto += 1
        row[auto_name] = max_auto
    return ParsedTable(columns, rows, bad, max_auto)


def _explain(exc: ValueError, line: str, columns: Sequence[Column],
             decoders: Sequence[Callable[[str], Any]], delimiter: str) -> str:
    """Name the column at fault (the fast path only knows that the row failed)."""
    try:
        fields = split_fields(line, delimiter)
    except ValueError as escape_error:
        return str(escape_error)
    if len(fields) != len(columns):
        return str(exc)
    for column, decode, field in zip(columns, decoders, fields, strict=True):
        try:
            decode(field)
        except ValueError as column_error:
            message = str(column_error)
            if message.startswith(("invalid literal", "could not convert")):
                message = f"{_type_phrase(column)} (found {field!r})"
            return f"column {column.name!r} ({column.type.value}): {message}"
    return str(exc)


def _encoder(column: Column, delimiter: str) -> Callable[[Any], str]:
    """A function value -> field text (escaped). None is the empty field."""
    ctype = column.type
    if ctype.is_integer:
        def encode(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, datetime):
                return str(datetime_to_epoch(value))
            return str(int(value))
    elif ctype is ColumnType.DOUBLE:
        def encode(value: Any) -> str:
            return "" if value is None else format_double(float(value))
    elif ctype.is_text:
        needs_escape = _needs_escape_for(delimiter)

        def encode(value: Any) -> str:
            if value is None:
                return ""
            if value.__class__ is not str:
                value = bytes(value).decode(ENCODING, ENCODING_ERRORS)
            if needs_escape(value) is None:
                return value
            return _escape_all(value, delimiter)
    else:
        raise AssertionError(ctype)
    return encode


def format_row(row: Mapping[str, Any], columns: Sequence[Column], *,
               delimiter: str = DEFAULT_DELIMITER) -> str:
    """One row line with its newline; columns missing from ``row`` are null."""
    return delimiter.join(_encoder(c, delimiter)(row.get(c.name)) for c in columns) + "\n"


def format_table(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]], *,
                 delimiter: str = DEFAULT_DELIMITER,
                 bad_lines: Iterable[BadLine] = ()) -> str:
    """The whole file: header, one line per row, then the kept unreadable lines.

    :raises ValueError: a value the format cannot hold (NaN, infinity).
    """
    encoders = [(c.name, _encoder(c, delimiter)) for c in columns]
    out = [format_header(columns)]
    append = out.append
    join = delimiter.join
    for row in rows:
        append(join([encode(row.get(name)) for name, encode in encoders]))
        append("\n")
    for bad in bad_lines:
        append(bad.text)
        append("\n")
    return "".join(out)
