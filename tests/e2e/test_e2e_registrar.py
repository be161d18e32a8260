# SPDX-License-Identifier: Apache-2.0
"""End to end: registrar, location and digest authentication (issue 5, "Done when").

The shipped default script on a server with no configuration beyond its listen sockets
and data directory, so the embedded SQLite database holds the subscribers; SIPp, sipsak
and pyVoIP (PyPI) register and call over loopback. Bounded: SIPp -timeout, subprocess
timeouts, a few calls."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from e2e_support import (
    SCENARIOS,
    SIPP,
    SIPP_MISSING,
    SiprouterFactory,
    finish_sipp,
    free_port,
    run_sipp_scenario,
    start_sipp_scenario,
)

from siprouter.storage import open_storage

pytestmark = pytest.mark.e2e
needs_sipp = pytest.mark.skipif(SIPP is None, reason=SIPP_MISSING)
SIPSAK = shutil.which("sipsak")

HOST = "127.0.0.1"
N_USERS = 10_000


def add_users(data_dir: Path, users: dict[str, str], domain: str = HOST) -> None:
    """Subscribers in the server's embedded database (what `siprouter user add` does,
    in one go for thousands)."""

    async def fill() -> None:
        async with open_storage(f"sqlite:///{data_dir / 'siprouter.sqlite'}") as db:
            await db.ensure_tables()
            await db.insert_many("subscriber", [
                {"username": u, "domain": domain, "password": p} for u, p in users.items()])

    data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(fill())


def injection_file(path: Path, rows: list[tuple[str, ...]]) -> Path:
    path.write_text("SEQUENTIAL\n" + "".join(";".join(r) + "\n" for r in rows))
    return path


def auth_keyword(user: str, password: str) -> str:
    # SIPp does not expand [fieldN] inside [authentication]; a whole keyword from the
    # injection file it does.
    return f"[authentication username={user} password={password}]"


def run_siprouter_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    env.pop("SIPROUTER_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "siprouter", *args, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=30, env=env)


@needs_sipp
def test_ten_thousand_users_register_with_digest_and_wrong_passwords_never_pass(
        siprouter: SiprouterFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    users = {f"u{i:05d}": f"pw{i:05d}x" for i in range(N_USERS)}
    add_users(data, users)
    server = siprouter.start(None, protos=("udp",), data_dir=data, config_file=False)
    inf = injection_file(tmp_path / "users.csv", [
        (u, auth_keyword(u, p), f"{HOST}:{20000 + i % 30000}")
        for i, (u, p) in enumerate(users.items())])
    res = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "reg_auth.xml",
                            calls=N_USERS, rate=1000, timeout=120, label="reg",
                            extra=["-inf", str(inf)])
    assert res.returncode == 0, res.diagnostics()
    assert res.successful == N_USERS
    # Every one of them is in the location service, found over the management socket.
    shown = run_siprouter_cli("ul", "show", "--json", data_dir=data)
    assert shown.returncode == 0, shown.stderr
    assert len({u for u in users if f'"{u}"' in shown.stdout}) == N_USERS

    wrong = injection_file(tmp_path / "wrong.csv", [
        (u, auth_keyword(u, p + "-not"), f"{HOST}:5999") for u, p in list(users.items())[:50]])
    res = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "reg_auth_wrong.xml",
                            calls=50, rate=50, timeout=30, label="wrong",
                            extra=["-inf", str(wrong)])
    assert res.returncode == 0, res.diagnostics()  # every retry got 401 again, none a 200
    assert res.successful == 50
    assert server.alive()


@needs_sipp
@pytest.mark.parametrize("transport", [pytest.param("u1", id="udp")])
def test_registered_user_is_called_through_the_proxy_and_again_after_a_restart(
        siprouter: SiprouterFactory, tmp_path: Path, transport: str) -> None:
    data = tmp_path / "data"
    add_users(data, {"alice": "alice-pw", "bob": "bob-pw"})
    port = free_port(HOST)
    server = siprouter.start(None, data_dir=data, port=port, config_file=False)
    uas_port = free_port(HOST)
    # bob's phone: a SIPp callee on uas_port, registered with its address as Contact.
    reg = injection_file(tmp_path / "bob.csv", [
        ("bob", auth_keyword("bob", "bob-pw"), f"{HOST}:{uas_port};transport={'tcp' if transport == 't1' else 'udp'}")])
    res = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "reg_auth.xml",
                            calls=1, rate=1, timeout=15, label="reg-bob", transport=transport,
                            extra=["-inf", str(reg)])
    assert res.returncode == 0, res.diagnostics()
    caller = injection_file(tmp_path / "alice.csv", [("alice", auth_keyword("alice", "alice-pw"), "bob")])

    def call(label: str) -> None:
        uas = start_sipp_scenario(tmp_path, HOST, uas_port, SCENARIOS / "uas_answer.xml",
                                  transport=transport, calls=1, timeout=30, label=f"uas-{label}")
        res = run_sipp_scenario(tmp_path, HOST, server.hostport, SCENARIOS / "uac_auth_call.xml",
                                calls=1, rate=1, timeout=20, label=f"uac-{label}",
                                transport=transport, extra=["-inf", str(caller)])
        callee = finish_sipp(uas, tmp_path, f"uas-{label}")
        assert res.returncode == 0, res.diagnostics() + "\n" + server.log_tail()
        assert callee.returncode == 0, callee.diagnostics()

    call("first")
    # db_mode 2 (the default) writes the bindings at stop and loads them at start.
    assert server.stop() == 0
    server = siprouter.start(None, data_dir=data, port=port, config_file=False)
    call("after-restart")


@pytest.mark.skipif(SIPSAK is None, reason="sipsak is not installed (apt-get install sipsak)")
def test_sipsak_registers_with_a_password_and_is_found(siprouter: SiprouterFactory,
                                                       tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = run_siprouter_cli("user", "add", f"carol@{HOST}", "carol-pw", data_dir=data)
    assert added.returncode == 0, added.stderr
    port = free_port(HOST)
    while port > 9999:  # sipsak cuts ports of five digits in its URIs
        port = free_port(HOST) % 9000 + 1000
    server = siprouter.start(None, protos=("udp",), data_dir=data, port=port, config_file=False)
    ok = subprocess.run([SIPSAK, "-U", "-s", f"sip:carol@{HOST}:{port}", "-a", "carol-pw"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    shown = run_siprouter_cli("ul", "show", "carol", data_dir=data)
    assert "carol" in shown.stdout and "sipsak" in shown.stdout, shown.stdout + shown.stderr
    bad = subprocess.run([SIPSAK, "-U", "-s", f"sip:dave@{HOST}:{port}", "-a", "carol-pw"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0
    assert "401" in bad.stdout + bad.stderr
    wrong = subprocess.run([SIPSAK, "-U", "-s", f"sip:carol@{HOST}:{port}", "-a", "nope"],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode != 0
    assert server.alive()


PYVOIP_CLIENT = textwrap.dedent("""
    import sys, time
    from pyVoIP.VoIP import VoIPPhone, PhoneStatus
    server, port, user, password, my_port = sys.argv[1:6]
    phone = VoIPPhone(server, int(port), user, password, myIP="127.0.0.1", sipPort=int(my_port))
    try:
        phone.start()
    except Exception as e:
        print("START FAILED", type(e).__name__, e, flush=True)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and phone.get_status() != PhoneStatus.REGISTERED:
        time.sleep(0.1)
    print("STATUS", phone.get_status().name, flush=True)
    import os
    os._exit(0)   # pyVoIP's threads would re-register; the server state is what we check
