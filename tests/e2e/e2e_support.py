# SPDX-License-Identifier: Apache-2.0
"""Helpers for the end-to-end tests: a siprouter subprocess, SIPp runs, SIP over sockets.

Everything here is bounded in time, uses only 127.0.0.1 / ::1, and signals only the
processes it started (by PID).
"""

from __future__ import annotations

import contextlib
import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REPO",
    "EXAMPLES",
    "SIPP",
    "SIPP_MISSING",
    "free_port",
    "port_is_bound",
    "wait_until_bound",
    "stop_process",
    "SiprouterProcess",
    "SiprouterFactory",
    "SippResult",
    "start_sipp_uas",
    "run_sipp_uac",
    "options_request",
    "invite_request",
    "UdpPeer",
    "TcpPeer",
    "status_of",
    "call_id_of",
]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

SIPP = shutil.which("sipp")
SIPP_MISSING = (
    "!!! SIPp IS NOT INSTALLED: the end-to-end SIPp tests did NOT run. "
    "Install it with `apt-get install -y sip-tester` (scripts/test.sh does this). !!!"
)

# How long a server or SIPp may take to bind its port. Python start-up plus imports take
# about 0.3 s here; the margin is for a loaded CI box.
START_TIMEOUT = 15.0
# SIGTERM, then SIGKILL after this many seconds.
STOP_TIMEOUT = 5.0


# -------------------------------------------------------------------------------------------
# Ports and processes.


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both UDP and TCP on ``host`` right now (the kernel picks
    it). Another process could take it before we use it; on a test box that is rare."""
    fam = _family(host)
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(fam, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host}")


def _proc_net_hex(host: str) -> str:
    """``host`` as /proc/net/{udp,tcp}[6] writes a local address (host byte order words)."""
    packed = socket.inet_pton(_family(host), host)
    return "".join(packed[i : i + 4][::-1].hex().upper() for i in range(0, len(packed), 4))


def port_is_bound(proto: str, host: str, port: int) -> bool:
    """Is ``proto`` (udp/tcp) ``host:port`` bound (UDP) or listening (TCP) on this box?
    Reads /proc/net so that nothing is sent to the socket."""
    v6 = ":" in host
    path = f"/proc/net/{proto}{'6' if v6 else ''}"
    want = f"{_proc_net_hex(host)}:{port:04X}"
    any_addr = f"{'0' * (32 if v6 else 8)}:{port:04X}"
    try:
        with open(path) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] not in (want, any_addr):
                    continue
                if proto == "udp" or parts[3] == "0A":  # 0A: TCP_LISTEN
                    return True
    except FileNotFoundError:
        return False
    return False


def wait_until_bound(proc: subprocess.Popen, sockets: list[tuple[str, str, int]],
                     timeout: float = START_TIMEOUT) -> None:
    """Wait until every (proto, host, port) is bound; raise if ``proc`` exits first or
    the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        if all(port_is_bound(*s) for s in sockets):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before binding")
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {proc.pid} did not bind {sockets} within {timeout} s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Only this PID is signalled.
    Returns the exit status (negative: killed by that signal)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    return proc.returncode


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: str | bool | int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _toml_str(value)


