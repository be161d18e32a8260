# SPDX-License-Identifier: Apache-2.0
"""``siprouter db init`` / ``db migrate``: on every backend, through the functions and
through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from db_backends import unique_name

from siprouter.cli.db import EXIT_DB_ERROR, EXIT_NOT_EMPTY
from siprouter.cli.main import main
from siprouter.storage import open_storage, schema
from siprouter.storage.migrate import (
    ALEMBIC_VERSION_TABLE,
    DatabaseNotEmpty,
    head_revision,
    init_database,
    migrate_database,
)

ALL_TABLES = sorted(schema.METADATA.tables)


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "text"])
def empty_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'new.sqlite'}"
    if request.param == "text":
        return f"text://{tmp_path / 'dbtext'}"
    server = request.getfixturevalue("pg_server" if request.param == "postgresql"
                                     else "mariadb_server")
    return server.create_database(unique_name("init"))


async def test_init_creates_every_table_then_refuses_and_migrate_has_nothing_to_do(empty_url):
    report = await init_database(empty_url)
    assert sorted(report.tables_created) == ALL_TABLES
    assert sorted(report.version_rows_added) == ALL_TABLES
    assert report.version_mismatches == {} and not report.stamped
    sql = not empty_url.startswith("text:")
    assert report.revision_after == (head_revision() if sql else None)
    async with open_storage(empty_url) as db:
        for table, version in schema.KAMAILIO_TABLE_VERSIONS.items():
            assert db.has_table(table)
            assert await db.table_version(table) == version
            assert await db.count(table) == (len(ALL_TABLES) if table == "version" else 0)
        assert db.has_table(ALEMBIC_VERSION_TABLE) == sql
    with pytest.raises(DatabaseNotEmpty):
        await init_database(empty_url)
    again = await migrate_database(empty_url)
    assert again.tables_created == [] and again.version_rows_added == []
    assert "nothing to do" in " ".join(again.lines())


async def test_migrate_adds_a_dropped_table_back(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    await init_database(url)
    import sqlite3

    with sqlite3.connect(tmp_path / "x.sqlite") as conn:
        conn.execute("DROP TABLE dispatcher")
        conn.execute("DELETE FROM version WHERE table_name = 'dispatcher'")
    conn.close()
    report = await migrate_database(url)
    assert report.revision_before == report.revision_after == head_revision()
    assert report.tables_created == ["dispatcher"]
    assert report.version_rows_added == ["dispatcher"]
    async with open_storage(url) as db:
        assert db.has_table("dispatcher")
        assert await db.table_version("dispatcher") == 4
        assert await db.count("version", {"table_name": "dispatcher"}) == 1


# -------------------------------------------------------------------------------------------
# The command line.


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPROUTER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    def run(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return run


def test_cli_init_uses_the_data_dir_by_default(cli, tmp_path: Path):
    result = cli("db", "init", "--data-dir", str(tmp_path / "data"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "siprouter.sqlite").exists()
    assert f"revision (none) -> {head_revision()}" in result.output
    assert "tables created (23)" in result.output
    again = cli("db", "init", "--data-dir", str(tmp_path / "data"))
    assert again.exit_code == EXIT_NOT_EMPTY
    assert "siprouter db migrate" in again.output
    migrated = cli("db", "migrate", "--data-dir", str(tmp_path / "data"))
    assert migrated.exit_code == 0
    assert "nothing to do" in migrated.output


def test_cli_reads_the_url_from_the_configuration(cli, tmp_path: Path):
    target = tmp_path / "from-config.sqlite"
    cfg = tmp_path / "siprouter.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{target}"\n')
    result = cli("db", "migrate", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert target.exists()


def test_cli_url_argument_and_db_text(cli, tmp_path: Path):
    result = cli("db", "init", f"text://{tmp_path / 'dbtext'}")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "dbtext" / "location").exists()
    assert (tmp_path / "dbtext" / "version").exists()


def test_cli_unreachable_database_exits_1_with_the_password_masked(cli):
    from db_servers import free_tcp_port

    result = cli("db", "migrate",
                 f"postgresql://kam:hunter2@127.0.0.1:{free_tcp_port()}/kam?connect_timeout=2")
    assert result.exit_code == EXIT_DB_ERROR
    assert "hunter2" not in result.output
    assert "kam:***@" in result.output


def test_cli_help_lists_init_and_migrate(cli):
    result = cli("db", "--help")
    assert result.exit_code == 0
    assert "init" in result.output and "migrate" in result.output
