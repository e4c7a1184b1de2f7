"""Who commanded what: one record per command taken or refused, and how it ended.

Every transport's commands pass the command service, so they are all here: the caller's
verified name (a broker account's, through its grant) and role, its client id, the command and
its parameters (commands carry no secrets), and the outcome. Records go to the
`scopelink.audit` logger, to an optional JSON-lines file (the proxy keeps one in its state
directory), and the last `KEEP` stay in memory.

A record, one JSON object per line: `t` (Unix seconds), `telescope`, `client`, `who` (verified
name or null), `role`, `command` (its type), `params` (object), `outcome` (`refused`,
`completed`, `accepted`: running as an operation, `failed`), `detail` (why, when refused or
failed) and `repeat` (true when an idempotency key answered a retry with the first outcome).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

log = logging.getLogger("scopelink.audit")

#: Records kept in memory.
KEEP = 1000


class AuditLog:
    """The record of commands; `path`: also append each record there (JSON lines)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.recent: deque[dict[str, Any]] = deque(maxlen=KEEP)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, **fields: Any) -> None:
        entry = {"t": round(time.time(), 3), **fields}
        line = json.dumps(entry, separators=(",", ":"), default=str)
        self.recent.append(entry)
        log.info("%s", line)
        if self.path is not None:
            try:
                with self.path.open("a", encoding="utf-8") as file:
                    file.write(line + "\n")
            except OSError as exc:  # a full disk must not stop the telescope being commanded
                log.error("audit file %s: %s", self.path, exc)
