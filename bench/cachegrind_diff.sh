#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Machine instructions per call of bench/inproc.py, counted by cachegrind: deterministic,
# unlike CPU time on this VM (±10 % run to run). Two runs of N1 and N2 calls, the
# difference divided by N2-N1, so start-up and warm-up cancel out; the cyclic collector
# is off while measuring (when it runs is not deterministic; measure it apart, see
# docs/performance.md).
#
#   bench/cachegrind_diff.sh S2            # this checkout
#   SIPROUTER_REPO=/tmp/old bench/cachegrind_diff.sh S2 300 1300
#
# Prints Ir (instructions), I1/D1 misses and LL data misses per call. One run at a time
# (inproc.py binds UDP 127.0.0.1:15060). About 2-3 minutes for S2. Needs valgrind.
set -euo pipefail
scen=${1:?usage: $0 S2|S3 [N1 N2]}
n1=${2:-300} n2=${3:-1300}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=$(python3 -c 'import sys; print(sys.executable)')   # the interpreter, not a shim
warm=100; [[ $scen == S3 ]] && warm=2000

count() {
    valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
        "$py" "$here/inproc.py" "$scen" "$1" --warm "$warm" --no-gc 2>&1 |
    python3 -c '
import re, sys
want = {"I   refs": 0, "I1  misses": 0, "D1  misses": 0, "LLd misses": 0}
for line in sys.stdin:
    m = re.search(r"(I   refs|I1  misses|D1  misses|LLd misses):\s+([\d,]+)", line)
    if m:
        want[m.group(1)] = int(m.group(2).replace(",", ""))
print(*want.values())'
}
a=$(count "$n1")
b=$(count "$n2")
python3 - "$a" "$b" "$((n2 - n1))" "$scen" <<'PY'
import sys
a, b = ([int(x) for x in s.split()] for s in sys.argv[1:3])
n, scen = int(sys.argv[3]), sys.argv[4]
names = ("Ir", "I1miss", "D1miss", "LLdmiss")
print(scen, "per call:", "  ".join(f"{k}={(y - x) / n:,.0f}" for k, x, y in zip(names, a, b)))
PY
