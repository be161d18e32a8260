# SPDX-License-Identifier: Apache-2.0
"""``siprouter user add|passwd|rm|list``: subscribers in the database, as Kamailio's
``kamctl add|passwd|rm`` keep them.

These work on the database directly (server running or not; the auth module reads the
``subscriber`` table on every request, so a change counts at once). The database is the
one ``siprouter db`` and ``siprouter run`` use: ``--db URL``, else ``[database] url`` from
``--config`` / ``SIPROUTER_CONFIG``, else the embedded SQLite file in the data directory.
A database without any of siprouter's tables is set up first, as ``siprouter db init``
would.

A row holds the plain ``password`` and, as kamctl writes them with the domain as realm,
``ha1 = MD5(user:domain:password)`` and ``ha1b = MD5(user@domain:domain:password)``, so
Kamailio's auth_db works on the same table with or without ``calculate_ha1``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["user", "EXIT_DB_ERROR", "EXIT_USAGE", "EXIT_CONFLICT", "split_address",
           "subscriber_row"]

# Exit statuses: database unreachable or failing; a bad USER@DOMAIN or password (click's
# usage errors use 2 too); the user exists (add) or does not (passwd, rm).
EXIT_DB_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFLICT = 3

_TABLE = "subscriber"
_MAX_FIELD = 64  # username, domain and password are VARCHAR(64) in Kamailio's schema


@click.group("user", context_settings={"help_option_names": ["-h", "--help"]})
def user() -> None:
    """Add, change, remove and list SIP users (the subscriber table)."""


# siprouter.cli.main registers `user` when it is imported: define it before importing main.
from siprouter.cli.db import _data_dir_option, _resolve_url  # noqa: E402
from siprouter.cli.main import config_option  # noqa: E402


def split_address(address: str) -> tuple[str, str]:
    """``USER@DOMAIN`` -> (user, domain lower-cased). Raises ``click.BadParameter``
    unless it is a SIP URI's user and host (``sip:USER@DOMAIN`` parses) with no
    escapes, each at most 64 characters."""
    from siprouter.sip.errors import SipParseError
    from siprouter.sip.uri import SipUri, parse_uri

    name, at, domain = address.rpartition("@")
    problem = None
    if not at or not name or not domain:
        problem = "expected USER@DOMAIN, e.g. alice@example.com"
    elif "%" in name or ":" in name:
        problem = "the user part may not contain '%' or ':'"
    else:
        try:
            uri = parse_uri(f"sip:{name}@{domain}")
        except SipParseError:
            uri = None
        if not isinstance(uri, SipUri) or uri.user != name or uri.port is not None \
                or uri.params or uri.headers:
            problem = "not a SIP user and domain (sip:USER@DOMAIN must be a valid URI)"
        elif len(name) > _MAX_FIELD or len(domain) > _MAX_FIELD:
            problem = f"user and domain are at most {_MAX_FIELD} characters each"
    if problem:
        raise click.BadParameter(f"{address!r}: {problem}", param_hint="USER@DOMAIN")
    return name, domain.lower()


def subscriber_row(name: str, domain: str, password: str) -> dict[str, str]:
    """The subscriber columns for a user: plain password, ha1 and ha1b with the domain
    as realm (kamctl's convention)."""
    from siprouter.sip.digest import compute_ha1

    return {
        "username": name,
        "domain": domain,
        "password": password,
        "ha1": compute_ha1(name, domain, password),
        "ha1b": compute_ha1(f"{name}@{domain}", domain, password),
    }


def _check_password(password: str) -> str:
    if not password:
        raise click.BadParameter("the password may not be empty", param_hint="PASSWORD")
    if len(password) > _MAX_FIELD:
        raise click.BadParameter(f"the password is at most {_MAX_FIELD} characters",
                                 param_hint="PASSWORD")
    return password


class _Conflict(Exception):
    """The user exists (add) or does not (passwd, rm)."""


async def _with_database(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Open the database, set it up when it has none of siprouter's tables (as
    ``db init``), run ``work(storage)``."""
    from siprouter.storage import open_storage, schema
    from siprouter.storage.migrate import init_database

    db = open_storage(url)
    await db.open()
    try:
        if not db.has_table(_TABLE):
            if any(db.has_table(t) for t in schema.METADATA.tables):
                from siprouter.storage import StorageSchemaError

                raise StorageSchemaError(
                    "the database has no subscriber table; add it with `siprouter db migrate`",
                    url=url)
            await db.close()
            report = await init_database(url)
            for line in report.lines():
                click.echo(line, err=True)
            db = open_storage(url)
            await db.open()
        return await work(db)
    finally:
        await db.close()


def _run(command: str, url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from siprouter.storage import StorageError, mask_url

    try:
        return asyncio.run(_with_database(url, work))
    except _Conflict as exc:
        click.echo(f"siprouter user {command}: {exc}", err=True)
        sys.exit(EXIT_CONFLICT)
    except StorageError as exc:
        click.echo(f"siprouter user {command}: {exc}", err=True)
        sys.exit(EXIT_DB_ERROR)
    except (ValueError, OSError) as exc:
        click.echo(f"siprouter user {command}: {mask_url(url)}: {exc}", err=True)
        sys.exit(EXIT_DB_ERROR)


def _db_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--db", "url", metavar="URL",
        help="Database URL: sqlite:///PATH, postgresql://USER:PASS@HOST[:PORT]/DB, "
        "mysql://USER:PASS@HOST[:PORT]/DB or text:///DIRECTORY. Default: [database] url, "
        "else siprouter.sqlite in the data directory.",
    )(f)


def _password_argument(f):  # type: ignore[no-untyped-def]
    return click.argument("password", required=False, metavar="[PASSWORD]")(f)


def _password_or_prompt(password: str | None) -> str:
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return _check_password(password)


@user.command("add")
@config_option
@_data_dir_option
@_db_option
@click.argument("address", metavar="USER@DOMAIN")
@_password_argument
def add(config_path: Path | None, data_dir: Path | None, url: str | None, address: str,
        password: str | None) -> None:
    """Add a user. Without PASSWORD it is asked for (not echoed); a password on the
    command line is visible to other local users in the process list."""
    name, domain = split_address(address)
    password = _password_or_prompt(password)
    row = subscriber_row(name, domain, password)

    async def work(db: Any) -> None:
        if await db.count(_TABLE, {"username": name, "domain": domain}):
            raise _Conflict(f"user {name}@{domain} exists (change its password with "
                            "`siprouter user passwd`)")
        await db.insert(_TABLE, row)

    _run("add", _resolve_url(config_path, url, data_dir), work)
    click.echo(f"user {name}@{domain} added")


@user.command("passwd")
@config_option
@_data_dir_option
@_db_option
@click.argument("address", metavar="USER@DOMAIN")
@_password_argument
def passwd(config_path: Path | None, data_dir: Path | None, url: str | None, address: str,
           password: str | None) -> None:
    """Change a user's password (it counts at the next request: no restart needed)."""
    name, domain = split_address(address)
    password = _password_or_prompt(password)
    row = subscriber_row(name, domain, password)
    values = {k: row[k] for k in ("password", "ha1", "ha1b")}

    async def work(db: Any) -> None:
        if not await db.update(_TABLE, values, {"username": name, "domain": domain}):
            raise _Conflict(f"no such user {name}@{domain}")

    _run("passwd", _resolve_url(config_path, url, data_dir), work)
    click.echo(f"password of {name}@{domain} changed")


@user.command("rm")
@config_option
@_data_dir_option
@_db_option
@click.argument("address", metavar="USER@DOMAIN")
def rm(config_path: Path | None, data_dir: Path | None, url: str | None, address: str) -> None:
    """Remove a user (its current registrations stay until they expire or are removed
    with `siprouter ul rm`)."""
    name, domain = split_address(address)

    async def work(db: Any) -> None:
        if not await db.delete(_TABLE, {"username": name, "domain": domain}):
            raise _Conflict(f"no such user {name}@{domain}")

    _run("rm", _resolve_url(config_path, url, data_dir), work)
    click.echo(f"user {name}@{domain} removed")


@user.command("list")
@config_option
@_data_dir_option
@_db_option
@click.argument("domain", required=False, metavar="[DOMAIN]")
def list_(config_path: Path | None, data_dir: Path | None, url: str | None,
          domain: str | None) -> None:
    """List users as USER@DOMAIN, one per line, sorted by domain (only DOMAIN's when given).
    Passwords are not shown."""
    where = {"domain": domain.lower()} if domain else None

    async def work(db: Any) -> list[dict[str, Any]]:
        return await db.select(_TABLE, ["username", "domain"], where)

    rows = _run("list", _resolve_url(config_path, url, data_dir), work)
    for dom, name in sorted((r["domain"], r["username"]) for r in rows):
        click.echo(f"{name}@{dom}")
