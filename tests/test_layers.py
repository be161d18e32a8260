"""DESIGN.md "Layers and where they live": lower layers never import upper ones.

Checked on the source: every ``import siprouter.<pkg>`` in a package must name a
package that DESIGN.md's table allows for it. A violation names file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "siprouter"

# package -> the siprouter packages it may import (DESIGN.md's table).
ALLOWED = {
    "sip": {"sip"},
    "transaction": {"sip", "transaction"},
    "transport": {"sip", "transport"},
    "proxy": {"sip", "transaction", "transport", "proxy"},
    "storage": {"sip", "storage"},
    "modules": {"sip", "transaction", "transport", "proxy", "storage", "modules"},
    "mgmt": {"sip", "transaction", "transport", "proxy", "storage", "modules", "script", "mgmt"},
}


def _siprouter_imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "siprouter" and len(parts) > 1:
                yield node.lineno, parts[1]


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer):
    bad = []
    for path in sorted((PKG / layer).glob("**/*.py")):
        for line, target in _siprouter_imports(path):
            if target not in ALLOWED[layer] and target != "__init__":
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: imports siprouter.{target}")
    assert not bad, "\n".join(bad)


def test_the_walker_finds_imports():
    found = {t for _, t in _siprouter_imports(PKG / "proxy" / "core.py")}
    assert {"sip", "proxy", "transport"} <= found
