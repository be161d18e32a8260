# SPDX-License-Identifier: Apache-2.0
"""``siprouter db init`` and ``siprouter db migrate``: create or upgrade a database.

How this works
--------------
SQL databases are upgraded by Alembic (``siprouter/storage/migrations``), which records
siprouter's own revision in the table ``siprouter_alembic_version``. Kamailio's tables keep
their per-table ``version`` rows, which Kamailio's modules and kamctl check; the two never
mix. The first revision (``0001``, the baseline) creates each Kamailio 5.6 table that is
missing and each missing ``version`` row, and leaves existing tables and their rows alone.
So on a database made by kamdbctl, or by the ``*-create.sql`` files Debian's kamailio
packages ship, ``migrate`` "stamps" it: it adds only what siprouter needs (its revision
table, any table it uses that the operator did not create) without touching Kamailio's data.

``init`` is for a new database: it refuses one that already has siprouter's or Kamailio's
tables (use ``migrate`` there). Both report what they did (``MigrationReport``), including
tables whose ``version`` row differs from Kamailio 5.6's (left as they are: upgrading
Kamailio's own tables is kamdbctl's job).

Alembic runs synchronously on a SQLAlchemy connection; here it runs inside SQLAlchemy's
asyncio engine (``AsyncConnection.run_sync``) on the same drivers as the backends, so no
second (blocking) driver is needed. This is a one-off command, not a hot path.

db_text (``text:///DIR``) has no Alembic: ``init``/``migrate`` create the missing table files
and ``version`` rows through ``Storage.ensure_tables``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from siprouter.storage import open_storage, schema, url_scheme
from siprouter.storage.base import StorageError, StorageUnavailable, mask_url

__all__ = [
    "ALEMBIC_VERSION_TABLE",
    "MIGRATIONS_DIR",
    "MigrationReport",
    "DatabaseNotEmpty",
    "init_database",
    "migrate_database",
    "head_revision",
    "ddl_for_missing_tables",
    "ensure_schema",
]

log = logging.getLogger("siprouter.storage.migrate")

# Where Alembic keeps siprouter's revision (not "alembic_version": an operator's database
# may already use Alembic for something else).
ALEMBIC_VERSION_TABLE = "siprouter_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Scheme -> SQLAlchemy's name for the same async driver the backend uses.
_SA_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}


class DatabaseNotEmpty(StorageError):
    """``init`` on a database that already has siprouter's or Kamailio's tables."""


@dataclass
class MigrationReport:
    """What ``init_database`` / ``migrate_database`` found and did."""

    url: str  # password masked
    revision_before: str | None = None
    revision_after: str | None = None
    tables_found: list[str] = field(default_factory=list)  # schema tables present before
    tables_created: list[str] = field(default_factory=list)
    version_rows_added: list[str] = field(default_factory=list)
    # table -> (version found, Kamailio 5.6's) for existing tables that differ
    version_mismatches: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def stamped(self) -> bool:
        """True when an existing SQL database without siprouter's revision was adopted."""
        return (self.revision_before is None and self.revision_after is not None
                and bool(self.tables_found))

    def lines(self) -> list[str]:
        """The report as lines for the operator."""
        out = [f"database: {self.url}"]
        if self.revision_after is None:  # db_text: tables and version rows, no revisions
            if not self.tables_created and not self.version_rows_added:
                out.append("every table exists: nothing to do")
        elif self.revision_before == self.revision_after:
            nothing = not self.tables_created and not self.version_rows_added
            out.append(f"already at revision {self.revision_after}"
                       + (": nothing to do" if nothing else ""))
        elif self.stamped:
            out.append(f"existing database with {len(self.tables_found)} of siprouter's "
                       f"tables adopted (stamped at revision {self.revision_after}); "
                       "existing tables and rows were not changed")
        else:
            out.append(f"revision {self.revision_before or '(none)'} -> {self.revision_after}")
        if self.tables_created:
            out.append(f"tables created ({len(self.tables_created)}): "
                       + ", ".join(self.tables_created))
        if self.version_rows_added:
            out.append(f"version rows added ({len(self.version_rows_added)}): "
                       + ", ".join(self.version_rows_added))
        for table, (found, expected) in sorted(self.version_mismatches.items()):
            out.append(f"warning: table {table} has version {found}, Kamailio 5.6 has "
                       f"{expected}; left as it is (upgrade it with Kamailio's kamdbctl)")
        return out


