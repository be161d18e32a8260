# SPDX-License-Identifier: Apache-2.0
"""Throwaway PostgreSQL and MariaDB servers for the storage tests.

Each server gets a fresh data directory under the system temporary directory, listens on
127.0.0.1 on a free port (and a UNIX socket in the same directory), is started in the
foreground as a child process and stopped by its PID. Every wait is bounded. When the tests
run as root the servers run as the ``postgres`` / ``mysql`` users the Debian packages create
(PostgreSQL refuses to run as root). Durability is switched off (fsync, doublewrite): the data
lives for one test session.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PG_MISSING",
    "MARIADB_MISSING",
    "find_postgres_bindir",
    "find_mariadbd",
    "PostgresServer",
    "MariadbServer",
    "free_tcp_port",
]

PG_MISSING = (
    "!!! POSTGRESQL IS NOT INSTALLED: the PostgreSQL storage tests did NOT run. "
    "Install it with `apt-get install -y postgresql` (scripts/test.sh does this). !!!"
)
MARIADB_MISSING = (
    "!!! MARIADB IS NOT INSTALLED: the MySQL/MariaDB storage tests did NOT run. "
    "Install it with `apt-get install -y mariadb-server` (scripts/test.sh does this). !!!"
)

# initdb / mariadb-install-db take 1-5 s here; the margin is for a loaded CI box.
SETUP_TIMEOUT = 90.0
# From process start to accepting connections (about 0.5-2 s here).
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0

PASSWORD = "Sip-router:pw@1"  # has URL-special characters on purpose (quoted in URLs)


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def find_postgres_bindir() -> Path | None:
    """The directory holding initdb and postgres: from PATH, else Debian's
    /usr/lib/postgresql/<newest>/bin."""
    initdb = shutil.which("initdb")
    if initdb:
        real = Path(os.path.realpath(initdb)).parent
        if (real / "postgres").exists():
            return real
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def find_mariadbd() -> tuple[Path, Path] | None:
    """(server, install-db script) for MariaDB (or MySQL's mysqld), or None."""
    server = (shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
              or shutil.which("mysqld") or shutil.which("mysqld", path="/usr/sbin"))
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server and install:
        return Path(server), Path(install)
    return None


def _service_user(name: str) -> pwd.struct_passwd | None:
    """The user to run a server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(
            f"running as root, but there is no {name!r} user to run the database server as "
            f"(the Debian package creates it)") from None


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


def _run(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path, what: str,
         env: dict[str, str] | None = None, stdin_text: str | None = None,
         timeout: float = SETUP_TIMEOUT) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, user=user.pw_uid if user else None, group=user.pw_gid if user else None,
        extra_groups=[] if user else None, env=env, input=stdin_text,
        capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {' '.join(cmd)}\n"
                           f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result.stdout


def _stop(proc: subprocess.Popen, sig: int) -> int:
    """Signal ``proc`` (only this PID), wait, SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


def _wait_tcp(proc: subprocess.Popen, port: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n"
                               + _tail(log))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within "
                               f"{START_TIMEOUT} s:\n" + _tail(log))
        time.sleep(0.05)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class PostgresServer:
    """A PostgreSQL cluster in a temporary directory. ``setup()`` runs initdb once;
    ``start()`` / ``stop()`` may be called again (the outage test restarts it on the same
    port and data)."""

    bindir: Path
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="siprouter-pg-")))
    port: int = field(default_factory=free_tcp_port)
    user_name: str = "siprouter"
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.os_user = _service_user("postgres")
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"

    def _env(self) -> dict[str, str]:
        return {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "5"}

    def setup(self) -> None:
        (self.base / "pw").write_text(PASSWORD + "\n")
        os.chmod(self.base, 0o700)
        _chown_tree(self.base, self.os_user)
        _run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user_name,
              "--pwfile", str(self.base / "pw"), "-A", "scram-sha-256", "-E", "UTF8",
              "--locale", "C", "--no-sync", "--no-instructions"],
             self.os_user, self.base, "initdb")

    def start(self) -> None:
        logf = open(self.log, "ab")  # noqa: SIM115 - the child writes to it
        try:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-k", str(self.base), "-c", "listen_addresses=127.0.0.1",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=40",
                 "-c", "shared_buffers=32MB"],
                cwd=self.base, stdout=logf, stderr=subprocess.STDOUT,
                user=self.os_user.pw_uid if self.os_user else None,
                group=self.os_user.pw_gid if self.os_user else None,
                extra_groups=[] if self.os_user else None,
            )
        finally:
            logf.close()
        _wait_tcp(self.proc, self.port, self.log, "postgres")
        # Listening comes a moment before accepting queries ("starting up").
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                self.psql("SELECT 1")
                return
            except RuntimeError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise

    def stop(self) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint, exit)."""
        if self.proc is not None:
            _stop(self.proc, signal.SIGINT)
            self.proc = None

    def kill(self) -> None:
        """Stop and remove the data directory."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql: str | None = None, database: str = "postgres",
             file: Path | None = None) -> str:
        cmd = [str(self.bindir / "psql") if (self.bindir / "psql").exists() else "psql",
               "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
               "-U", self.user_name, "-d", database, "-At"]
        if sql is not None:
            cmd += ["-c", sql]
        if file is not None:
            cmd += ["-f", str(file)]
        return _run(cmd, None, self.base, "psql", env=self._env(), timeout=60)

    def create_database(self, name: str) -> str:
        """Create database ``name``; return its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str) -> str:
        return (f"postgresql://{self.user_name}:{_quote(PASSWORD)}@127.0.0.1:{self.port}/"
                f"{database}")


@dataclass
class MariadbServer:
    """A MariaDB server in a temporary directory; like ``PostgresServer``."""

    server: Path
    install_db: Path
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="siprouter-my-")))
    port: int = field(default_factory=free_tcp_port)
    user_name: str = "siprouter"
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.os_user = _service_user("mysql")
        self.data = self.base / "data"
        self.socket = self.base / "mysqld.sock"
        self.log = self.base / "mariadb.log"

    def setup(self) -> None:
        os.chmod(self.base, 0o700)
        _chown_tree(self.base, self.os_user)
        cmd = [str(self.install_db), "--no-defaults", f"--datadir={self.data}",
               "--auth-root-authentication-method=normal", "--skip-test-db",
               "--skip-name-resolve", "--innodb-doublewrite=0"]
        if self.os_user is not None:
            cmd.append(f"--user={self.os_user.pw_name}")
        _run(cmd, self.os_user, self.base, "mariadb-install-db")

    def start(self) -> None:
        cmd = [str(self.server), "--no-defaults", f"--datadir={self.data}",
               f"--socket={self.socket}", f"--port={self.port}", "--bind-address=127.0.0.1",
               "--skip-name-resolve", f"--pid-file={self.base / 'mysqld.pid'}",
               f"--log-error={self.log}", "--skip-log-bin",
               "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
               "--innodb-buffer-pool-size=64M", "--innodb-use-native-aio=0",
               "--character-set-server=utf8mb4", "--max-connections=60"]
        if self.os_user is not None:
            cmd.append(f"--user={self.os_user.pw_name}")
        self.proc = subprocess.Popen(
            cmd, cwd=self.base, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            user=self.os_user.pw_uid if self.os_user else None,
            group=self.os_user.pw_gid if self.os_user else None,
            extra_groups=[] if self.os_user else None,
        )
        _wait_tcp(self.proc, self.port, self.log, "mariadbd")
        self.sql(f"CREATE USER IF NOT EXISTS '{self.user_name}'@'127.0.0.1' "
                 f"IDENTIFIED BY '{PASSWORD}'; "
                 f"GRANT ALL PRIVILEGES ON *.* TO '{self.user_name}'@'127.0.0.1';")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc, signal.SIGTERM)
            self.proc = None

    def kill(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def sql(self, sql: str | None = None, database: str | None = None,
            file: Path | None = None) -> str:
        """Run SQL as root over the UNIX socket (what kamdbctl does)."""
        client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
        cmd = [client, "--no-defaults", "-S", str(self.socket), "-u", "root", "-N", "-B"]
        if database:
            cmd.append(database)
        if sql is not None:
            cmd += ["-e", sql]
        text = file.read_text() if file is not None else None
        return _run(cmd, None, self.base, "mariadb client", stdin_text=text, timeout=60)

    def create_database(self, name: str) -> str:
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return self.url(name)

    def url(self, database: str) -> str:
        return (f"mysql://{self.user_name}:{_quote(PASSWORD)}@127.0.0.1:{self.port}/"
                f"{database}")
