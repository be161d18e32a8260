# SPDX-License-Identifier: Apache-2.0
"""The interface's helpers: URL masking and schemes, errors, condition checks, options."""

from __future__ import annotations

from pathlib import Path

import pytest

from siprouter.sip.errors import LocalProtocolError
from siprouter.storage import (
    BACKENDS,
    COND_OPS,
    Cond,
    StorageError,
    StorageSchemaError,
    StorageUnavailable,
    database_url,
    mask_url,
    open_storage,
    schema,
    url_scheme,
)
from siprouter.storage.base import check_where


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://kam:secret@db.example.com:5432/kam", "postgresql://kam:***@db.example.com:5432/kam"),
    ("mysql://kam:p%40ss:w@10.0.0.1/kam?charset=utf8", "mysql://kam:***@10.0.0.1/kam?charset=utf8"),
    ("mysql://kam@10.0.0.1/kam", "mysql://kam@10.0.0.1/kam"),
    ("sqlite:////var/lib/siprouter/siprouter.sqlite", "sqlite:////var/lib/siprouter/siprouter.sqlite"),
    ("text:///var/lib/kamailio/dbtext", "text:///var/lib/kamailio/dbtext"),
    ("not a url", "not a url"),
])
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_errors_carry_masked_url_and_table():
    err = StorageUnavailable("database unavailable", url="postgresql://u:pw@h/db", table="location")
    assert err.url == "postgresql://u:***@h/db" and err.table == "location"
    assert str(err) == "database unavailable (postgresql://u:***@h/db, table location)"
    assert isinstance(err, StorageError) and issubclass(StorageSchemaError, StorageError)
    assert str(StorageError("plain")) == "plain"


@pytest.mark.parametrize(("url", "scheme"), [
    ("sqlite:///x.sqlite", "sqlite"),
    ("SQLite+aiosqlite:///x.sqlite", "sqlite"),
    ("postgres://h/db", "postgres"),
    ("postgresql+asyncpg://h/db", "postgresql"),
    ("mariadb://h/db", "mariadb"),
    ("text:///dir", "text"),
])
def test_url_scheme(url, scheme):
    assert url_scheme(url) == scheme
    assert scheme in BACKENDS


@pytest.mark.parametrize("url", ["oracle://h/db", "/just/a/path", "redis://h"])
def test_unsupported_url_is_a_storage_error(url):
    with pytest.raises(StorageError, match="unsupported database URL"):
        open_storage(url)


def test_open_storage_picks_the_backend_by_scheme():
    from siprouter.storage.mysql import MysqlStorage
    from siprouter.storage.postgresql import PostgresStorage
    from siprouter.storage.sqlite import SqliteStorage

    assert type(open_storage("sqlite:///:memory:")) is SqliteStorage
    assert type(open_storage("postgresql://u:p@127.0.0.1/db")) is PostgresStorage
    assert type(open_storage("mysql://u:p@127.0.0.1/db")) is MysqlStorage
    assert type(open_storage("mariadb://u:p@127.0.0.1/db")) is MysqlStorage
    s = open_storage("postgresql://u:topsecret@127.0.0.1/db")
    assert "topsecret" not in repr(s) and "topsecret" not in str(s)
    assert s.scheme == "postgresql"


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://h/db?pool_size=0", "pool_size"),
    ("postgresql://h/db?retry_interval=-1", "retry_interval"),
    ("postgresql://h/db?bogus=1", "unknown option"),
    ("mysql://h/db?connect_timeout=nan", "connect_timeout"),
    ("sqlite:///x?synchronous=sometimes", "synchronous"),
    ("sqlite:///x?busy_timeout=0", "busy_timeout"),
])
def test_bad_options_are_storage_errors(url, message):
    with pytest.raises(StorageError, match=message):
        open_storage(url)


def test_keyword_options_override_the_url():
    s = open_storage("postgresql://h/db?pool_size=2", pool_size=9)
    assert s.pool_size == 9


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path):
    assert database_url(None, tmp_path) == f"sqlite:///{tmp_path}/siprouter.sqlite"
    assert database_url("mysql://h/db", tmp_path) == "mysql://h/db"


@pytest.mark.parametrize("where", [
    {"a": Cond("like", "x")},
    {"a": Cond("in", 5)},
    {"a": Cond("in", "abc")},
    {"a; DROP TABLE x": 1},
    {1: 2},
])
def test_check_where_refuses_misuse(where):
    with pytest.raises(LocalProtocolError):
        check_where(where)


def test_check_where_accepts_every_operator():
    assert COND_OPS == {"=", "!=", "<", "<=", ">", ">=", "in", "is null", "is not null"}
    check_where({f"c{i}": Cond(op, [1] if op == "in" else 1)
                 for i, op in enumerate(sorted(COND_OPS))})
    check_where(None)
    check_where({})


def test_schema_versions_and_kinds():
    assert schema.KAMAILIO_TABLE_VERSIONS["location"] == 9
    assert schema.KAMAILIO_TABLE_VERSIONS["subscriber"] == 7
    assert schema.KAMAILIO_TABLE_VERSIONS["version"] == 1
    assert schema.COLUMN_KINDS["location"]["expires"] == "datetime"
    assert schema.COLUMN_KINDS["location"]["q"] == "float"
    assert schema.COLUMN_KINDS["location"]["cseq"] == "int"
    assert schema.COLUMN_KINDS["subscriber"]["ha1"] == "str"
    assert set(schema.KAMAILIO_TABLE_VERSIONS) == set(schema.METADATA.tables)