@dataclass
class SiprouterProcess:
    """A running ``python3 -m siprouter run``. ``host``/``port``: where it listens (the
    same port for UDP and TCP). ``stopped_rc``: exit status once ``stop`` ran."""

    proc: subprocess.Popen
    host: str
    port: int
    protos: tuple[str, ...]
    log_path: Path
    stopped_rc: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def hostport(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> int:
        if self.stopped_rc is None:
            self.stopped_rc = stop_process(self.proc)
        return self.stopped_rc


@dataclass
class SiprouterFactory:
    """Starts siprouter subprocesses in ``workdir`` and stops every one of them on
    ``close()``. Use through the ``siprouter`` fixtures."""

    workdir: Path
    started: list[SiprouterProcess] = field(default_factory=list)

    def start(self, script: str | Path | None = None, *, host: str = "127.0.0.1",
              protos: tuple[str, ...] = ("udp", "tcp"), params: dict[str, str] | None = None,
              next_hop: str | None = None, log_level: str = "warning",
              extra_toml: str = "", data_dir: Path | None = None, port: int | None = None,
              config_file: bool = True) -> SiprouterProcess:
        """Start ``siprouter run`` on a free port of ``host`` (or ``port``) for each of
        ``protos`` and wait until every socket is bound. ``script`` None: the shipped
        default script. ``params`` become ``[routing.params]``; ``extra_toml`` is appended
        to the file. ``data_dir``: default a new one per server. ``config_file=False``:
        no configuration file at all (the embedded defaults and the flags only)."""
        n = len(self.started)
        port = port or free_port(host)
        data_dir = data_dir or self.workdir / f"data-{n}"
        bracketed = f"[{host}]" if ":" in host else host
        cmd = [sys.executable, "-m", "siprouter", "run",
               "--data-dir", str(data_dir), "--log-level", log_level]
        if config_file:
            cfg = self.workdir / f"siprouter-{n}.toml"
            lines = ["[routing]", "reload_on_change = false"]
            if next_hop is not None:
                lines.append(f"next_hop = {_toml_str(next_hop)}")
            if params:
                inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in params.items())
                lines.append(f"params = {{ {inner} }}")
            cfg.write_text("\n".join(lines) + "\n" + extra_toml)
            cmd += ["--config", str(cfg)]
        for proto in protos:
            cmd += ["--listen", f"{proto}:{bracketed}:{port}"]
        if script is not None:
            cmd += ["--script", str(script)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.pop("SIPROUTER_CONFIG", None)
        log_path = self.workdir / f"siprouter-{n}.log"
        with open(log_path, "wb") as logf:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                                    stdout=logf, stderr=subprocess.STDOUT)
        server = SiprouterProcess(proc, host, port, protos, log_path)
        self.started.append(server)
        try:
            wait_until_bound(proc, [(p, host, port) for p in protos])
        except (RuntimeError, TimeoutError) as e:
            server.stop()
            raise RuntimeError(f"siprouter did not start: {e}\n{server.log_tail()}") from None
        return server

    def close(self) -> None:
        for server in self.started:
            server.stop()


# -------------------------------------------------------------------------------------------
# SIPp.


@dataclass
class SippResult:
    """One finished SIPp UAC run: exit status and the last row of its -trace_stat csv."""

    returncode: int
    stats: dict[str, str]
    workdir: Path
    label: str

    def count(self, key: str) -> int:
        try:
            return int(float(self.stats.get(key, "0") or 0))
        except ValueError:
            return 0

    @property
    def successful(self) -> int:
        return self.count("SuccessfulCall(C)")

    @property
    def failed(self) -> int:
        return self.count("FailedCall(C)")

    @property
    def created(self) -> int:
        return self.count("TotalCallCreated")

    def diagnostics(self) -> str:
        """The bits of SIPp's output that explain a failure, for assertion messages."""
        out = [f"sipp {self.label}: rc={self.returncode} created={self.created} "
               f"ok={self.successful} failed={self.failed}"]
        out += [f"  {k}={v}" for k, v in self.stats.items()
                if k.startswith("Failed") and k.endswith("(C)") and v not in ("0", "")]
        for name in (f"{self.label}.errors.log", f"{self.label}.screen.log",
                     f"{self.label}.stderr"):
            path = self.workdir / name
            if path.exists():
                text = path.read_text(errors="replace")
                out.append(f"--- {name} (last 1500 chars) ---\n{text[-1500:]}")
        return "\n".join(out)


def _sipp_common(host: str, transport: str) -> list[str]:
    assert SIPP is not None
    return [SIPP, "-i", host, "-t", transport, "-nostdin", "-max_log_size", "1000000"]


