# SPDX-License-Identifier: Apache-2.0
"""Kamailio 5.6's tables as SQLAlchemy Core ``Table`` objects: the one schema definition.

Every SQL backend creates its tables from ``METADATA`` (Alembic's baseline migration runs
``create_all`` on it, skipping tables that exist), and db_text uses the same columns and
types to write its table headers. Table and column names, types, defaults, NULL-ability,
unique constraints and indexes follow the ``*-create.sql`` files that Kamailio 5.6 generates
from its XML schema (``utils/kamctl/{postgres,mysql,db_sqlite}``; Debian ships them in
``/usr/share/kamailio``). Each table's ``info`` carries the Kamailio module that owns it and
its ``version`` row value; ``KAMAILIO_TABLE_VERSIONS`` collects the latter.

Types per dialect, as Kamailio declares them:

=================  ==========================  =======================  ====================
here               PostgreSQL                  MySQL / MariaDB          SQLite
=================  ==========================  =======================  ====================
``_id()``          SERIAL PRIMARY KEY          INT(10) UNSIGNED         INTEGER PRIMARY KEY
                                               AUTO_INCREMENT PK        (the rowid)
``Integer()``      INTEGER                     INT(11)                  INTEGER
``UINT``           INTEGER                     INT UNSIGNED             INTEGER
``USMALLINT``      SMALLINT                    SMALLINT UNSIGNED        SMALLINT
``String(n)``      VARCHAR(n)                  VARCHAR(n)               VARCHAR(n)
``DateTime()``     TIMESTAMP WITHOUT TIME ZONE DATETIME                 DATETIME
``REAL2/REAL3``    REAL                        FLOAT(10,2) / (10,3)     REAL
``Text()``         TEXT                        TEXT                     TEXT
``LargeBinary()``  BYTEA                       BLOB                     BLOB
=================  ==========================  =======================  ====================

Index names are PostgreSQL's (``<table>_<name>``) on every backend; Kamailio's MySQL files use
the bare ``<name>``. Kamailio never refers to index names, so both work with its modules.

Kamailio's db_sqlite declares datetime columns ``TIMESTAMP WITHOUT TIME ZONE``; ``DATETIME``
here maps to the same affinity (NUMERIC) and to the same db_sqlite type (its declared-type
scan looks for ``DATE``/``TIME``).

To add a table: add its ``Table`` here with ``info={"kamailio_version": N,
"kamailio_module": "..."}`` (``"siprouter"`` for tables of our own, version 1) and an Alembic
migration that creates it (``siprouter/storage/migrations/versions``).
"""

from __future__ import annotations

from sqlalchemy import (
    REAL,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql

__all__ = [
    "METADATA",
    "KAMAILIO_TABLE_VERSIONS",
    "TABLE_MODULES",
    "VERSION_TABLE",
    "column_kinds",
    "COLUMN_KINDS",
    "table",
]

METADATA = MetaData()

# The Kamailio table that records each table's schema version (kamdbctl writes one row per
# table it creates; modules refuse to start on a mismatch).
VERSION_TABLE = "version"

_MY = ("mysql", "mariadb")
UINT = Integer().with_variant(mysql.INTEGER(unsigned=True), *_MY)
USMALLINT = SmallInteger().with_variant(mysql.SMALLINT(unsigned=True), *_MY)
REAL2 = REAL().with_variant(mysql.FLOAT(precision=10, scale=2), *_MY)
REAL3 = REAL().with_variant(mysql.FLOAT(precision=10, scale=3), *_MY)
_ID_TYPE = Integer().with_variant(mysql.INTEGER(display_width=10, unsigned=True), *_MY)


def _id() -> Column:
    """Kamailio's auto-increment primary key ``id``."""
    return Column("id", _ID_TYPE, primary_key=True, autoincrement=True, nullable=False)


# Generated tables follow, one block per Kamailio module, in kamdbctl's order.

Table(
    "version",
    METADATA,
    _id(),
    Column("table_name", String(32), nullable=False),
    Column("table_version", UINT, nullable=False, server_default=text("0")),
    UniqueConstraint("table_name", name="version_table_name_idx"),
    info={"kamailio_version": 1, "kamailio_module": "standard"},
)

Table(
    "subscriber",
    METADATA,
    _id(),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64), nullable=False, server_default=""),
    Column("password", String(64), nullable=False, server_default=""),
    Column("ha1", String(128), nullable=False, server_default=""),
    Column("ha1b", String(128), nullable=False, server_default=""),
    UniqueConstraint("username", "domain", name="subscriber_account_idx"),
    Index("subscriber_username_idx", "username"),
    info={"kamailio_version": 7, "kamailio_module": "auth_db"},
)

