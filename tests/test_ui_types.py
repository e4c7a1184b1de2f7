"""The browser UI type-checks: `tsc` over the JSDoc-typed modules and the generated protocol types.

Needs `npm ci` first (the Makefile's test target runs it): TypeScript is pinned in package.json.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ui_type_checks_with_zero_errors() -> None:
    npx = shutil.which("npx")
    if npx is None:
        pytest.fail("npx not found: install Node.js 20 or later (see docs/ui.md)")
    if not (ROOT / "node_modules" / "typescript").is_dir():
        pytest.fail("TypeScript is not installed: run `npm ci` in the repository root")
    result = subprocess.run(
        [npx, "--no-install", "tsc", "-p", "tsconfig.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"tsc found errors:\n{result.stdout}{result.stderr}"