def ddl_for_missing_tables(dialect: Dialect, tables: Iterable[str]) -> list[str]:
    """CREATE TABLE and CREATE INDEX statements for ``tables`` of the schema, as text in
    ``dialect``'s SQL."""
    out = []
    for name in tables:
        t = schema.METADATA.tables[name]
        out.append(str(CreateTable(t).compile(dialect=dialect)).strip())
        for index in sorted(t.indexes, key=lambda i: i.name or ""):
            out.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return out


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision of siprouter's migrations."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def _engine_for(url: str) -> Any:
    """A SQLAlchemy async engine (no pool) for a backend URL, with the backend's options."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    storage = open_storage(url)  # parses and validates the URL and its options
    sa_url = storage.sa_url.set(drivername=_SA_DRIVERS[url_scheme(url)])  # type: ignore[attr-defined]
    connect_args: dict[str, Any] = {}
    scheme = storage.scheme
    if scheme == "mysql":
        connect_args["charset"] = storage.charset  # type: ignore[attr-defined]
        if storage.unix_socket:  # type: ignore[attr-defined]
            connect_args["unix_socket"] = storage.unix_socket  # type: ignore[attr-defined]
        connect_args["connect_timeout"] = storage.connect_timeout  # type: ignore[attr-defined]
    elif scheme == "postgresql":
        connect_args["timeout"] = storage.connect_timeout  # type: ignore[attr-defined]
        if storage.ssl:  # type: ignore[attr-defined]
            connect_args["ssl"] = storage.ssl  # type: ignore[attr-defined]
    elif scheme == "sqlite":
        path = storage.path  # type: ignore[attr-defined]
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    return create_async_engine(sa_url, poolclass=NullPool, connect_args=connect_args)


def ensure_schema(conn: Any, tables: Iterable[str] | None = None) -> None:
    """Create each schema table of ``tables`` (all when None) that is missing, with its
    indexes, and each missing ``version`` row, on a synchronous SQLAlchemy connection.
    Existing tables and rows are left as they are. The baseline migration runs this."""
    names = list(schema.METADATA.tables) if tables is None else list(tables)
    if schema.VERSION_TABLE not in names:
        names.insert(0, schema.VERSION_TABLE)
    schema.METADATA.create_all(conn, tables=[schema.METADATA.tables[n] for n in names],
                               checkfirst=True)
    present = set(_versions(conn))
    missing = [{"table_name": n, "table_version": schema.KAMAILIO_TABLE_VERSIONS[n]}
               for n in names if n not in present]
    if missing:
        conn.execute(schema.table(schema.VERSION_TABLE).insert(), missing)


def _versions(conn: Any) -> dict[str, int]:
    version = schema.table(schema.VERSION_TABLE)
    rows = conn.execute(sa.select(version.c.table_name, version.c.table_version))
    return {name: int(v) for name, v in rows}


def _upgrade(conn: Any, report: MigrationReport, require_empty: bool) -> None:
    """Runs in ``run_sync``: inspect, upgrade to head, inspect again."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    before = set(sa.inspect(conn).get_table_names())
    report.tables_found = sorted(before & set(schema.METADATA.tables))
    ctx = MigrationContext.configure(conn, opts={"version_table": ALEMBIC_VERSION_TABLE})
    report.revision_before = ctx.get_current_revision()
    if require_empty and (report.tables_found or report.revision_before):
        raise DatabaseNotEmpty(
            "the database already has siprouter's or Kamailio's tables "
            f"({', '.join(report.tables_found[:5])}{' …' if len(report.tables_found) > 5 else ''}"
            "); use `siprouter db migrate` to adopt or upgrade it", url=report.url)
    versions_before = _versions(conn) if schema.VERSION_TABLE in before else {}
    command.upgrade(_alembic_config(conn), "head")
    # At head already, nothing ran: still put back a table (and version row) that someone
    # dropped. Tables that exist are never touched.
    ensure_schema(conn)
    after = set(sa.inspect(conn).get_table_names())
    report.tables_created = [t.name for t in schema.METADATA.sorted_tables
                             if t.name in after and t.name not in before]
    versions_after = _versions(conn)
    report.version_rows_added = sorted(set(versions_after) - set(versions_before))
    report.version_mismatches = {
        name: (found, schema.KAMAILIO_TABLE_VERSIONS[name])
        for name, found in versions_after.items()
        if name in schema.KAMAILIO_TABLE_VERSIONS
        and found != schema.KAMAILIO_TABLE_VERSIONS[name]
    }
    report.revision_after = MigrationContext.configure(
        conn, opts={"version_table": ALEMBIC_VERSION_TABLE}).get_current_revision()


async def _run(url: str, require_empty: bool) -> MigrationReport:
    report = MigrationReport(mask_url(url))
    if url_scheme(url) == "text":
        return await _run_text(url, report, require_empty)
    engine = _engine_for(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, report, require_empty)
    except StorageError:
        raise
    except (OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"cannot connect to the database: {exc}", url=url) from exc
    except sa.exc.OperationalError as exc:
        raise StorageUnavailable(f"database error: {exc.orig}", url=url) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(f"migration failed: {exc}", url=url) from exc
    finally:
        await engine.dispose()
    for line in report.lines():
        log.info("%s", line)
    return report


async def _run_text(url: str, report: MigrationReport, require_empty: bool) -> MigrationReport:
    db = open_storage(url)
    await db.open()
    try:
        report.tables_found = [t for t in schema.METADATA.tables if db.has_table(t)]
        if require_empty and report.tables_found:
            raise DatabaseNotEmpty(
                "the directory already has siprouter's or Kamailio's tables; use "
                "`siprouter db migrate`", url=url)
        versions_before = {t: await db.table_version(t) for t in schema.KAMAILIO_TABLE_VERSIONS}
        report.tables_created = await db.ensure_tables()
        for name, expected in schema.KAMAILIO_TABLE_VERSIONS.items():
            found = await db.table_version(name)
            if versions_before[name] is None and found is not None:
                report.version_rows_added.append(name)
            elif found is not None and found != expected:
                report.version_mismatches[name] = (found, expected)
    finally:
        await db.close()
    return report


async def init_database(url: str) -> MigrationReport:
    """Create siprouter's schema (Kamailio 5.6's tables and ``version`` rows) in a new,
    empty database and record the newest revision.

    :raises DatabaseNotEmpty: the database already has siprouter's or Kamailio's tables.
    :raises StorageUnavailable: the database cannot be reached.
    :raises StorageError: the migration failed.
    """
    return await _run(url, require_empty=True)


async def migrate_database(url: str) -> MigrationReport:
    """Bring any database to the newest revision: create what is missing, adopt
    (stamp) a Kamailio database, leave existing tables' data alone.

    :raises StorageUnavailable: the database cannot be reached.
    :raises StorageError: the migration failed.
    """
    return await _run(url, require_empty=False)
