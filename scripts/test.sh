#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Install everything the test suite needs, then run the whole suite:
#   - Debian packages for the end-to-end tests: sip-tester (SIPp) and sipsak, when missing;
#   - this package, editable, with its [test] extra (pytest, hypothesis, uvloop, ...).
# Arguments are passed to pytest, e.g.  scripts/test.sh tests/sip -x
#
# Python: the active virtual environment if there is one; else python3 itself if pip may
# install into it; else ./.venv, created here (Debian's own python3 is "externally managed",
# PEP 668, and refuses pip installs).
set -eu
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pkgs=""
command -v sipp >/dev/null 2>&1 || pkgs="$pkgs sip-tester"
command -v sipsak >/dev/null 2>&1 || pkgs="$pkgs sipsak"
# Storage tests: real PostgreSQL and MariaDB servers, and Kamailio's schema files.
[ -n "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null)" ] || pkgs="$pkgs postgresql"
command -v mariadb-install-db >/dev/null 2>&1 || pkgs="$pkgs mariadb-server"
[ -d /usr/share/kamailio/db_sqlite ] || pkgs="$pkgs kamailio-sqlite-modules"
[ -d /usr/share/kamailio/postgres ] || pkgs="$pkgs kamailio-postgres-modules"
[ -d /usr/share/kamailio/mysql ] || pkgs="$pkgs kamailio-mysql-modules"

py=python3
if [ -z "${VIRTUAL_ENV:-}" ] && ! python3 -c '
import importlib.util, os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
in_venv = sys.prefix != sys.base_prefix
sys.exit(0 if importlib.util.find_spec("pip") and (in_venv or not managed) else 1)
'; then
    py=.venv/bin/python
    if [ ! -x "$py" ] && ! python3 -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        pkgs="$pkgs python3-venv"    # Debian ships venv's ensurepip separately
    fi
fi

if [ -n "$pkgs" ]; then
    echo "scripts/test.sh: installing Debian packages:$pkgs" >&2
    as_root apt-get update
    # shellcheck disable=SC2086  # word splitting of the package list is intended
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y $pkgs
fi
if [ "$py" = .venv/bin/python ] && [ ! -x "$py" ]; then
    python3 -m venv .venv
fi

echo "scripts/test.sh: using $("$py" -c 'import sys; print(sys.executable)')" >&2
"$py" -m pip install -q -e '.[test]'
exec "$py" -m pytest -q "$@"
