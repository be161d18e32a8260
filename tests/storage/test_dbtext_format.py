# SPDX-License-Identifier: Apache-2.0
"""The db_text file format (siprouter.storage.dbtext_format): pure functions, no files."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprouter.storage.dbtext_format import (
    BadLine,
    Column,
    ColumnType,
    DbTextFormatError,
    _split_fields_scan,
    escape,
    format_double,
    format_header,
    format_row,
    format_table,
    parse_header,
    parse_table,
    split_fields,
    unescape,
)

# The example table of the OpenSIPS/Kamailio db_text documentation (sip-servers-overview.txt).
OPENSIPS_SAMPLE = "id(int,auto) name(str) flag(double) desc(str,null)\n1:nick:0.34:a\\tgood\\: friend\n"


class TestEscapes:
    def test_each_escape_both_ways(self):
        assert escape("a\nb\rc\td\\e:f\x00g") == "a\\nb\\rc\\td\\\\e\\:f\\0g"
        assert unescape("a\\nb\\rc\\td\\\\e\\:f\\0g") == "a\nb\rc\td\\e:f\x00g"

    def test_plain_text_is_returned_as_is(self):
        text = "sip:alice@example.com"
        assert escape(text, delimiter="|") is text
        assert unescape(text) is text

    def test_other_delimiter(self):
        assert escape("a:b|c", delimiter="|") == "a:b\\|c"
        assert split_fields("a:b\\|c|d", delimiter="|") == ["a:b|c", "d"]

    @pytest.mark.parametrize("bad", ["a\\x", "a\\", "\\ "])
    def test_unknown_escape_is_an_error(self, bad):
        with pytest.raises(ValueError, match="escape|backslash"):
            unescape(bad)
        with pytest.raises(ValueError):
            split_fields(bad)

    @given(st.text())
    def test_round_trip(self, text):
        escaped = escape(text)
        assert "\n" not in escaped and "\r" not in escaped
        assert unescape(escaped) == text

    @given(st.text(alphabet="a:\\nrt0|\x00", max_size=30))
    def test_fast_split_agrees_with_the_scanner(self, line):
        try:
            expected = _split_fields_scan(line, ":")
        except ValueError:
            with pytest.raises(ValueError):
                split_fields(line)
        else:
            assert split_fields(line) == expected

    @given(st.lists(st.text(), min_size=1, max_size=6))
    def test_fields_round_trip(self, fields):
        line = ":".join(escape(f) for f in fields)
        assert split_fields(line) == fields


class TestHeader:
    def test_opensips_layout(self):
        columns = parse_header(OPENSIPS_SAMPLE.splitlines()[0])
        assert columns == (
            Column("id", ColumnType.INT, auto=True),
            Column("name", ColumnType.STR),
            Column("flag", ColumnType.DOUBLE),
            Column("desc", ColumnType.STR, nullable=True),
        )

    def test_kamailio_types(self):
        columns = parse_header("a(string) b(blob,null) c(time) d(datetime) e(integer) f(str)")
        assert [c.type for c in columns] == [ColumnType.STRING, ColumnType.BLOB,
                                             ColumnType.TIME, ColumnType.TIME, ColumnType.INT,
                                             ColumnType.STR]

    def test_kamdbctl_template_trailing_space_and_loose_spacing(self):
        assert parse_header("id(int,auto) x( string , null ) \n") == (
            Column("id", ColumnType.INT, auto=True), Column("x", ColumnType.STRING, nullable=True))

    def test_written_as_kamailio_does(self):
        columns = parse_header("id(int,auto,null) name(str) t(datetime) b(blob)")
        # Kamailio writes "null" in preference to "auto", "time" for datetime, no trailing space.
        assert format_header(columns) == "id(int,null) name(str) t(time) b(blob)\n"

    @pytest.mark.parametrize("line, expected", [
        ("id(int", "a column definition"),
        ("id(float)", "a type int, double, str, string, blob or time"),
        ("id(int,unique)", "an attribute null or auto"),
        ("name(str,auto)", "auto only on an int column"),
        ("a(int,auto) b(int,auto)", "only one auto column"),
        ("a(int) a(str)", "repeated"),
        ("   ", "a header line"),
    ])
    def test_errors_name_line_1_and_what_was_expected(self, line, expected):
        with pytest.raises(DbTextFormatError) as info:
            parse_header(line)
        assert info.value.line_no == 1
        assert expected in info.value.expected
        assert str(info.value).startswith("line 1: ")


class TestRows:
    def test_opensips_sample(self):
        table = parse_table(OPENSIPS_SAMPLE)
        assert table.rows == [{"id": 1, "name": "nick", "flag": 0.34, "desc": "a\tgood: friend"}]
        assert table.max_auto == 1
        assert table.bad_lines == []

    def test_empty_field_is_null_except_in_a_not_null_string_column(self):
        table = parse_table("a(int,null) b(str,null) c(str) d(double,null) e(blob,null)\n::::\n")
        assert table.rows == [{"a": None, "b": None, "c": "", "d": None, "e": None}]

    def test_empty_auto_field_gets_the_next_value(self):
        table = parse_table("id(int,auto) x(str)\n5:a\n:b\n")
        assert [r["id"] for r in table.rows] == [5, 6]
        assert table.max_auto == 6

    def test_blank_lines_and_crlf_and_no_final_newline(self):
        table = parse_table("a(int) b(str)\r\n1:x\r\n\n\n2:y")
        assert table.rows == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]

    def test_time_and_datetime_columns(self):
        table = parse_table("t(time) e(int) n(int)\n1700000000:1700000001:3\n",
                            datetime_columns={"e"})
        assert table.rows == [{"t": datetime.fromtimestamp(1700000000),
                               "e": datetime.fromtimestamp(1700000001), "n": 3}]

    def test_blob_and_binary_string_columns_are_bytes_and_keep_any_byte(self):
        raw = b"b(blob) s(string)\n\xff\\0\\:\xc3\xa9:\xff\n"
        text = raw.decode("utf-8", "surrogateescape")
        table = parse_table(text, binary_columns={"s"})
        assert table.rows == [{"b": b"\xff\x00:\xc3\xa9", "s": b"\xff"}]
        assert format_table(table.columns, table.rows).encode("utf-8", "surrogateescape") == raw

    def test_bad_lines_are_reported_with_line_and_expectation_and_the_rest_is_read(self):
        text = ("id(int,auto) name(str) q(double) note(str,null)\n"
                "1:alice:1.00:\n"          # line 2: good
                "two:bob:1.00:\n"          # line 3: not an int
                "3:carol:0.50\n"           # line 4: a field short
                "4:dave:1.00:x\\yz\n"      # line 5: bad escape
                "5:eve:high:\n"            # line 6: not a number
                "6::1.00:\n"               # line 7: good (empty not-null str is "")
                "7:frank::\n"              # line 8: empty not-null double
                "8:gina:1.00:ok\n")        # line 9: good
        table = parse_table(text)
        assert [r["name"] for r in table.rows] == ["alice", "", "gina"]
        got = {(b.line_no, b.expected) for b in table.bad_lines}
        assert got == {
            (3, "column 'id' (int): an integer (found 'two')"),
            (4, "4 fields separated by ':' (found 3)"),
            (5, "an escape \\n \\r \\t \\\\ \\0 or \\: (found \\y)"),
            (6, "column 'q' (double): a number (found 'high')"),
            (8, "column 'q' (double): a value for not-null column 'q' (the field is empty)"),
        }
        assert table.bad_lines[0] == BadLine(3, "two:bob:1.00:", table.bad_lines[0].expected)

    def test_bad_lines_are_written_back_after_the_rows(self):
        table = parse_table("a(int)\nx\n1\n")
        assert format_table(table.columns, table.rows, bad_lines=table.bad_lines) == "a(int)\n1\nx\n"

    def test_a_bad_header_is_an_error_on_line_1(self):
        with pytest.raises(DbTextFormatError, match="line 1"):
            parse_table("a(number)\n1\n")
        with pytest.raises(DbTextFormatError, match="line 1"):
            parse_table("")


class TestWriting:
    def test_row_as_kamailio_prints_it(self):
        columns = parse_header("id(int,auto) name(string) q(double) note(str,null) t(time,null) "
                               "b(blob,null)")
        row = {"id": 1, "name": "a:b", "q": 1.0, "note": None,
               "t": datetime.fromtimestamp(1700000000), "b": b"x\x00y"}
        assert format_row(row, columns) == "1:a\\:b:1.00::1700000000:x\\0y\n"

    @pytest.mark.parametrize("value, text", [
        (1.0, "1.00"), (0.5, "0.50"), (0.34, "0.34"), (-2.25, "-2.25"), (0.0, "0.00"),
        (1e20, "100000000000000000000.00"),
        # %.2f would lose these; the shortest exact fixed-point text, never an exponent:
        (0.125, "0.125"), (1e-05, "0.00001"), (0.1 + 0.2, "0.30000000000000004"),
    ])
    def test_doubles(self, value, text):
        assert format_double(value) == text
        assert float(text) == value

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_doubles_the_format_cannot_hold(self, value):
        with pytest.raises(ValueError):
            format_double(value)

    def test_bool_is_written_as_an_int(self):
        assert format_row({"a": True}, parse_header("a(int)")) == "1\n"

    @given(st.lists(st.fixed_dictionaries({
        "i": st.none() | st.integers(-2**31, 2**31 - 1),
        "d": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "s": st.text(),
        "n": st.none() | st.text(min_size=1),
        "b": st.none() | st.binary(min_size=1),
    }), max_size=5))
    def test_table_round_trip(self, rows):
        columns = parse_header("i(int,null) d(double,null) s(string) n(str,null) b(blob,null)")
        text = format_table(columns, rows)
        parsed = parse_table(text)
        assert parsed.rows == rows
        assert parsed.bad_lines == []
        assert format_table(parsed.columns, parsed.rows) == text

    def test_a_one_column_null_row_is_a_blank_line_and_lost_as_in_kamailio(self):
        columns = parse_header("n(str,null)")
        text = format_table(columns, [{"n": None}, {"n": "x"}])
        assert text == "n(str,null)\n\nx\n"
        assert parse_table(text).rows == [{"n": "x"}]
