# SPDX-License-Identifier: Apache-2.0
"""db_text against Kamailio itself: the table files Debian's ``kamailio`` package ships
(kamdbctl's templates, ``/usr/share/kamailio/dbtext/kamailio``) and a running Kamailio 5.6
whose db_text module reads our files and writes its own (compared byte for byte).

Needs the Debian package ``kamailio`` (``apt-get install kamailio``); without it these tests
are skipped with a message saying so.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from siprouter.storage import open_storage, schema

TEMPLATES = Path("/usr/share/kamailio/dbtext/kamailio")
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
KAMCMD = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
MODULES = sorted(glob.glob("/usr/lib/*/kamailio/modules/db_text.so")
                 + glob.glob("/usr/lib/kamailio/modules/db_text.so"))

needs_templates = pytest.mark.skipif(
    not (TEMPLATES / "version").is_file(),
    reason=f"KAMAILIO NOT INSTALLED: {TEMPLATES} missing (apt-get install kamailio)")
needs_kamailio = pytest.mark.skipif(
    not (os.access(KAMAILIO, os.X_OK) and os.access(KAMCMD, os.X_OK) and MODULES),
    reason="KAMAILIO NOT INSTALLED: kamailio, kamcmd or db_text.so missing "
           "(apt-get install kamailio)")


def template_header(name: str) -> str:
    """kamdbctl's header line, as db_text writes it back (no trailing space)."""
    first = (TEMPLATES / name).read_text().split("\n", 1)[0]
    return first.rstrip(" ") + "\n"


