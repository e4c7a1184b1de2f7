"""The browser's pure modules (frame stamp, multipart parser, coordinates...) pass their tests.

They run under Node's own test runner (`tests/ui/*.test.js`, `npm test`); this runs them with
the rest, so `make test` covers them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ui_library_modules_pass_their_node_tests() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node not found: install Node.js 20 or later (see docs/ui.md)")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "ui").glob("*.test.js"))
    assert files, "no tests/ui/*.test.js"
    result = subprocess.run(
        [node, "--test", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}{result.stderr}"
