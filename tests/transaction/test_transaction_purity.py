"""The transaction layer is pure (DESIGN.md, STYLE.md §1): no I/O, no clock; it may import
the stdlib and siprouter.sip only.

Checked on the source, by the modules each file imports: a forbidden import anywhere in
``siprouter/transaction/`` fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TXN_DIR = Path(__file__).resolve().parents[2] / "siprouter" / "transaction"
FORBIDDEN = {"asyncio", "socket", "time", "selectors", "ssl", "threading", "subprocess",
             "uvloop", "dns", "random", "os", "datetime"}
ALLOWED_SIPROUTER = ("siprouter.sip", "siprouter.transaction")


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "." * node.level + (node.module or "")
            elif node.module:
                yield node.lineno, node.module


def _bad(path: Path) -> list[str]:
    bad = []
    for line, name in _imports(path):
        top = name.split(".")[0]
        if name.startswith("."):
            bad.append(f"{path.name}:{line}: relative import {name} (use the absolute name)")
        elif top in FORBIDDEN:
            bad.append(f"{path.name}:{line}: import {name}")
        elif top == "siprouter" and not any(
                name == ok or name.startswith(ok + ".") for ok in ALLOWED_SIPROUTER):
            bad.append(f"{path.name}:{line}: import {name} (an upper layer)")
    return bad


FILES = sorted(TXN_DIR.glob("*.py"))


def test_the_package_is_there():
    assert {p.name for p in FILES} >= {"__init__.py", "timers.py", "machines.py", "matching.py"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_transaction_package_imports_nothing_that_does_io(path):
    bad = _bad(path)
    assert not bad, "pure layer imports I/O or an upper layer: " + "; ".join(bad)


def test_the_check_sees_imports(tmp_path):
    # The walker must find imports at all, or the test above would pass vacuously.
    assert "siprouter.sip.errors" in {n for _, n in _imports(TXN_DIR / "machines.py")}
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom siprouter.proxy import core\nfrom . import x\n")
    assert len(_bad(sample)) == 3
