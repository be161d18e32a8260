# SPDX-License-Identifier: Apache-2.0
"""sipsak (Debian's SIP swiss army knife) against the default script, over UDP and TCP:
a second real SIP peer besides SIPp, with its own way of writing requests (rport and
alias in Via, its own Call-IDs).

sipsak 0.9.8 cuts the last digit of a five-digit port in the URI it is given, so the
requests name the server by a configured domain and reach it with ``-p`` (outbound
proxy) instead of by address. sipsak resolves every host it is given, so the domain is
"localhost" and the foreign target an address (TEST-NET-1, never contacted)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.e2e

SIPSAK = shutil.which("sipsak")
needs_sipsak = pytest.mark.skipif(
    SIPSAK is None, reason="!!! sipsak IS NOT INSTALLED (apt-get install sipsak): did NOT run !!!")


DOMAIN = "localhost"
SERVER_TOML = f'[server]\ndomains = ["{DOMAIN}"]\n'


def sipsak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIPSAK, "-vv", *args], capture_output=True, text=True, timeout=30)


@needs_sipsak
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_options_to_the_server_itself_gets_200(siprouter, proto):
    server = siprouter.start(None, protos=("udp", "tcp"), extra_toml=SERVER_TOML)
    extra = ["-E", "tcp"] if proto == "tcp" else []
    result = sipsak("-s", f"sip:{DOMAIN}", "-p", server.hostport, *extra)
    assert "SIP/2.0 200 OK" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0
    # The reply tells sipsak its address as the server saw it (RFC 3581 rport).
    assert "received=127.0.0.1" in result.stdout


@needs_sipsak
def test_foreign_domain_is_not_relayed(siprouter):
    server = siprouter.start(None, extra_toml=SERVER_TOML)
    result = sipsak("-s", "sip:bob@192.0.2.1", "-p", server.hostport)
    assert "SIP/2.0 403 Not relaying" in result.stdout, result.stdout + result.stderr
    assert result.returncode != 0


@needs_sipsak
def test_own_domain_without_registrar_is_404(siprouter):
    server = siprouter.start(None, extra_toml=SERVER_TOML)
    result = sipsak("-s", f"sip:nobody@{DOMAIN}", "-p", server.hostport)
    assert "SIP/2.0 404 Not Found" in result.stdout, result.stdout + result.stderr
