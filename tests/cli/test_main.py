# SPDX-License-Identifier: Apache-2.0
"""The ``siprouter`` command: --version, ``run --check``, flag precedence, config errors."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from siprouter import __version__
from siprouter.cli.main import EXIT_CONFIG_ERROR, main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``siprouter ARGS`` in a clean directory with a private XDG_DATA_HOME and no
    SIPROUTER_CONFIG; returns the click Result."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SIPROUTER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    def _run(*args: str, env: dict[str, str] | None = None):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return _run


def test_version(cli) -> None:
    result = cli("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"siprouter {__version__}"


def test_check_with_embedded_defaults(cli, tmp_path: Path) -> None:
    result = cli("run", "--check")
    assert result.exit_code == 0, result.output
    assert "configuration OK (embedded defaults)" in result.output
    assert "listen:    udp:127.0.0.1:5060, tcp:127.0.0.1:5060" in result.output
    assert f"data_dir:  {tmp_path / 'xdg' / 'siprouter'}" in result.output


def test_embedded_defaults_are_explained_in_help(cli) -> None:
    result = cli("run", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "only the embedded defaults are used" in text
    assert "SIPROUTER_CONFIG" in text
    for flag in ("--config", "--listen", "--script", "--data-dir", "--log-level", "--check"):
        assert flag in text


def test_no_file_is_searched_for(cli, tmp_path: Path) -> None:
    # A siprouter.toml in the current directory is NOT read without --config.
    (tmp_path / "siprouter.toml").write_text('[log]\nlevel = "nonsense"\n')
    result = cli("run", "--check")
    assert result.exit_code == 0, result.output
    assert "embedded defaults" in result.output


def test_flags_override_the_file(cli, tmp_path: Path) -> None:
    (tmp_path / "route.py").write_text("async def request_route(req, ctx): pass\n")
    (tmp_path / "siprouter.toml").write_text(
        '[server]\nlisten = ["udp:127.0.0.1:5070"]\ndata_dir = "/srv/a"\n'
        '[log]\nlevel = "error"\nformat = "json"\n'
    )
    result = cli(
        "run", "--check", "--config", "siprouter.toml",
        "--listen", "udp:127.0.0.1:5080", "--listen", "tcp:[::1]:5080",
        "--data-dir", "/srv/b", "--script", "route.py", "--log-level", "DEBUG",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "configuration OK (siprouter.toml)" in result.output
    assert "listen:    udp:127.0.0.1:5080, tcp:[::1]:5080" in result.output
    assert "data_dir:  /srv/b" in result.output
    assert f"script:    {tmp_path / 'route.py'}" in result.output
    assert "log:       debug (json)" in result.output


def test_file_values_used_when_no_flag(cli, tmp_path: Path) -> None:
    (tmp_path / "siprouter.toml").write_text('[server]\nlisten = ["tcp:127.0.0.1:5070"]\n')
    result = cli("run", "--check", "-c", "siprouter.toml")
    assert result.exit_code == 0, result.output
    assert "listen:    tcp:127.0.0.1:5070\n" in result.output


def test_siprouter_config_env_names_the_file(cli, tmp_path: Path) -> None:
    (tmp_path / "from-env.toml").write_text('[server]\ndomains = ["example.org"]\n')
    result = cli("run", "--check", env={"SIPROUTER_CONFIG": str(tmp_path / "from-env.toml")})
    assert result.exit_code == 0, result.output
    assert "from-env.toml" in result.output
    assert "domains:   example.org" in result.output


def test_bad_config_exits_2_with_message_and_no_traceback(cli, tmp_path: Path) -> None:
    (tmp_path / "siprouter.toml").write_text(
        '[server]\nlisten = ["udp:127.0.0.1:5060", "udp:1.2.3.4:99999"]\n'
    )
    result = cli("run", "--check", "--config", "siprouter.toml")
    assert result.exit_code == EXIT_CONFIG_ERROR == 2
    assert (
        'siprouter.toml: server.listen[1] = "udp:1.2.3.4:99999": expected PROTO:HOST:PORT with '
        "PROTO udp or tcp and PORT 1-65535"
    ) in result.output
    assert "Traceback" not in result.output


def test_bad_config_stops_run_before_the_server(cli, tmp_path: Path) -> None:
    (tmp_path / "siprouter.toml").write_text("[server]\nlisen = []\n")
    result = cli("run", "--config", "siprouter.toml")  # no --check: must not start anything
    assert result.exit_code == 2
    assert "siprouter.toml: server.lisen = []: unknown key" in result.output


def test_missing_config_file_exits_2(cli) -> None:
    result = cli("run", "--check", "--config", "nope.toml")
    assert result.exit_code == 2
    assert "nope.toml: cannot read: file not found" in result.output


def test_bad_listen_flag_exits_2(cli) -> None:
    result = cli("run", "--check", "--listen", "udp:127.0.0.1:99999")
    assert result.exit_code == 2
    assert 'command line: server.listen[0] = "udp:127.0.0.1:99999"' in result.output


def test_bad_log_level_flag_exits_2(cli) -> None:
    result = cli("run", "--check", "--log-level", "loud")
    assert result.exit_code == 2
    assert "--log-level" in result.output


def test_python_dash_m_entry_point() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "siprouter", "--version"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == f"siprouter {__version__}"


def test_check_loads_the_routing_script(cli, tmp_path: Path) -> None:
    (tmp_path / "route.py").write_text("async def request_route(req, ctx):\n    return None\n")
    result = cli("run", "--check", "--script", "route.py")
    assert result.exit_code == 0, result.output
    (tmp_path / "broken.py").write_text("async def request_route(req, ctx):\n    return (\n")
    result = cli("run", "--check", "--script", "broken.py")
    assert result.exit_code == 2
    assert "routing script error: " in result.output
    assert "broken.py:" in result.output
    assert "Traceback" not in result.output


def _run_server(args: list[str], tmp_path: Path, wait_for: str) -> tuple[int, list[str]]:
    """Start ``python -m siprouter run ARGS``, read stderr until a line contains
    ``wait_for`` (at most 15 s), then SIGTERM it; returns (exit status, stderr lines)."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(REPO)}
    env.pop("SIPROUTER_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "siprouter", "run", *args],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    # Read raw bytes from the pipe: select() on a buffered text stream misses lines that
    # the buffer already holds (two log lines in one read used to stall this for 15 s).
    buf = b""
    deadline = time.monotonic() + 15
    try:
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        while time.monotonic() < deadline and wait_for.encode() not in buf:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break  # the server exited
                buf += chunk
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=15)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = (buf + rest).decode().splitlines(keepends=True)
    return proc.returncode, lines


