"""Line framing of the JSON channels: `\\r\\n`-terminated lines, bounded in length."""

from __future__ import annotations

from dataclasses import dataclass, field

from scopelink.settings import MAX_LINE_BYTES


@dataclass(slots=True)
class LineBuffer:
    """Splits a byte stream into lines; one read may hold several lines, one line several reads.

    A line longer than `max_line` is discarded whole (up to its terminator) and counted in
    `oversized`, so a runaway sender cannot exhaust memory or desynchronise the stream.
    """

    max_line: int = MAX_LINE_BYTES
    oversized: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _skipping: bool = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the complete lines, terminators and blank lines removed."""
        self._buf += data
        lines: list[bytes] = []
        start = 0
        while True:
            end = self._buf.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                line = bytes(self._buf[start:end]).rstrip(b"\r")
                if len(line) > self.max_line:
                    self.oversized += 1
                elif line.strip():
                    lines.append(line)
            start = end + 1
        del self._buf[:start]
        if len(self._buf) > self.max_line:
            # No terminator in sight: drop what we have and skip to the next one.
            self._buf.clear()
            if not self._skipping:
                self.oversized += 1
            self._skipping = True
        return lines
