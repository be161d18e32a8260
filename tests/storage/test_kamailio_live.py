# SPDX-License-Identifier: Apache-2.0
"""Kamailio 5.6 itself on a database that ``siprouter db init`` created (SQLite, PostgreSQL,
MariaDB): its usrloc, auth_db and dispatcher modules check their tables' ``version`` rows at
start-up and refuse to start on a mismatch; then Kamailio reads rows siprouter wrote and
siprouter reads the rows Kamailio wrote. Needs the Debian packages ``kamailio`` and its
``kamailio-{sqlite,postgres,mysql}-modules``; without them the tests are skipped with a banner.
"""

from __future__ import annotations

import datetime
import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from db_backends import _skip_loudly, unique_name

from siprouter.storage import open_storage
from siprouter.storage.migrate import init_database

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
START_TIMEOUT = 15.0
DB_MODULES = {"sqlite": "db_sqlite", "postgresql": "db_postgres", "mysql": "db_mysql"}
# Kamailio's own URL parser takes no %-escapes: the live test uses a plain password.
KAM_USER, KAM_PASSWORD = "kam", "kampw"


def _module_dir(module: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/*/kamailio/modules/{module}.so")
                   + glob.glob(f"/usr/lib/kamailio/modules/{module}.so"))
    return os.path.dirname(found[0]) if found else None


def _missing(backend: str) -> str | None:
    if not (os.access(KAMAILIO, os.X_OK) and os.access(KAMCMD, os.X_OK)):
        return ("!!! KAMAILIO IS NOT INSTALLED: Kamailio was NOT run on a siprouter database. "
                "Install it with `apt-get install -y kamailio` (scripts/test.sh does this). !!!")
    if _module_dir(DB_MODULES[backend]) is None:
        package = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql"}[backend]
        return (f"!!! KAMAILIO'S {DB_MODULES[backend]} MODULE IS MISSING: Kamailio was NOT run "
                f"on a siprouter {backend} database. Install it with `apt-get install -y "
                f"kamailio-{package}-modules` (scripts/test.sh does this). !!!")
    return None


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kamailio:
    """Kamailio in the foreground with usrloc (DB only), auth_db and dispatcher on
    ``db_url``, and a binrpc socket for kamcmd. Stopped by PID."""

    def __init__(self, workdir: Path, db_url: str, db_module: str) -> None:
        self.sock = workdir / "ctl.sock"
        self.log = workdir / "kamailio.log"
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{_free_udp_port()}
mpath="{_module_dir(db_module)}/"
loadmodule "{db_module}.so"
loadmodule "ctl.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "dispatcher.so"
modparam("ctl", "binrpc", "unix:{self.sock}")
modparam("usrloc", "db_url", "{db_url}")
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "use_domain", 1)
modparam("auth_db", "db_url", "{db_url}")
modparam("auth_db", "load_credentials", "")
modparam("dispatcher", "db_url", "{db_url}")
request_route {{
    # never true; registrar's fixups register the "location" table with usrloc
    if (method == "X-NEVER") {{ save("location"); lookup("location"); }}
    sl_send_reply("404", "Not Here");
}}
""")
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(workdir)],
                stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("kamailio did not start on a siprouter database:\n"
                            + self.log_text()[-4000:])
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rpc(self, *args: str) -> str:
        done = subprocess.run([KAMCMD, "-s", f"unix:{self.sock}", *args], capture_output=True,
                              text=True, errors="replace", timeout=15)
        assert done.returncode == 0, done.stdout + done.stderr + self.log_text()[-2000:]
        return done.stdout

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture(params=sorted(DB_MODULES))
def siprouter_db(request, tmp_path: Path) -> tuple[str, str, str]:
    """(backend, siprouter URL, Kamailio db_url) of an empty database."""
    backend = request.param
    banner = _missing(backend)
    if banner:
        _skip_loudly(banner)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'siprouter.sqlite'}"
        return backend, url, f"sqlite://{tmp_path / 'siprouter.sqlite'}"
    name = unique_name("live")
    if backend == "postgresql":
        server = request.getfixturevalue("pg_server")
        server.create_database(name)
        server.psql(f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{KAM_USER}') "
                    f"THEN CREATE ROLE {KAM_USER} LOGIN PASSWORD '{KAM_PASSWORD}'; END IF; END $$")
        server.psql(f'ALTER DATABASE "{name}" OWNER TO {KAM_USER}')
        scheme = "postgres"
    else:
        server = request.getfixturevalue("mariadb_server")
        server.create_database(name)
        server.sql(f"CREATE USER IF NOT EXISTS '{KAM_USER}'@'127.0.0.1' IDENTIFIED BY "
                   f"'{KAM_PASSWORD}'; GRANT ALL PRIVILEGES ON `{name}`.* TO "
                   f"'{KAM_USER}'@'127.0.0.1'")
        scheme = "mysql"
    url = f"{scheme}://{KAM_USER}:{KAM_PASSWORD}@127.0.0.1:{server.port}/{name}"
    return backend, url, url


async def test_kamailio_runs_on_a_database_siprouter_created(siprouter_db, tmp_path: Path):
    backend, url, kam_url = siprouter_db
    await init_database(url)
    in_an_hour = (datetime.datetime.now() + datetime.timedelta(hours=1)).replace(microsecond=0)
    async with open_storage(url) as db:
        await db.insert("dispatcher", {"setid": 7, "destination": "sip:192.0.2.10:5060",
                                       "priority": 5, "attrs": "weight=50",
                                       "description": "siprouter wrote this"})
        await db.insert("location", {
            "ruid": "siprouter-1", "username": "bob", "domain": "example.com",
            "contact": "sip:bob@192.0.2.2:5060", "expires": in_an_hour, "q": 0.7,
            "callid": "bob-call@siprouter", "cseq": 3, "user_agent": "siprouter test",
            "last_modified": in_an_hour - datetime.timedelta(hours=1)})
        await db.insert("subscriber", {"username": "alice", "domain": "example.com",
                                       "password": "secret"})

    kamailio = Kamailio(tmp_path, kam_url, DB_MODULES[backend])  # version checks pass
    try:
        # Kamailio reads what siprouter wrote.
        listing = kamailio.rpc("dispatcher.list")
        assert "sip:192.0.2.10:5060" in listing and "weight=50" in listing
        bob = kamailio.rpc("ul.lookup", "location", "bob@example.com")
        assert "sip:bob@192.0.2.2:5060" in bob, bob
        assert "bob-call@siprouter" in bob
        # Kamailio writes; siprouter reads it.
        kamailio.rpc("ul.add", "location", "alice@example.com", "sip:alice@192.0.2.1:5060",
                     "3600", "0.5", ".", "0", "0", "0")  # path "." = none
        assert "sip:alice@192.0.2.1:5060" in kamailio.rpc("ul.lookup", "location",
                                                          "alice@example.com")
    finally:
        kamailio.stop()
    assert "ERROR" not in kamailio.log_text(), kamailio.log_text()[-3000:]
    async with open_storage(url) as db:
        (alice,) = await db.select("location", where={"username": "alice"})
    assert alice["contact"] == "sip:alice@192.0.2.1:5060"
    assert alice["domain"] == "example.com"
    assert alice["q"] == 0.5
    expected = datetime.datetime.now() + datetime.timedelta(seconds=3600)
    assert abs((alice["expires"] - expected).total_seconds()) < 30, alice["expires"]


async def test_the_version_check_is_real(tmp_path: Path):
    """Control for the test above: with a wrong ``version`` row Kamailio refuses to start."""
    banner = _missing("sqlite")
    if banner:
        _skip_loudly(banner)
    path = tmp_path / "siprouter.sqlite"
    await init_database(f"sqlite:///{path}")
    async with open_storage(f"sqlite:///{path}") as db:
        assert await db.update("version", {"table_version": 8}, {"table_name": "location"}) == 1
    with pytest.raises(pytest.fail.Exception, match="did not start"):
        Kamailio(tmp_path, f"sqlite://{path}", "db_sqlite").stop()
    assert "version check for db table: location" in (tmp_path / "kamailio.log").read_text()
