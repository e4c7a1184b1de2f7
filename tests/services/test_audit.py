"""The audit file: one JSON object per line, readable back as written, appended across runs."""

from __future__ import annotations

import json
from pathlib import Path

from scopelink.services.audit import AuditLog


def test_each_record_is_one_json_line_appended_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.jsonl"
    AuditLog(path).record(telescope="t", who="ada", command="park", params={}, outcome="accepted")
    again = AuditLog(path)
    again.record(telescope="t", who=None, command="goto", params={"target": "M31"},
                 outcome="refused", detail="viewers may watch")  # fmt: skip
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["command"], r["who"], r["outcome"]) for r in lines] == [
        ("park", "ada", "accepted"),
        ("goto", None, "refused"),
    ]
    assert lines[1]["params"] == {"target": "M31"} and lines[1]["t"] > 1.7e9
    assert list(again.recent) == [lines[1]]
