# SPDX-License-Identifier: Apache-2.0
"""``siprouter db init [URL]`` and ``siprouter db migrate [URL]``: what ``kamdbctl create``
does, for siprouter's database.

Without URL the database is ``[database] url`` from the configuration, or the embedded SQLite
file in the data directory. The work is done by ``siprouter.storage.migrate``; this module only
picks the URL and prints the report.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

__all__ = ["db", "EXIT_DB_ERROR", "EXIT_NOT_EMPTY"]

# Exit statuses: the database could not be reached or the migration failed; ``init`` on a
# database that already has tables.
EXIT_DB_ERROR = 1
EXIT_NOT_EMPTY = 3

_URL_HELP = (
    "URL: sqlite:///PATH, postgresql://USER:PASS@HOST[:PORT]/DB, mysql://USER:PASS@HOST[:PORT]/DB "
    "or text:///DIRECTORY. Default: [database] url, else siprouter.sqlite in the data directory."
)


@click.group("db", context_settings={"help_option_names": ["-h", "--help"]})
def db() -> None:
    """Create or upgrade the database (Kamailio-compatible tables)."""


# siprouter.cli.main registers `db` (defined above) when it is imported, so importing this
# module first must define `db` before it imports main.
from siprouter.cli.main import build_config, config_option  # noqa: E402


def _data_dir_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="Data directory (where the default SQLite file lives). Replaces [server] data_dir.",
    )(f)


def _resolve_url(config_path: Path | None, url: str | None, data_dir: Path | None) -> str:
    if url:
        return url
    from siprouter.storage import database_url

    overrides: dict[str, object] = {
        "server.data_dir": str(data_dir) if data_dir is not None else None,
    }
    config = build_config(config_path, overrides)
    return database_url(config.database.url, config.server.data_dir)


def _run(kind: str, url: str) -> None:
    from siprouter.storage import StorageError, mask_url
    from siprouter.storage.migrate import DatabaseNotEmpty, init_database, migrate_database

    action = init_database if kind == "init" else migrate_database
    try:
        report = asyncio.run(action(url))
    except DatabaseNotEmpty as exc:
        click.echo(f"siprouter db {kind}: {exc}", err=True)
        sys.exit(EXIT_NOT_EMPTY)
    except StorageError as exc:
        click.echo(f"siprouter db {kind}: {exc}", err=True)
        sys.exit(EXIT_DB_ERROR)
    except (ValueError, OSError) as exc:
        click.echo(f"siprouter db {kind}: {mask_url(url)}: {exc}", err=True)
        sys.exit(EXIT_DB_ERROR)
    for line in report.lines():
        click.echo(line)


@db.command("init")
@config_option
@_data_dir_option
@click.argument("url", required=False, metavar="[URL]")
def init(config_path: Path | None, data_dir: Path | None, url: str | None) -> None:
    """Create siprouter's tables in a new, empty database: Kamailio 5.6's tables with their
    `version` rows, and siprouter's own revision. Refuses a database that already has such
    tables (exit status 3; use `siprouter db migrate`).

    URL: sqlite:///PATH, postgresql://USER:PASS@HOST[:PORT]/DB, mysql://USER:PASS@HOST[:PORT]/DB
    or text:///DIRECTORY. Default: [database] url, else siprouter.sqlite in the data directory.
    """
    _run("init", _resolve_url(config_path, url, data_dir))


@db.command("migrate")
@config_option
@_data_dir_option
@click.argument("url", required=False, metavar="[URL]")
def migrate(config_path: Path | None, data_dir: Path | None, url: str | None) -> None:
    """Bring a database to siprouter's newest revision. On a database made by Kamailio's
    kamdbctl (or its SQL files) it records siprouter's revision and adds only the tables
    and `version` rows that are missing, without changing Kamailio's tables or rows.

    URL: as for `siprouter db init`.
    """
    _run("migrate", _resolve_url(config_path, url, data_dir))