@needs_templates
class TestKamdbctlTemplates:
    async def test_every_shipped_table_reads_without_a_problem(self, tmp_path):
        shutil.copytree(TEMPLATES, tmp_path / "kamailio")
        db = open_storage(f"text://{tmp_path}/kamailio")
        await db.open()
        try:
            assert db.load_problems == {}
            assert set(db.tables()) == {p.name for p in TEMPLATES.iterdir()}
            # The version rows kamdbctl writes agree with our schema, table by table.
            for name, version in schema.KAMAILIO_TABLE_VERSIONS.items():
                assert await db.table_version(name) == version, name
            # ids are all 0 in kamdbctl's version file; the next insert continues from there.
            assert await db.insert("version", {"table_name": "mine", "table_version": 1}) == 1
        finally:
            await db.close()

    async def test_read_write_a_kamdbctl_database(self, tmp_path):
        shutil.copytree(TEMPLATES, tmp_path / "kamailio")
        db = open_storage(f"text://{tmp_path}/kamailio", flush_interval=None)
        await db.open()
        expires = datetime(2031, 1, 2, 3, 4, 5)
        new_id = await db.insert("location", {
            "ruid": "uloc-1", "username": "alice", "contact": "sip:alice@192.0.2.1:5060",
            "expires": expires, "q": 0.5, "callid": "c1@x", "user_agent": "phone"})
        await db.insert("subscriber", {"username": "alice", "domain": "example.com",
                                       "password": "secret", "ha1": "h1", "ha1b": "h2"})
        await db.close()
        location = (tmp_path / "kamailio" / "location").read_text()
        assert location == template_header("location") + (
            f"{new_id}:uloc-1:alice::sip\\:alice@192.0.2.1\\:5060:::{int(expires.timestamp())}"
            ":0.50:c1@x:1:946684801:0:0:phone::::0:0:0:0:0\n")
        assert (tmp_path / "kamailio" / "subscriber").read_text() == (
            template_header("subscriber") + "1:alice:example.com:secret:h1:h2\n")

    async def test_ensure_tables_writes_kamdbctls_headers(self, tmp_path):
        db = open_storage(f"text://{tmp_path}/new")
        await db.open()
        created = await db.ensure_tables()
        await db.close()
        compared = 0
        for name in created:
            if (TEMPLATES / name).is_file():
                assert (tmp_path / "new" / name).read_text().split("\n")[0] + "\n" \
                    == template_header(name), name
                compared += 1
        assert compared == len(schema.METADATA.tables)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kamailio:
    """A Kamailio with db_text on ``directory`` and a binrpc socket for kamcmd."""

    def __init__(self, workdir: Path, directory: Path, modparams: str = "") -> None:
        self.sock = workdir / "ctl.sock"
        self.log = workdir / "kamailio.log"
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(f"""#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:127.0.0.1:{_free_udp_port()}
mpath="{os.path.dirname(MODULES[0])}/"
loadmodule "db_text.so"
loadmodule "ctl.so"
loadmodule "sl.so"
modparam("db_text", "default_connection", "text://{directory}")
modparam("ctl", "binrpc", "unix:{self.sock}")
{modparams}
request_route {{ sl_send_reply("404", "Not Here"); }}
""")
        self.proc = subprocess.Popen(
            [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(workdir)],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"kamailio did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def rpc(self, *args: str) -> str:
        done = subprocess.run([KAMCMD, "-s", f"unix:{self.sock}", *args], capture_output=True,
                              text=True, errors="replace", timeout=15)
        assert done.returncode == 0, done.stderr + self.log_text()[-2000:]
        return done.stdout

    def query(self, sql: str) -> str:
        out = self.rpc("db_text.query", sql)
        assert "error" not in out, out + self.log_text()[-2000:]
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def kamailio(tmp_path):
    instances: list[Kamailio] = []

    def start(directory: Path, modparams: str = "") -> Kamailio:
        k = Kamailio(tmp_path, directory, modparams)
        instances.append(k)
        return k

    yield start
    for k in instances:
        k.stop()


INTEROP_HEADER = ("id(int,auto) name(string) n(int,null) q(double,null) note(str,null) "
                  "seen(time,null) data(blob,null)\n")


@needs_kamailio
class TestLiveKamailio:
    async def test_kamailio_reads_our_file_and_writes_the_same_bytes(self, tmp_path, kamailio):
        directory = tmp_path / "db"
        directory.mkdir()
        (directory / "interop").write_text(INTEROP_HEADER)
        db = open_storage(f"text://{directory}", flush_interval=None)
        await db.open()
        rows = [
            {"name": "plain", "n": 1, "q": 1.0},
            {"name": "sip:alice@192.0.2.1:5060;transport=tcp", "n": -7, "q": 0.5,
             "note": "tab\there, cr\r, lf\n, backslash\\, colon:", "seen": datetime(2024, 2, 3, 4, 5, 6)},
            {"name": "", "n": None, "q": -2.25, "note": None, "data": b"\x00bin\xff:\\"},
            {"name": "nulls", "n": 0, "q": None, "note": "\x00"},
        ]
        for row in rows:
            await db.insert("interop", row)
        await db.close()
        path = directory / "interop"
        ours = path.read_bytes()
        os.utime(path, (946684800, 946684800))  # to see that Kamailio rewrote it

        # An empty string in a not-null string column is an empty field, as Kamailio writes
        # it too; Kamailio reads it back only with emptystring=1 (else it refuses the table).
        k = kamailio(directory, 'modparam("db_text", "emptystring", 1)')
        assert "total rows 4 / 4" in k.query("select * from interop")
        k.query('update interop set name="plain" where id=1')   # marks the table modified
        assert k.rpc("db_text.dump").strip() == "Dump OK"
        assert os.stat(path).st_mtime > 946684800
        assert path.read_bytes() == ours

    async def test_we_read_what_kamailio_changed(self, tmp_path, kamailio):
        directory = tmp_path / "db"
        directory.mkdir()
        (directory / "interop").write_text(INTEROP_HEADER + "1:one:1::::\n2:two:2::::\n")
        k = kamailio(directory)
        k.query("delete from interop where id=2")
        k.query('replace interop set name="k:new", n=5 where id=9')
        assert k.rpc("db_text.dump").strip() == "Dump OK"
        # Kamailio puts a new row first; we keep the file's order.
        assert (directory / "interop").read_text() == INTEROP_HEADER + (
            "9:k\\:new:5::::\n1:one:1::::\n")
        db = open_storage(f"text://{directory}", db_mode=1)
        await db.open()
        assert await db.select("interop", ["id", "name", "n"]) == [
            {"id": 9, "name": "k:new", "n": 5}, {"id": 1, "name": "one", "n": 1}]
        assert await db.insert("interop", {"name": "ours"}) == 10
        await db.close()
