# SPDX-License-Identifier: Apache-2.0
"""Database fixtures for every test that needs a real database: throwaway servers and the
contract backends (registered for the whole suite by ``tests/conftest.py``).

``CONTRACT_BACKENDS`` lists every backend the contract suite (``test_contract.py``) runs
on; a test that takes the ``storage`` fixture runs once per entry. To add a backend, add its
name here and a branch in ``BackendCase.prepare`` / ``BackendCase.make_url``.

PostgreSQL and MariaDB run as real servers on 127.0.0.1 (``db_servers.py``), one per
session, started on first use. When a server binary is missing, the tests that need it are
skipped with a banner (and the banner is repeated at the end of the run).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from db_servers import (
    MARIADB_MISSING,
    PG_MISSING,
    MariadbServer,
    PostgresServer,
    find_mariadbd,
    find_postgres_bindir,
)

from siprouter.storage import Storage, open_storage, schema

# Every backend the contract suite runs on. "text-nocache" is db_text with db_mode=1.
CONTRACT_BACKENDS: tuple[str, ...] = ("sqlite", "postgresql", "mysql", "text", "text-nocache")

DBTEXT_MISSING = "!!! siprouter.storage.dbtext cannot be imported: db_text NOT tested !!!"

_MISSING_REPORTED: set[str] = set()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    for banner in sorted(_MISSING_REPORTED):
        terminalreporter.write_sep("!", "storage tests not run", red=True, bold=True)
        terminalreporter.write_line(banner, red=True, bold=True)


def _skip_loudly(banner: str) -> None:
    _MISSING_REPORTED.add(banner)
    pytest.skip(banner)


# ---------------------------------------------------------------------------------------
# Servers (session-wide, started on first use, stopped by PID at the end).


@contextlib.contextmanager
def database_server(kind: str) -> Iterator[PostgresServer | MariadbServer]:
    """A real database server on 127.0.0.1 with an empty data directory, stopped by PID
    at the end: ``kind`` "postgresql" or "mysql" (MariaDB). Skips loudly when its
    binaries are missing. For a test module that stops and starts its own server, wrap
    it in a module fixture."""
    server: PostgresServer | MariadbServer
    if kind == "postgresql":
        bindir = find_postgres_bindir()
        if bindir is None:
            _skip_loudly(PG_MISSING)
        server = PostgresServer(bindir)
    else:
        found = find_mariadbd()
        if found is None:
            _skip_loudly(MARIADB_MISSING)
        server = MariadbServer(*found)
    try:
        server.setup()
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 with an empty cluster."""
    with database_server("postgresql") as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariadbServer]:
    """A MariaDB server on 127.0.0.1 with an empty data directory."""
    with database_server("mysql") as server:
        yield server  # type: ignore[misc]


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------
# Contract backends.


async def _create_schema(url: str) -> None:
    async with open_storage(url) as db:
        await db.ensure_tables()


async def reset_tables(db: Storage) -> None:
    """Empty every schema table and put back the ``version`` rows kamdbctl writes."""
    for name in schema.METADATA.tables:
        if db.has_table(name):
            await db.delete(name)
    await db.insert_many(schema.VERSION_TABLE, [
        {"table_name": t, "table_version": v}
        for t, v in sorted(schema.KAMAILIO_TABLE_VERSIONS.items())])


@dataclass
class BackendCase:
    """One contract backend: how to make a database with siprouter's schema (empty tables,
    ``version`` rows) for one test. ``url`` is set by ``prepare``."""

    name: str
    tmp_path: Path
    url: str = ""
    shared: bool = False  # one database for the session: the storage fixture empties it

    def new_storage(self) -> Storage:
        """A new, unopened storage on this test's database."""
        return open_storage(self.url)


class _Templates:
    """Per-session database templates, so that each test gets a fresh copy cheaply."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sqlite: Path | None = None
        self.text: Path | None = None
        self.pg_url: str | None = None
        self.mysql_url: str | None = None


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> _Templates:
    return _Templates(tmp_path_factory.mktemp("storage-templates"))


@pytest.fixture(params=CONTRACT_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path,
                  _templates: _Templates) -> AsyncIterator[BackendCase]:
    """A ``BackendCase`` whose database has every table of ``schema.METADATA``, empty
    except for the ``version`` rows. Runs each test once per ``CONTRACT_BACKENDS`` entry."""
    case = BackendCase(request.param, tmp_path)
    name = request.param
    if name == "sqlite":
        if _templates.sqlite is None:
            path = _templates.root / "template.sqlite"
            await _create_schema(f"sqlite:///{path}")
            _templates.sqlite = path
        target = tmp_path / "contract.sqlite"
        shutil.copyfile(_templates.sqlite, target)
        case.url = f"sqlite:///{target}"
    elif name in ("text", "text-nocache"):
        try:
            import siprouter.storage.dbtext  # noqa: F401
        except ImportError:
            _skip_loudly(DBTEXT_MISSING)
        if _templates.text is None:
            path = _templates.root / "template.dbtext"
            await _create_schema(f"text://{path}?flush_interval=0")
            _templates.text = path
        target = tmp_path / "dbtext"
        shutil.copytree(_templates.text, target)
        mode = 1 if name == "text-nocache" else 0
        case.url = f"text://{target}?db_mode={mode}&flush_interval=0"
    elif name == "postgresql":
        server = request.getfixturevalue("pg_server")
        if _templates.pg_url is None:
            url = server.create_database("contract")
            await _create_schema(url)
            _templates.pg_url = url
        case.url = _templates.pg_url
        case.shared = True
    elif name == "mysql":
        server = request.getfixturevalue("mariadb_server")
        if _templates.mysql_url is None:
            url = server.create_database("contract")
            await _create_schema(url)
            _templates.mysql_url = url
        case.url = _templates.mysql_url
        case.shared = True
    else:
        raise AssertionError(f"no setup for contract backend {name!r}")
    yield case


@pytest.fixture
async def storage(backend: BackendCase) -> AsyncIterator[Storage]:
    """An opened storage on ``backend``'s fresh database; closed after the test."""
    db = backend.new_storage()
    await db.open()
    if backend.shared:
        await reset_tables(db)
    try:
        yield db
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(db.close(), 10)
