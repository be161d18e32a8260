"""The message layer is pure (DESIGN.md, STYLE.md §1): no I/O, no clock, stdlib only.

Checked on the source, by the modules each file imports: a forbidden import anywhere in
``siprouter/sip/`` fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIP_DIR = Path(__file__).resolve().parents[2] / "siprouter" / "sip"
FORBIDDEN = {"asyncio", "socket", "time", "selectors", "ssl", "threading", "subprocess",
             "uvloop", "dns", "siprouter.transport", "siprouter.proxy", "siprouter.script"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


@pytest.mark.parametrize("path", sorted(SIP_DIR.glob("*.py")), ids=lambda p: p.name)
def test_sip_package_imports_nothing_that_does_io(path):
    bad = [f"{path.name}:{line}: import {name}" for line, name in _imports(path)
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, "pure layer imports I/O: " + "; ".join(bad)


def test_the_check_sees_imports():
    # The walker must find imports at all, or the test above would pass vacuously.
    assert ("siprouter.sip.errors" in {n for _, n in _imports(SIP_DIR / "message.py")})
