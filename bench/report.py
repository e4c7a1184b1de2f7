"""What every benchmark shares: pinning, percentiles, the machine's name, docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def pin(core: int) -> None:
    """Run this process on one core only."""
    os.sched_setaffinity(0, {core})


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile `q` (0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def emit(result: dict[str, Any]) -> None:
    """Hand a role process's result to its parent on stdout."""
    print("RESULT " + json.dumps(result), flush=True)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    name = match.group(1).strip() if match else "unknown"
    return f"{name} ({os.cpu_count()} CPUs visible)"


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def replace_section(text: str, begin: str, end: str) -> None:
    """Put `text` (which starts with `begin` and ends with `end`) into docs/benchmarks.md."""
    DOCS.parent.mkdir(exist_ok=True)
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        updated = head + text + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + text + "\n"
    DOCS.write_text(updated)


def write_section(name: str, lines: list[str]) -> None:
    """Write the section `name` of docs/benchmarks.md, between its markers."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    replace_section("\n".join([begin, *lines, "", end]), begin, end)
