"""README's routing-script example and its test must work as printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_script_example_and_its_tests_pass(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    route = next(b for b in blocks if b.startswith("# route.py"))
    tests = next(b for b in blocks if b.startswith("# test_route.py"))
    (tmp_path / "route.py").write_text(route)
    (tmp_path / "test_route.py").write_text(tests)
    repo = README.parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
         "test_route.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