""")


def _pyvoip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PYVOIP_CLIENT, *args], capture_output=True,
                          text=True, timeout=40)


def test_pyvoip_registers_with_a_password_and_is_found(siprouter: SiprouterFactory,
                                                       tmp_path: Path) -> None:
    pytest.importorskip("pyVoIP", reason="pyVoIP is not installed (pip install pyVoIP)")
    data = tmp_path / "data"
    added = run_siprouter_cli("user", "add", f"erin@{HOST}", "erin-pw", data_dir=data)
    assert added.returncode == 0, added.stderr
    server = siprouter.start(None, protos=("udp",), data_dir=data, config_file=False)
    out = _pyvoip(HOST, str(server.port), "erin", "erin-pw", str(free_port(HOST)))
    assert "STATUS REGISTERED" in out.stdout, out.stdout + out.stderr + server.log_tail()
    shown = run_siprouter_cli("ul", "show", "erin", data_dir=data)
    assert "erin" in shown.stdout and "pyVoIP" in shown.stdout, shown.stdout + shown.stderr
    out = _pyvoip(HOST, str(server.port), "erin", "wrong-pw", str(free_port(HOST)))
    assert "STATUS REGISTERED" not in out.stdout, out.stdout
    assert server.alive()


def test_phone_registered_over_tcp_is_called_on_its_connection(siprouter: SiprouterFactory,
                                                               tmp_path: Path) -> None:
    # A phone that registers over TCP listens on no port of its own that the proxy could
    # reach: the proxy must use the phone's connection (the registered contact's
    # `received`). Authentication off to keep the exchange short.
    from e2e_support import TcpPeer, UdpPeer, call_id_of, status_of

    server = siprouter.start(None, params={"auth": False})
    with TcpPeer(server) as phone, UdpPeer(server) as caller:
        register = (
            f"REGISTER sip:{HOST} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP {HOST}:5999;branch=z9hG4bK-tcpreg1\r\n"
            f"From: <sip:frank@{HOST}>;tag=r1\r\nTo: <sip:frank@{HOST}>\r\n"
            f"Call-ID: tcpreg-1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:frank@{HOST}:5999;transport=tcp>\r\nExpires: 300\r\n"
            f"Content-Length: 0\r\n\r\n").encode()
        assert phone.send(register)
        assert status_of(phone.recv_message() or b"") == 200
        invite = (
            f"INVITE sip:frank@{HOST}:{server.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:{caller.sock.getsockname()[1]};branch=z9hG4bK-tcpinv1\r\n"
            f"From: <sip:grace@elsewhere.example>;tag=c1\r\nTo: <sip:frank@{HOST}>\r\n"
            f"Call-ID: tcpcall-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:grace@{HOST}:{caller.sock.getsockname()[1]}>\r\n"
            f"Content-Length: 0\r\n\r\n").encode()
        caller.send(invite)
        got = phone.recv_message(timeout=5.0)
        assert got is not None and got.startswith(b"INVITE sip:frank@"), (got, server.log_tail())
        # Nothing listens on the Contact's port 5999: the INVITE came on the phone's own
        # connection.
        assert call_id_of(got) == "tcpcall-1"
