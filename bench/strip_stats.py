# SPDX-License-Identifier: Apache-2.0
"""Remove the hot-path statistics from a copy of siprouter: the "without" arm of
bench/stats_cost.sh (issue 7: keeping statistics must cost < 3 % of S1 CPU per call).

Every line of siprouter/proxy/core.py and tm.py that only counts (``self.stats.x += 1``,
``self.stats.count_request(...)`` …) becomes ``pass``; nothing else changes.

    python3 bench/strip_stats.py /path/to/copy
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_COUNTING = re.compile(
    r"^(\s*)((self|core|self\.core)\.stats\.(\w+ \+= 1|count_\w+\(.*\)))\s*(#.*)?$")
FILES = ("siprouter/proxy/core.py", "siprouter/proxy/tm.py")


def strip(root: Path) -> int:
    total = 0
    for rel in FILES:
        path = root / rel
        lines = path.read_text().splitlines(keepends=True)
        out = []
        for line in lines:
            m = _COUNTING.match(line)
            out.append(f"{m.group(1)}pass  # statistics stripped\n" if m else line)
            total += m is not None
        path.write_text("".join(out))
    return total


if __name__ == "__main__":
    n = strip(Path(sys.argv[1]))
    print(f"{n} counting lines stripped")
    sys.exit(0 if n else 1)