Table(
    "location",
    METADATA,
    _id(),
    Column("ruid", String(64), nullable=False, server_default=""),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64)),
    Column("contact", String(512), nullable=False, server_default=""),
    Column("received", String(128)),
    Column("path", String(512)),
    Column("expires", DateTime(), nullable=False, server_default="2030-05-28 21:32:15"),
    Column("q", REAL2, nullable=False, server_default=text("1.0")),
    Column("callid", String(255), nullable=False, server_default="Default-Call-ID"),
    Column("cseq", Integer(), nullable=False, server_default=text("1")),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    Column("flags", Integer(), nullable=False, server_default=text("0")),
    Column("cflags", Integer(), nullable=False, server_default=text("0")),
    Column("user_agent", String(255), nullable=False, server_default=""),
    Column("socket", String(64)),
    Column("methods", Integer()),
    Column("instance", String(255)),
    Column("reg_id", Integer(), nullable=False, server_default=text("0")),
    Column("server_id", Integer(), nullable=False, server_default=text("0")),
    Column("connection_id", Integer(), nullable=False, server_default=text("0")),
    Column("keepalive", Integer(), nullable=False, server_default=text("0")),
    Column("partition", Integer(), nullable=False, server_default=text("0")),
    UniqueConstraint("ruid", name="location_ruid_idx"),
    Index("location_account_contact_idx", "username", "domain", "contact"),
    Index("location_expires_idx", "expires"),
    Index("location_tcpcon_idx", "connection_id"),
    Index("location_connection_idx", "server_id", "connection_id"),
    info={"kamailio_version": 9, "kamailio_module": "usrloc"},
)

Table(
    "location_attrs",
    METADATA,
    _id(),
    Column("ruid", String(64), nullable=False, server_default=""),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64)),
    Column("aname", String(64), nullable=False, server_default=""),
    Column("atype", Integer(), nullable=False, server_default=text("0")),
    Column("avalue", String(512), nullable=False, server_default=""),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    Index("location_attrs_account_record_idx", "username", "domain", "ruid"),
    Index("location_attrs_last_modified_idx", "last_modified"),
    info={"kamailio_version": 1, "kamailio_module": "usrloc"},
)

Table(
    "aliases",
    METADATA,
    _id(),
    Column("ruid", String(64), nullable=False, server_default=""),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64)),
    Column("contact", String(255), nullable=False, server_default=""),
    Column("received", String(255)),
    Column("path", String(512)),
    Column("expires", DateTime(), nullable=False, server_default="2030-05-28 21:32:15"),
    Column("q", REAL2, nullable=False, server_default=text("1.0")),
    Column("callid", String(255), nullable=False, server_default="Default-Call-ID"),
    Column("cseq", Integer(), nullable=False, server_default=text("1")),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    Column("flags", Integer(), nullable=False, server_default=text("0")),
    Column("cflags", Integer(), nullable=False, server_default=text("0")),
    Column("user_agent", String(255), nullable=False, server_default=""),
    Column("socket", String(64)),
    Column("methods", Integer()),
    Column("instance", String(255)),
    Column("reg_id", Integer(), nullable=False, server_default=text("0")),
    Column("server_id", Integer(), nullable=False, server_default=text("0")),
    Column("connection_id", Integer(), nullable=False, server_default=text("0")),
    Column("keepalive", Integer(), nullable=False, server_default=text("0")),
    Column("partition", Integer(), nullable=False, server_default=text("0")),
    UniqueConstraint("ruid", name="aliases_ruid_idx"),
    Index("aliases_account_contact_idx", "username", "domain", "contact"),
    Index("aliases_expires_idx", "expires"),
    info={"kamailio_version": 8, "kamailio_module": "registrar"},
)