def test_run_logs_then_serves_until_sigterm(tmp_path: Path) -> None:
    status, lines = _run_server(
        ["--listen", "udp:127.0.0.1:0", "--listen", "tcp:127.0.0.1:0"], tmp_path, "listening on"
    )
    assert status == 0, "".join(lines)
    assert "starting on udp:127.0.0.1:0, tcp:127.0.0.1:0" in lines[0]
    assert "to listen elsewhere" not in lines[0]  # only said for the default sockets
    assert any("listening on" in line for line in lines)
    assert all(line.count("\n") == 1 for line in lines)  # one line per event


def test_first_log_line_says_how_to_listen_elsewhere(tmp_path: Path) -> None:
    # The embedded default sockets (127.0.0.1:5060) may be taken on this machine; the first
    # line is written before any socket is opened either way.
    status, lines = _run_server([], tmp_path, "listening on")
    assert "udp:127.0.0.1:5060, tcp:127.0.0.1:5060" in lines[0]
    assert "--listen PROTO:HOST:PORT" in lines[0]
    assert status in (0, 1), "".join(lines)  # 1: the default port was in use


def test_bad_script_stops_run_with_status_2(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def request_route(req, ctx):\n    return (\n")
    status, lines = _run_server(
        ["--listen", "udp:127.0.0.1:0", "--script", "broken.py"], tmp_path, "listening on"
    )
    assert status == 2
    assert any("broken.py:" in line for line in lines)
