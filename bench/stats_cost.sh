#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# What keeping statistics costs (issue 7): ../shared/bench scenario S1 (stateless relay),
# alternating this checkout ("with") and a copy with every counting line removed
# (bench/strip_stats.py, "without"), RUNS times each, then the medians of the server's
# CPU µs per call. Only the fixed-rate run (500/s for 20 s): no rate search.
#
#   bench/stats_cost.sh [RUNS] [SCENARIO]      # default 5 S1
#
# Needs a quiet box: nothing else running (the bench harness reports other CPU use).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=${BENCH_DIR:-$repo/../shared/bench}
runs=${1:-5}
scen=${2:-S1}
work=$(mktemp -d /tmp/stats-cost.XXXXXX)
without=$work/without
git -C "$repo" worktree add -q --detach "$without" HEAD
trap 'git -C "$repo" worktree remove --force "$without"' EXIT
# The working tree's siprouter/ (uncommitted changes included), then stripped.
rm -rf "$without/siprouter" && cp -r "$repo/siprouter" "$without/siprouter"
python3 "$repo/bench/strip_stats.py" "$without"
for i in $(seq 1 "$runs"); do
    for arm in with without; do
        dir=$repo; [[ $arm == without ]] && dir=$without
        SIPROUTER_REPO=$dir SIPROUTER_VARIANTS=${SIPROUTER_VARIANTS:-uvloop} \
        BENCH_MAX_STEPS=0 BENCH_RESULTS=$work/$arm \
            bash "$bench/run.sh" siprouter "$scen" >"$work/$arm-$i.log" 2>&1 \
            || { echo "run $arm $i failed: $work/$arm-$i.log" >&2; exit 1; }
        echo "run $i $arm done"
    done
done
python3 - "$work" <<'PY'
import json, pathlib, statistics, sys
work = pathlib.Path(sys.argv[1])
med = {}
for arm in ("with", "without"):
    vals = []
    for f in sorted((work / arm).glob("*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            vals.append(r.get("cpu_us_per_call_clean") or r["cpu_us_per_call"])
    med[arm] = statistics.median(vals)
    print(f"{arm:8s} runs={len(vals)} cpu_us_per_call={', '.join(f'{v:.1f}' for v in vals)}"
          f"  median={med[arm]:.1f}")
print(f"statistics cost: {100 * (med['with'] / med['without'] - 1):+.2f} % of S1 CPU per call")
PY