Table(
    "dispatcher",
    METADATA,
    _id(),
    Column("setid", Integer(), nullable=False, server_default=text("0")),
    Column("destination", String(192), nullable=False, server_default=""),
    Column("flags", Integer(), nullable=False, server_default=text("0")),
    Column("priority", Integer(), nullable=False, server_default=text("0")),
    Column("attrs", String(128), nullable=False, server_default=""),
    Column("description", String(64), nullable=False, server_default=""),
    info={"kamailio_version": 4, "kamailio_module": "dispatcher"},
)

Table(
    "trusted",
    METADATA,
    _id(),
    Column("src_ip", String(50), nullable=False),
    Column("proto", String(4), nullable=False),
    Column("from_pattern", String(64)),
    Column("ruri_pattern", String(64)),
    Column("tag", String(64)),
    Column("priority", Integer(), nullable=False, server_default=text("0")),
    Index("trusted_peer_idx", "src_ip"),
    info={"kamailio_version": 6, "kamailio_module": "permissions"},
)

Table(
    "address",
    METADATA,
    _id(),
    Column("grp", UINT, nullable=False, server_default=text("1")),
    Column("ip_addr", String(50), nullable=False),
    Column("mask", Integer(), nullable=False, server_default=text("32")),
    Column("port", USMALLINT, nullable=False, server_default=text("0")),
    Column("tag", String(64)),
    info={"kamailio_version": 6, "kamailio_module": "permissions"},
)

Table(
    "acc",
    METADATA,
    _id(),
    Column("method", String(16), nullable=False, server_default=""),
    Column("from_tag", String(128), nullable=False, server_default=""),
    Column("to_tag", String(128), nullable=False, server_default=""),
    Column("callid", String(255), nullable=False, server_default=""),
    Column("sip_code", String(3), nullable=False, server_default=""),
    Column("sip_reason", String(128), nullable=False, server_default=""),
    Column("time", DateTime(), nullable=False),
    Index("acc_callid_idx", "callid"),
    info={"kamailio_version": 5, "kamailio_module": "acc"},
)

Table(
    "acc_cdrs",
    METADATA,
    _id(),
    Column("start_time", DateTime(), nullable=False, server_default="2000-01-01 00:00:00"),
    Column("end_time", DateTime(), nullable=False, server_default="2000-01-01 00:00:00"),
    Column("duration", REAL3, nullable=False, server_default=text("0")),
    Index("acc_cdrs_start_time_idx", "start_time"),
    info={"kamailio_version": 2, "kamailio_module": "acc"},
)

Table(
    "missed_calls",
    METADATA,
    _id(),
    Column("method", String(16), nullable=False, server_default=""),
    Column("from_tag", String(128), nullable=False, server_default=""),
    Column("to_tag", String(128), nullable=False, server_default=""),
    Column("callid", String(255), nullable=False, server_default=""),
    Column("sip_code", String(3), nullable=False, server_default=""),
    Column("sip_reason", String(128), nullable=False, server_default=""),
    Column("time", DateTime(), nullable=False),
    Index("missed_calls_callid_idx", "callid"),
    info={"kamailio_version": 4, "kamailio_module": "acc"},
)