def start_sipp_uas(workdir: Path, host: str, port: int, transport: str = "u1",
                   timeout: float = 60.0, label: str = "uas") -> subprocess.Popen:
    """Start ``sipp -sn uas`` on ``host:port`` and wait until it is bound. It quits by
    itself after ``timeout`` s; stop it earlier with ``stop_process``."""
    cmd = _sipp_common(host, transport) + [
        "-sn", "uas", "-p", str(port), "-timeout", f"{int(timeout)}s",
        "-trace_err", "-error_file", str(workdir / f"{label}.errors.log")]
    return _start_bound_sipp(cmd, workdir, host, port, transport, label)


def _start_bound_sipp(cmd: list[str], workdir: Path, host: str, port: int, transport: str,
                      label: str) -> subprocess.Popen:
    """Start a SIPp that listens on ``host:port`` and wait until it is bound; stderr goes
    to ``<label>.stderr`` and is quoted when it does not start."""
    with open(workdir / f"{label}.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    proto = "tcp" if transport.startswith("t") else "udp"
    try:
        wait_until_bound(proc, [(proto, host, port)])
    except (RuntimeError, TimeoutError) as e:
        stop_process(proc)
        err_text = (workdir / f"{label}.stderr").read_text(errors="replace")
        raise RuntimeError(f"SIPp {label} did not start: {e}\n{err_text[-1500:]}") from None
    return proc


def run_sipp_uac(workdir: Path, host: str, target: str, *, calls: int, rate: int,
                 transport: str = "u1", timeout: float = 30.0,
                 recv_timeout_ms: int = 5000, label: str = "uac") -> SippResult:
    """Run ``sipp -sn uac`` against ``target`` ("host:port", "[::1]:port") until
    ``calls`` calls are done, bounded by ``-timeout`` (an error when reached) and a
    wall-clock backstop."""
    stf = workdir / f"{label}.stat.csv"
    cmd = _sipp_common(host, transport) + [
        "-sn", "uac", target, "-m", str(calls), "-r", str(rate), "-rp", "1000",
        "-l", str(max(100, rate * 2)),
        "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-recv_timeout", str(recv_timeout_ms),
        "-trace_stat", "-stf", str(stf), "-fd", "1",
        "-trace_err", "-error_file", str(workdir / f"{label}.errors.log"),
        "-trace_screen", "-screen_file", str(workdir / f"{label}.screen.log")]
    with open(workdir / f"{label}.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            stop_process(proc)
        finally:
            if proc.poll() is None:
                stop_process(proc)
    stats: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open(stf, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    return SippResult(proc.returncode, stats, workdir, label)


# -------------------------------------------------------------------------------------------
# SIP over plain sockets.


def _new_tag() -> str:
    return secrets.token_hex(6)


def options_request(server_hostport: str, via_proto: str, via_hostport: str,
                    call_id: str | None = None) -> tuple[bytes, str]:
    """An OPTIONS addressed to the server itself (no user part): the default script
    answers it 200. Returns (bytes, Call-ID)."""
    call_id = call_id or f"probe-{_new_tag()}@e2e"
    msg = (
        f"OPTIONS sip:{server_hostport} SIP/2.0\r\n"
        f"Via: SIP/2.0/{via_proto.upper()} {via_hostport};branch=z9hG4bK{_new_tag()};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"To: <sip:{server_hostport}>\r\n"
        f"From: <sip:probe@{via_hostport}>;tag={_new_tag()}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Accept: application/sdp\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    )
    return msg.encode(), call_id


_SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)


def invite_request(server_hostport: str, via_proto: str, via_hostport: str, call_id: str,
                   *, extra_headers: str = "", body: str = _SDP,
                   content_length: int | str | None = None) -> bytes:
    """An INVITE for bob at the server's own address (the default script: 404) with an
    SDP body; ``content_length`` overrides the true length (a str: any text)."""
    length = len(body.encode()) if content_length is None else content_length
    msg = (
        f"INVITE sip:bob@{server_hostport} SIP/2.0\r\n"
        f"Via: SIP/2.0/{via_proto.upper()} {via_hostport};branch=z9hG4bK{_new_tag()};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"To: Bob <sip:bob@{server_hostport}>\r\n"
        f"From: Alice <sip:alice@{via_hostport}>;tag={_new_tag()}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 314159 INVITE\r\n"
        f"Contact: <sip:alice@{via_hostport}>\r\n"
        f"{extra_headers}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {length}\r\n"
        "\r\n"
        f"{body}"
    )
    return msg.encode()


def status_of(message: bytes) -> int | None:
    """The status code of a response, or None when ``message`` is not a SIP response."""
    if not message.startswith(b"SIP/2.0 ") or len(message) < 12:
        return None
    code = message[8:11]
    return int(code) if code.isdigit() and message[11:12] in (b" ", b"\r") else None


def call_id_of(message: bytes) -> str | None:
    """The Call-ID (long or compact form ``i``) of a message, or None."""
    head = message.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() in (b"call-id", b"i"):
            return value.strip().decode("utf-8", "replace")
    return None


class UdpPeer:
    """A UDP socket on loopback that talks to one server."""

    def __init__(self, server: SiprouterProcess) -> None:
        self.server = server
        self.sock = socket.socket(_family(server.host), socket.SOCK_DGRAM)
        self.sock.bind((server.host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        port = self.sock.getsockname()[1]
        self.hostport = f"[{server.host}]:{port}" if ":" in server.host else f"{server.host}:{port}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> UdpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.server.addr)

    def recv(self, timeout: float) -> bytes | None:
        """One datagram, or None after ``timeout`` s."""
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(70000)
        except TimeoutError:
            return None

    def ping(self, timeout: float = 5.0) -> tuple[int | None, list[bytes]]:
        """Send an OPTIONS to the server and read until its answer arrives. Returns the
        answer's status (None: no answer in time) and every other datagram read before
        it (the answers to whatever was sent earlier: the server handles a socket's
        datagrams in order)."""
        data, call_id = options_request(self.server.hostport, "udp", self.hostport)
        self.send(data)
        others: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv(left)
            if got is None:
                break
            if call_id_of(got) == call_id:
                return status_of(got), others
            others.append(got)
        return None, others


class TcpPeer:
    """A TCP connection to one server, with just enough framing to read responses."""

    def __init__(self, server: SiprouterProcess, timeout: float = 5.0) -> None:
        self.server = server
        self.sock = socket.create_connection(server.addr, timeout=timeout)
        host, port = self.sock.getsockname()[:2]
        self.hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.buf = b""
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TcpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> bool:
        """Send everything; False when the server closed the connection meanwhile."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False on EOF/reset or when the deadline passes."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def recv_message(self, timeout: float = 5.0) -> bytes | None:
        """The next framed message (by Content-Length), or None on EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[: end + 4]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, sep, value = line.partition(b":")
                    if sep and name.strip().lower() in (b"content-length", b"l"):
                        length = int(value.strip() or b"0")
                total = end + 4 + length
                while len(self.buf) < total:
                    if not self._fill(deadline):
                        return None
                msg, self.buf = self.buf[:total], self.buf[total:]
                return msg
            if not self._fill(deadline):
                return None

    def recv_raw(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` s (empty on EOF or nothing)."""
        deadline = time.monotonic() + timeout
        while not self.buf and self._fill(deadline):
            pass
        out, self.buf = self.buf, b""
        return out

    def closed_by_server(self, timeout: float) -> bool:
        """Read and discard until the server closes the connection (True) or ``timeout``
        s pass with the connection still open (False)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return False
            self.buf = b""
        return True

    def ping(self, timeout: float = 5.0) -> tuple[int | None, list[bytes]]:
        """OPTIONS to the server on this connection; like ``UdpPeer.ping``."""
        data, call_id = options_request(self.server.hostport, "tcp", self.hostport)
        if not self.send(data):
            return None, []
        others: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            got = self.recv_message(left)
            if got is None:
                break
            if call_id_of(got) == call_id:
                return status_of(got), others
            others.append(got)
        return None, others


# -------------------------------------------------------------------------------------------
# Issue 3 (stateful proxy): SIPp with our own scenario files, and SIPp's message traces.

#: SIPp scenario files of the stateful-proxy tests.
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
#: Routing scripts of the stateful-proxy tests.
E2E_SCRIPTS = Path(__file__).resolve().parent / "scripts"

__all__ += ["SCENARIOS", "E2E_SCRIPTS", "start_sipp_scenario", "finish_sipp",
            "run_sipp_scenario", "SippTraceEntry", "read_sipp_trace", "header_values",
            "hostport"]


def hostport(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sipp_scenario_cmd(workdir: Path, host: str, transport: str, scenario: Path, label: str,
                       local_port: int, timeout: float, calls: int | None,
                       extra: tuple[str, ...] | list[str]) -> list[str]:
    cmd = _sipp_common(host, transport) + [
        "-sf", str(scenario), "-p", str(local_port),
        "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-trace_msg", "-message_file", str(workdir / f"{label}.messages.log"),
        "-trace_stat", "-stf", str(workdir / f"{label}.stat.csv"), "-fd", "1",
        "-trace_err", "-error_file", str(workdir / f"{label}.errors.log"),
        "-trace_screen", "-screen_file", str(workdir / f"{label}.screen.log")]
    if calls is not None:
        cmd += ["-m", str(calls)]
    return cmd + list(extra)


def _read_sipp_stats(workdir: Path, label: str) -> dict[str, str]:
    stats: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open(workdir / f"{label}.stat.csv", newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    return stats


def start_sipp_scenario(workdir: Path, host: str, port: int, scenario: Path, *,
                        transport: str = "u1", calls: int | None = None,
                        timeout: float = 30.0, label: str = "uas",
                        extra: tuple[str, ...] | list[str] = ()) -> subprocess.Popen:
    """Start SIPp with the server scenario ``scenario`` (it begins with a ``recv``) on
    ``host:port`` and wait until it is bound. With ``calls`` it exits by itself after
    that many calls (status 0 when every one succeeded); ``timeout`` (SIPp's
    ``-timeout``, an error when reached) bounds it in any case. Collect it with
    ``finish_sipp``. Message trace: ``read_sipp_trace(workdir, label)``."""
    cmd = _sipp_scenario_cmd(workdir, host, transport, scenario, label, port, timeout,
                             calls, extra)
    return _start_bound_sipp(cmd, workdir, host, port, transport, label)


def finish_sipp(proc: subprocess.Popen, workdir: Path, label: str,
                wait: float = 10.0) -> SippResult:
    """Wait up to ``wait`` s for a SIPp started by ``start_sipp_scenario`` to exit, stop
    it (SIGTERM, then SIGKILL) if it has not, and return its status and statistics."""
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        stop_process(proc)
    return SippResult(proc.returncode, _read_sipp_stats(workdir, label), workdir, label)


def run_sipp_scenario(workdir: Path, host: str, target: str, scenario: Path, *, calls: int,
                      rate: int = 10, transport: str = "u1", timeout: float = 20.0,
                      recv_timeout_ms: int = 5000, label: str = "uac",
                      extra: tuple[str, ...] | list[str] = ()) -> SippResult:
    """Run the client scenario ``scenario`` against ``target`` until ``calls`` calls are
    done (``rate`` new calls per second), bounded by SIPp's ``-timeout`` (an error when
    reached) and a wall-clock backstop; like ``run_sipp_uac`` but from a file, on a free
    local port, with a message trace (``read_sipp_trace(workdir, label)``)."""
    cmd = _sipp_scenario_cmd(workdir, host, transport, scenario, label, free_port(host),
                             timeout, calls, extra)
    cmd += ["-r", str(rate), "-rp", "1000", "-l", str(max(10, calls)),
            "-recv_timeout", str(recv_timeout_ms), target]
    with open(workdir / f"{label}.stderr", "wb") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout + 10)
        except subprocess.TimeoutExpired:
            stop_process(proc)
    return SippResult(proc.returncode, _read_sipp_stats(workdir, label), workdir, label)


def header_values(message: bytes, name: str) -> list[str]:
    """Every value of header ``name`` (long or compact form; case-insensitive) in
    ``message``'s head, one entry per header line, in order (comma lists not split)."""
    compact = {"via": "v", "contact": "m", "from": "f", "to": "t", "call-id": "i",
               "content-length": "l", "content-type": "c", "subject": "s",
               "supported": "k"}
    want = {name.lower()}
    if name.lower() in compact:
        want.add(compact[name.lower()])
    head = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in head.split("\r\n")[1:]:
        hname, sep, value = line.partition(":")
        if sep and hname.strip().lower() in want:
            out.append(value.strip())
    return out


@dataclass(frozen=True)
class SippTraceEntry:
    """One message of a SIPp ``-trace_msg`` log: when (epoch seconds), ``direction``
    ("sent" or "received"), ``transport`` ("UDP", "TCP") and the message itself."""

    time: float
    direction: str
    transport: str
    data: bytes

    @property
    def start_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    @property
    def method(self) -> str | None:
        """The request method, or None for a response."""
        return None if self.data.startswith(b"SIP/2.0 ") else self.start_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        return status_of(self.data)

    @property
    def call_id(self) -> str | None:
        return call_id_of(self.data)

    @property
    def cseq_method(self) -> str:
        values = header_values(self.data, "CSeq")
        return values[0].split()[-1] if values else ""

    def headers(self, name: str) -> list[str]:
        return header_values(self.data, name)


_TRACE_SEPARATOR = b"-" * 47 + b" "


def read_sipp_trace(workdir: Path, label: str) -> list[SippTraceEntry]:
    """The messages SIPp ``label`` sent and received, in order, from its ``-trace_msg``
    log (lines SIPp writes about lost or ignored messages are skipped)."""
    try:
        raw = (workdir / f"{label}.messages.log").read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    pos = raw.find(_TRACE_SEPARATOR)
    while pos >= 0:
        stamp_end = raw.find(b"\n", pos)
        what_end = raw.find(b"\n", stamp_end + 1)
        if stamp_end < 0 or what_end < 0:
            break
        stamp = raw[pos + len(_TRACE_SEPARATOR):stamp_end].decode(errors="replace").split()
        words = raw[stamp_end + 1:what_end].decode(errors="replace").split()
        # (a line about a lost message has no line end: the next separator follows it)
        nxt = raw.find(_TRACE_SEPARATOR, what_end)
        # "UDP message sent (508 bytes):" / "TCP message received [307] bytes :"
        if (len(stamp) >= 2 and len(words) >= 4 and words[1] == "message"
                and words[2] in ("sent", "received")):
            length = int(words[3].strip("()[]"))
            body_at = what_end + 1
            while raw[body_at:body_at + 1] == b"\n":
                body_at += 1
            date, clock = stamp[0], stamp[1]
            whole, _, frac = clock.partition(".")
            when = time.mktime(time.strptime(f"{date} {whole}", "%Y-%m-%d %H:%M:%S"))
            when += float("0." + frac) if frac else 0.0
            entries.append(SippTraceEntry(when, words[2], words[0],
                                          raw[body_at:body_at + length]))
        pos = nxt
    return entries
