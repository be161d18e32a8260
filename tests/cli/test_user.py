# SPDX-License-Identifier: Apache-2.0
"""``siprouter user add|passwd|rm|list``: the real command against SQLite (the embedded
default, --db, --config, SIPROUTER_CONFIG), PostgreSQL, MariaDB and db_text; the rows it
writes authenticate through the auth module; errors and exit statuses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from db_backends import unique_name

from siprouter.cli.main import main
from siprouter.cli.user import EXIT_CONFLICT, EXIT_DB_ERROR, EXIT_USAGE
from siprouter.sip.digest import compute_ha1
from siprouter.storage import open_storage

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``siprouter ARGS`` in a clean directory with a private XDG_DATA_HOME and no
    SIPROUTER_CONFIG; returns the click Result."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPROUTER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        return CliRunner().invoke(main, list(args), input=input, env=env,
                                  catch_exceptions=False)

    return run


def rows(url: str) -> list[dict]:
    async def read():
        async with open_storage(url) as db:
            return await db.select("subscriber", order_by=["username", "domain"])

    return asyncio.run(read())


def authenticates(url: str, user: str, domain: str, password: str, **auth_options) -> bool:
    """Does the auth module accept ``password`` for user@domain from this database?"""
    from siprouter.modules.auth import Auth
    from siprouter.script.api import Request
    from siprouter.script.testing import make_request
    from siprouter.sip.digest import compute_response
    from siprouter.sip.headers import parse_challenge
    from siprouter.sip.message import parse_message

    def register(headers=()):
        return parse_message(make_request("REGISTER", f"sip:{domain}",
                                          from_=f"sip:{user}@{domain}",
                                          to=f"<sip:{user}@{domain}>", headers=headers).encode(),
                             request_cls=Request)

    async def check() -> bool:
        async with open_storage(url) as db:
            auth = Auth(db, secret=b"x" * 32, **auth_options)
            first = register()
            auth.www_challenge(first)
            ch = parse_challenge(first.outcome.headers[0][1]).params
            ha1 = compute_ha1(user, ch["realm"], password)
            response = compute_response(ha1, ch["nonce"], "REGISTER", f"sip:{domain}",
                                        qop="auth", nc="00000001", cnonce="abc")
            creds = (f'Digest username="{user}", realm="{ch["realm"]}", nonce="{ch["nonce"]}", '
                     f'uri="sip:{domain}", response="{response}", qop=auth, nc=00000001, '
                     'cnonce="abc"')
            return bool(await auth.auth_check(register([("Authorization", creds)])))

    return asyncio.run(check())


def test_embedded_default_database(cli, tmp_path: Path):
    result = cli("user", "add", "alice@Example.COM", "secret")
    assert result.exit_code == 0, result.output
    assert "user alice@example.com added" in result.stdout
    assert "tables created" in result.stderr  # a new database is set up as `db init` does
    path = tmp_path / "xdg" / "siprouter" / "siprouter.sqlite"
    assert path.is_file()  # the file `siprouter run` uses with no configuration
    [row] = rows(f"sqlite:///{path}")
    assert (row["username"], row["domain"], row["password"]) == ("alice", "example.com", "secret")
    assert row["ha1"] == compute_ha1("alice", "example.com", "secret")
    assert row["ha1b"] == compute_ha1("alice@example.com", "example.com", "secret")
    url = f"sqlite:///{path}"
    assert authenticates(url, "alice", "example.com", "secret")
    assert authenticates(url, "alice", "example.com", "secret", calculate_ha1=False)
    assert not authenticates(url, "alice", "example.com", "wrong")


def test_add_passwd_rm_list(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'users.sqlite'}"
    for address in ("bob@b.example", "alice@a.example", "carol@a.example"):
        assert cli("user", "add", "--db", url, address, "pw").exit_code == 0
    listed = cli("user", "list", "--db", url)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == ["alice@a.example", "carol@a.example", "bob@b.example"]
    assert cli("user", "list", "--db", url, "A.example").stdout.splitlines() == [
        "alice@a.example", "carol@a.example"]
    assert "pw" not in listed.stdout

    result = cli("user", "passwd", "--db", url, "alice@a.example", "new")
    assert result.exit_code == 0 and "password of alice@a.example changed" in result.stdout
    assert authenticates(url, "alice", "a.example", "new", calculate_ha1=False)
    assert not authenticates(url, "alice", "a.example", "pw")

    result = cli("user", "rm", "--db", url, "carol@a.example")
    assert result.exit_code == 0 and "user carol@a.example removed" in result.stdout
    assert cli("user", "list", "--db", url, "a.example").stdout.splitlines() == [
        "alice@a.example"]


def test_conflicts_exit_3(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'users.sqlite'}"
    assert cli("user", "add", "--db", url, "alice@example.com", "pw").exit_code == 0
    again = cli("user", "add", "--db", url, "alice@example.com", "other")
    assert again.exit_code == EXIT_CONFLICT
    assert "user alice@example.com exists" in again.stderr
    assert rows(url)[0]["password"] == "pw"  # unchanged
    for command in ("passwd", "rm"):
        args = ["user", command, "--db", url, "nobody@example.com"]
        result = cli(*args, *(["pw"] if command == "passwd" else []))
        assert result.exit_code == EXIT_CONFLICT
        assert "no such user nobody@example.com" in result.stderr


@pytest.mark.parametrize("address", [
    "alice", "@example.com", "alice@", "al ice@example.com", "alice@exa mple.com",
    "alice@example.com:5060", "ali%20ce@example.com", "a:b@example.com", "alice@ex_ample..com",
    "a" * 65 + "@example.com",
])
def test_bad_address_is_a_usage_error(cli, tmp_path: Path, address: str):
    result = cli("user", "add", "--db", f"sqlite:///{tmp_path / 'u.sqlite'}", address, "pw")
    assert result.exit_code == EXIT_USAGE
    assert "USER@DOMAIN" in result.stderr
    assert not (tmp_path / "u.sqlite").exists()  # refused before touching the database


def test_bad_password_is_a_usage_error(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    assert cli("user", "add", "--db", url, "alice@example.com", "").exit_code == EXIT_USAGE
    assert cli("user", "add", "--db", url, "alice@example.com", "x" * 65).exit_code == EXIT_USAGE


def test_password_prompt(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'u.sqlite'}"
    result = cli("user", "add", "--db", url, "alice@example.com", input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.stdout
    assert rows(url)[0]["password"] == "s3cret"


def test_url_from_config_file_and_environment(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'configured.sqlite'}"
    config = tmp_path / "siprouter.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert cli("user", "add", "--config", str(config), "alice@example.com", "pw").exit_code == 0
    result = cli("user", "list", env={"SIPROUTER_CONFIG": str(config)})
    assert result.stdout.splitlines() == ["alice@example.com"]
    assert [r["username"] for r in rows(url)] == ["alice"]
    assert not (tmp_path / "xdg").exists()  # the default database was not touched


def test_data_dir_option(cli, tmp_path: Path):
    assert cli("user", "add", "--data-dir", str(tmp_path / "data"), "a@b.example",
               "pw").exit_code == 0
    assert (tmp_path / "data" / "siprouter.sqlite").is_file()


def test_server_databases(cli, pg_server, mariadb_server):
    for server in (pg_server, mariadb_server):
        url = server.create_database(unique_name("users"))
        result = cli("user", "add", "--db", url, "alice@example.com", "secret")
        assert result.exit_code == 0, result.output
        assert cli("user", "add", "--db", url, "bob@example.com", "pw").exit_code == 0
        assert cli("user", "passwd", "--db", url, "bob@example.com", "pw2").exit_code == 0
        assert cli("user", "rm", "--db", url, "alice@example.com").exit_code == 0
        assert cli("user", "list", "--db", url).stdout.splitlines() == ["bob@example.com"]
        assert authenticates(url, "bob", "example.com", "pw2")


def test_db_text(cli, tmp_path: Path):
    url = f"text://{tmp_path / 'dbtext'}"
    assert cli("user", "add", "--db", url, "alice@example.com", "secret").exit_code == 0
    assert cli("user", "list", "--db", url).stdout.splitlines() == ["alice@example.com"]
    assert authenticates(url, "alice", "example.com", "secret")


def test_database_without_subscriber_table(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'partial.sqlite'}"

    async def partial():
        async with open_storage(url) as db:
            await db.ensure_tables(["location"])

    asyncio.run(partial())
    result = cli("user", "add", "--db", url, "alice@example.com", "pw")
    assert result.exit_code == EXIT_DB_ERROR
    assert "no subscriber table" in result.stderr and "siprouter db migrate" in result.stderr


def test_unreachable_database_exit_1_password_masked(cli):
    from db_servers import free_tcp_port

    url = f"postgresql://kam:topsecret@127.0.0.1:{free_tcp_port()}/kam?connect_timeout=2"
    result = cli("user", "list", "--db", url)
    assert result.exit_code == EXIT_DB_ERROR
    assert "siprouter user list:" in result.stderr and "topsecret" not in result.stderr


def test_as_a_real_process(tmp_path: Path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("SIPROUTER_CONFIG", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "siprouter", "user", *args], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert run("add", "alice@example.com", "secret").returncode == 0
    done = run("list")
    assert done.returncode == 0 and done.stdout.splitlines() == ["alice@example.com"]
    dup = run("add", "alice@example.com", "secret")
    assert dup.returncode == EXIT_CONFLICT and "exists" in dup.stderr