Table(
    "dialog",
    METADATA,
    _id(),
    Column("hash_entry", UINT, nullable=False),
    Column("hash_id", UINT, nullable=False),
    Column("callid", String(255), nullable=False),
    Column("from_uri", String(255), nullable=False),
    Column("from_tag", String(128), nullable=False),
    Column("to_uri", String(255), nullable=False),
    Column("to_tag", String(128), nullable=False),
    Column("caller_cseq", String(20), nullable=False),
    Column("callee_cseq", String(20), nullable=False),
    Column("caller_route_set", String(512)),
    Column("callee_route_set", String(512)),
    Column("caller_contact", String(255), nullable=False),
    Column("callee_contact", String(255), nullable=False),
    Column("caller_sock", String(64), nullable=False),
    Column("callee_sock", String(64), nullable=False),
    Column("state", UINT, nullable=False),
    Column("start_time", UINT, nullable=False),
    Column("timeout", UINT, nullable=False, server_default=text("0")),
    Column("sflags", UINT, nullable=False, server_default=text("0")),
    Column("iflags", UINT, nullable=False, server_default=text("0")),
    Column("toroute_name", String(32)),
    Column("req_uri", String(255), nullable=False),
    Column("xdata", String(512)),
    Index("dialog_hash_idx", "hash_entry", "hash_id"),
    info={"kamailio_version": 7, "kamailio_module": "dialog"},
)

Table(
    "dialog_vars",
    METADATA,
    _id(),
    Column("hash_entry", UINT, nullable=False),
    Column("hash_id", UINT, nullable=False),
    Column("dialog_key", String(128), nullable=False),
    Column("dialog_value", String(512), nullable=False),
    Index("dialog_vars_hash_idx", "hash_entry", "hash_id"),
    info={"kamailio_version": 1, "kamailio_module": "dialog"},
)

Table(
    "domain",
    METADATA,
    _id(),
    Column("domain", String(64), nullable=False),
    Column("did", String(64)),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    UniqueConstraint("domain", name="domain_domain_idx"),
    info={"kamailio_version": 2, "kamailio_module": "domain"},
)

Table(
    "domain_attrs",
    METADATA,
    _id(),
    Column("did", String(64), nullable=False),
    Column("name", String(32), nullable=False),
    Column("type", UINT, nullable=False),
    Column("value", String(255), nullable=False),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    Index("domain_attrs_domain_attrs_idx", "did", "name"),
    info={"kamailio_version": 1, "kamailio_module": "domain"},
)

Table(
    "dbaliases",
    METADATA,
    _id(),
    Column("alias_username", String(64), nullable=False, server_default=""),
    Column("alias_domain", String(64), nullable=False, server_default=""),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64), nullable=False, server_default=""),
    Index("dbaliases_alias_user_idx", "alias_username"),
    Index("dbaliases_alias_idx", "alias_username", "alias_domain"),
    Index("dbaliases_target_idx", "username", "domain"),
    info={"kamailio_version": 1, "kamailio_module": "alias_db"},
)

Table(
    "speed_dial",
    METADATA,
    _id(),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64), nullable=False, server_default=""),
    Column("sd_username", String(64), nullable=False, server_default=""),
    Column("sd_domain", String(64), nullable=False, server_default=""),
    Column("new_uri", String(255), nullable=False, server_default=""),
    Column("fname", String(64), nullable=False, server_default=""),
    Column("lname", String(64), nullable=False, server_default=""),
    Column("description", String(64), nullable=False, server_default=""),
    UniqueConstraint("username", "domain", "sd_domain", "sd_username", name="speed_dial_speed_dial_idx"),
    info={"kamailio_version": 2, "kamailio_module": "speeddial"},
)

Table(
    "dialplan",
    METADATA,
    _id(),
    Column("dpid", Integer(), nullable=False),
    Column("pr", Integer(), nullable=False),
    Column("match_op", Integer(), nullable=False),
    Column("match_exp", String(64), nullable=False),
    Column("match_len", Integer(), nullable=False),
    Column("subst_exp", String(64), nullable=False),
    Column("repl_exp", String(256), nullable=False),
    Column("attrs", String(64), nullable=False),
    info={"kamailio_version": 2, "kamailio_module": "dialplan"},
)

