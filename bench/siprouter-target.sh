#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# siprouter as a target of the shared SIP benchmark harness (../shared/bench, README
# "Adding a target"); ../shared/bench/targets/siprouter.sh hands over to this file.
#
#   siprouter-target.sh info
#   siprouter-target.sh variants <scenario>
#   siprouter-target.sh start <scenario> <variant> <listen_port> <nexthop_port> <rundir>
#   siprouter-target.sh stop <rundir> <pid>...
#
# Scenarios (UDP 127.0.0.1:<listen_port> only, like the Kamailio target):
#   S1  stateless relay of every request to 127.0.0.1:<nexthop_port>, examples/stateless_nexthop.py
#   S2  stateful relay with Record-Route, examples/stateful_nexthop.py
#   S3  registrar, in-memory location ([usrloc] db_mode 0), examples/registrar.py
#   S4  S3 with digest auth against the SQLite subscriber table <rundir>/subscriber.sqlite,
#       filled from BENCH_USERS_FILE (plain passwords, as Kamailio's calculate_ha1),
#       examples/registrar_auth.py
#   S5  S3 for REGISTER plus S2 for calls, routed by location lookup, examples/location_call.py
#
# Variants (SIPROUTER_VARIANTS picks a subset) pick the event loop: "uvloop" (what `siprouter run` uses when uvloop is
# installed) and "asyncio" (uvloop made unimportable, so the server falls back to plain
# asyncio; the server has no switch of its own). Without uvloop only "asyncio" is offered.
#
# The code run is this checkout: SIPROUTER_REPO, else the directory above this script.
# SIPROUTER_PYTHON picks the interpreter (default python3).
set -euo pipefail

repo=${SIPROUTER_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
py=${SIPROUTER_PYTHON:-python3}

have_uvloop() { "$py" -c 'import uvloop' >/dev/null 2>&1; }

cmd=${1:-}
shift || true
case "$cmd" in
info)
    ver=$(PYTHONPATH="$repo" "$py" -c 'import siprouter; print(siprouter.__version__)')
    rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$repo" status --porcelain -- siprouter examples 2>/dev/null | head -1)
    echo "siprouter $ver ($rev${dirty:+ +local changes}) on $("$py" -V 2>&1)"
    exit 0 ;;
variants)
    # SIPROUTER_VARIANTS narrows the list (e.g. "uvloop" for a shorter sitting). S2 also
    # has "ds": the next hop reached through a one-destination dispatcher set.
    if [[ -n ${SIPROUTER_VARIANTS:-} ]]; then echo "$SIPROUTER_VARIANTS"
    elif have_uvloop; then echo "asyncio uvloop${1:+$([[ $1 == S2 ]] && echo " ds")}"
    else echo "asyncio${1:+$([[ $1 == S2 ]] && echo " ds")}"; fi
    exit 0 ;;
stop)
    exit 0 ;;   # the harness SIGTERMs the PID; siprouter exits on SIGTERM
start) ;;
*)  echo "usage: $0 info | variants <scen> | start <scen> <variant> <port> <nexthop_port> <rundir> | stop <rundir> <pid>..." >&2
    exit 2 ;;
esac

scen=$1 variant=$2 port=$3 nh_port=$4 rundir=$5
case "$scen" in
    S1) script="$repo/examples/stateless_nexthop.py" ;;
    S2) script="$repo/examples/stateful_nexthop.py" ;;
    S3) script="$repo/examples/registrar.py" ;;
    S4) script="$repo/examples/registrar_auth.py" ;;
    S5) script="$repo/examples/location_call.py" ;;
    *)  echo "siprouter: unknown scenario $scen" >&2; exit 2 ;;
esac
extra_toml=""
if [[ $variant == ds ]]; then
    # S2 through the dispatcher (issue 6): set 1 holds the next hop only, round robin
    # (alg 4), failover on (flags 2), no probing; examples/dispatcher.py selects it.
    [[ $scen == S2 ]] || { echo "siprouter: variant ds is for S2 only" >&2; exit 2; }
    script="$repo/examples/dispatcher.py"
    mkdir -p "$rundir"
    echo "1 sip:127.0.0.1:$nh_port" >"$rundir/dispatcher.list"
    extra_toml="[dispatcher]
list_file = \"$rundir/dispatcher.list\"
flags = 2
ds_ping_interval = 0
"
    if have_uvloop; then variant_loop=uvloop; else variant_loop=asyncio; fi
else
    variant_loop=$variant
fi
case "$variant_loop" in
    asyncio) launcher='import sys; sys.modules["uvloop"] = None  # import uvloop -> ImportError
from siprouter.cli.main import main; main()' ;;
    uvloop)
        have_uvloop || { echo "siprouter: variant uvloop, but uvloop is not installed" >&2; exit 1; }
        launcher='from siprouter.cli.main import main; main()' ;;
    default) launcher='from siprouter.cli.main import main; main()' ;;
    *)  echo "siprouter: unknown variant $variant (asyncio, uvloop)" >&2; exit 2 ;;
esac

mkdir -p "$rundir"
db="$rundir/subscriber.sqlite"
if [[ $scen == S4 ]]; then
    # The subscriber table, as the Kamailio target builds it: username, domain, password.
    : "${BENCH_USERS_FILE:?S4 needs BENCH_USERS_FILE (username;password per line)}"
    rm -f "$db"
    PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$py" - "$db" "$BENCH_USERS_FILE" "${BENCH_DOMAIN:-bench.local}" <<'PY'
import asyncio, sys
from siprouter.storage import open_storage

async def main(path, users_file, domain):
    rows = []
    with open(users_file) as f:
        for line in f:
            user, _, password = line.strip().partition(";")
            if user:
                rows.append({"username": user, "domain": domain, "password": password})
    async with open_storage(f"sqlite:///{path}") as db:
        await db.ensure_tables()
        await db.insert_many("subscriber", rows)

asyncio.run(main(*sys.argv[1:]))
PY
fi
config="$rundir/siprouter.toml"
cat >"$config" <<EOF
# generated by $0 for $scen/$variant
[server]
listen = ["udp:127.0.0.1:$port"]
data_dir = "$rundir/data"

[routing]
script = "$script"
params = { next_hop = "sip:127.0.0.1:$nh_port" }

[database]
url = "sqlite:///$db"

[usrloc]
db_mode = 0

[log]
level = "warning"
$extra_toml
EOF

PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" \
    "$py" -c "$launcher" run --config "$config" </dev/null >"$rundir/server.log" 2>&1 &
pid=$!

# Wait until the UDP socket is bound (so a failed start is reported here, with its log),
# then check that the variant's event loop is the one running.
fail() {
    echo "siprouter: $*" >&2
    tail -20 "$rundir/server.log" >&2
    kill -TERM "$pid" 2>/dev/null || true
    exit 1
}
port_hex=$(printf '%04X' "$port")
bound=
for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || fail "exited at start"
    if grep -q "^ *[0-9]*: 0100007F:$port_hex " /proc/net/udp 2>/dev/null; then bound=1; break; fi
    sleep 0.05
done
[[ -n $bound ]] || fail "UDP 127.0.0.1:$port not bound after 10 s"
if [[ $variant_loop == uvloop ]] && ! grep -q uvloop "/proc/$pid/maps"; then
    fail "variant uvloop, but the server did not load uvloop"
fi
if [[ $variant_loop == asyncio ]] && grep -q uvloop "/proc/$pid/maps"; then
    fail "variant asyncio, but the server loaded uvloop"
fi
echo "$pid"
