"""Idempotency keys that outlive the process: a command taken with a key is written down before
it runs, and its outcome when it ends. After a restart (the telescope-side proxy keeps its
journal in its state directory), a retry with the same key gets the first outcome, or, when
the process stopped while the command ran, is told that its outcome is unknown: it never runs
a second time.

The file is JSON lines, appended: `{"slot": [telescope, client, key], "command": TEXT, "at":
unix}` when taken; `{"slot": …, "ack": {…}}` or `{"slot": …, "failure": {…}}` when it ended;
`{"slot": …, "forget": true}` when it did not run (a retry may run it). Entries older than the
keys' lifetime are dropped when the file is compacted, at start and every `COMPACT_EVERY`
lines.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Slot = tuple[str, str, str]
#: Appended lines between compactions.
COMPACT_EVERY = 2000


@dataclass(slots=True)
class JournalEntry:
    command: str
    at: float
    ack: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        return self.ack is not None or self.failure is not None


class IdempotencyJournal:
    """The commands taken with a key in the last `ttl_s` seconds, on disk."""

    def __init__(self, path: Path, ttl_s: float = 600.0) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self._entries: dict[Slot, JournalEntry] = {}
        self._appended = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._load()
        self._compact()

    def recall(self, slot: Slot) -> JournalEntry | None:
        entry = self._entries.get(slot)
        if entry is not None and entry.at < time.time() - self.ttl_s:
            del self._entries[slot]
            return None
        return entry

    def taken(self, slot: Slot, command: str) -> None:
        now = time.time()
        self._entries[slot] = JournalEntry(command, now)
        self._append({"slot": list(slot), "command": command, "at": now})

    def ended(
        self,
        slot: Slot,
        *,
        ack: dict[str, Any] | None = None,
        failure: dict[str, Any] | None = None,
    ) -> None:
        entry = self._entries.get(slot)
        if entry is None:
            return
        entry.ack, entry.failure = ack, failure
        self._append({"slot": list(slot), "ack": ack} if ack is not None else
                     {"slot": list(slot), "failure": failure})  # fmt: skip

    def forget(self, slot: Slot) -> None:
        if self._entries.pop(slot, None) is not None:
            self._append({"slot": list(slot), "forget": True})

    # -- the file --------------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                record = json.loads(line)
                slot = tuple(record["slot"])
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: the rest is still good
            if len(slot) != 3:
                continue
            if "command" in record:
                self._entries[slot] = JournalEntry(str(record["command"]), float(record["at"]))
            elif (entry := self._entries.get(slot)) is not None:
                if record.get("forget"):
                    del self._entries[slot]
                else:
                    entry.ack, entry.failure = record.get("ack"), record.get("failure")

    def _append(self, record: dict[str, Any]) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as file:
                file.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError as exc:  # a full disk must not stop commands: keys still hold in memory
            log.error("idempotency journal %s: %s", self.path, exc)
        self._appended += 1
        if self._appended >= COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        cutoff = time.time() - self.ttl_s
        self._entries = {s: e for s, e in self._entries.items() if e.at >= cutoff}
        partial = self.path.with_name(f".{self.path.name}.partial")
        try:
            with partial.open("w", encoding="utf-8") as file:
                for slot, entry in self._entries.items():
                    file.write(json.dumps({"slot": list(slot), "command": entry.command,
                                           "at": entry.at}) + "\n")  # fmt: skip
                    if entry.ack is not None:
                        file.write(json.dumps({"slot": list(slot), "ack": entry.ack}) + "\n")
                    elif entry.failure is not None:
                        file.write(
                            json.dumps({"slot": list(slot), "failure": entry.failure}) + "\n"
                        )
            os.replace(partial, self.path)
        except OSError as exc:
            log.error("idempotency journal %s: %s", self.path, exc)
        self._appended = 0