Table(
    "htable",
    METADATA,
    _id(),
    Column("key_name", String(64), nullable=False, server_default=""),
    Column("key_type", Integer(), nullable=False, server_default=text("0")),
    Column("value_type", Integer(), nullable=False, server_default=text("0")),
    Column("key_value", String(128), nullable=False, server_default=""),
    Column("expires", Integer(), nullable=False, server_default=text("0")),
    info={"kamailio_version": 2, "kamailio_module": "htable"},
)

Table(
    "usr_preferences",
    METADATA,
    _id(),
    Column("uuid", String(64), nullable=False, server_default=""),
    Column("username", String(255), nullable=False, server_default=text("0")),
    Column("domain", String(64), nullable=False, server_default=""),
    Column("attribute", String(32), nullable=False, server_default=""),
    Column("type", Integer(), nullable=False, server_default=text("0")),
    Column("value", String(128), nullable=False, server_default=""),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    Index("usr_preferences_ua_idx", "uuid", "attribute"),
    Index("usr_preferences_uda_idx", "username", "domain", "attribute"),
    info={"kamailio_version": 2, "kamailio_module": "avpops"},
)

Table(
    "grp",
    METADATA,
    _id(),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64), nullable=False, server_default=""),
    Column("grp", String(64), nullable=False, server_default=""),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    UniqueConstraint("username", "domain", "grp", name="grp_account_group_idx"),
    info={"kamailio_version": 2, "kamailio_module": "group"},
)

Table(
    "re_grp",
    METADATA,
    _id(),
    Column("reg_exp", String(128), nullable=False, server_default=""),
    Column("group_id", Integer(), nullable=False, server_default=text("0")),
    Index("re_grp_group_idx", "group_id"),
    info={"kamailio_version": 1, "kamailio_module": "group"},
)

Table(
    "uri",
    METADATA,
    _id(),
    Column("username", String(64), nullable=False, server_default=""),
    Column("domain", String(64), nullable=False, server_default=""),
    Column("uri_user", String(64), nullable=False, server_default=""),
    Column("last_modified", DateTime(), nullable=False, server_default="2000-01-01 00:00:01"),
    UniqueConstraint("username", "domain", "uri_user", name="uri_account_idx"),
    info={"kamailio_version": 1, "kamailio_module": "uri_db"},
)


KAMAILIO_TABLE_VERSIONS: dict[str, int] = {
    t.name: t.info["kamailio_version"] for t in METADATA.sorted_tables
}
"""Table name -> the ``table_version`` Kamailio 5.6 writes in the ``version`` table."""

TABLE_MODULES: dict[str, str] = {t.name: t.info["kamailio_module"] for t in METADATA.sorted_tables}
"""Table name -> the Kamailio module (schema file) it belongs to."""


def table(name: str) -> Table:
    """The ``Table`` called ``name``; ``KeyError`` when the schema has none."""
    return METADATA.tables[name]


# A column's kind: how a backend converts values (int, float, str, bytes, datetime).
def _kind(column: Column) -> str:
    t = column.type
    if isinstance(t, DateTime):
        return "datetime"
    if isinstance(t, Integer):  # SmallInteger is an Integer
        return "int"
    if isinstance(t, REAL):
        return "float"
    if isinstance(t, LargeBinary):
        return "bytes"
    if isinstance(t, String | Text):
        return "str"
    raise TypeError(f"no value kind for column {column} of type {t!r}")


def column_kinds(tbl: Table) -> dict[str, str]:
    """Column name -> ``"int"``, ``"float"``, ``"str"``, ``"bytes"`` or ``"datetime"``."""
    return {c.name: _kind(c) for c in tbl.columns}


COLUMN_KINDS: dict[str, dict[str, str]] = {t.name: column_kinds(t) for t in METADATA.sorted_tables}
"""Table name -> column name -> kind, for every table of the schema."""
