# SPDX-License-Identifier: Apache-2.0
"""The share of a py-spy profile spent keeping statistics (issue 7: < 3 % of S1).

Record the server under load with line numbers (py-spy's default), in raw format:

    py-spy record --pid PID --duration 15 --rate 500 --format raw --output s1.raw

then ``python3 bench/stats_share.py s1.raw``. A sample counts as statistics when one of
its frames is in siprouter/proxy/stats.py or on a counting line of the proxy (the lines
bench/strip_stats.py removes).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strip_stats import _COUNTING, FILES  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"\(([^():]+):(\d+)\)")


def counting_lines() -> set[tuple[str, int]]:
    out = set()
    for rel in FILES:
        for no, line in enumerate((REPO / rel).read_text().splitlines(), 1):
            if _COUNTING.match(line):
                out.add((rel, no))
    return out


def share(raw: Path) -> tuple[int, int, dict[str, int]]:
    lines = counting_lines()
    total = hits = 0
    where: dict[str, int] = {}
    for row in raw.read_text().splitlines():
        stack, _, n_text = row.rpartition(" ")
        n = int(n_text)
        total += n
        for frame in stack.split(";"):
            m = _FRAME.search(frame)
            if m is None:
                continue
            path, no = m.group(1), int(m.group(2))
            # py-spy names files relative to sys.path, or by their base name alone.
            base = path.rsplit("/", 1)[-1]
            if path.endswith("proxy/stats.py") or any(
                    base == rel.rsplit("/", 1)[-1] and no == ln for rel, ln in lines):
                hits += n
                where[frame] = where.get(frame, 0) + n
                break
    return total, hits, where


if __name__ == "__main__":
    total, hits, where = share(Path(sys.argv[1]))
    print(f"{hits} of {total} samples keep statistics: {100 * hits / max(total, 1):.2f} %")
    for frame, n in sorted(where.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {frame}")
