"""Fault injection shared by the simulator's servers: what a bad network or a busy telescope does.

Set fields on a `Faults` object at run time (tests, the `--fault` command-line option); every
server consults it on each read and write.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Faults:
    """Faults applied to every connection of a simulator."""

    #: Seconds added before each control reply is sent.
    reply_delay_s: float = 0.0
    #: Until this monotonic time the servers neither read nor write: the telescope hangs.
    stalled_until: float = 0.0
    #: Write each message in several small pieces, with tiny pauses between them.
    split_writes: bool = False
    #: Hold messages briefly and write several in one go.
    coalesce_writes: bool = False
    #: Probability that a control line is preceded by a malformed line.
    malformed_rate: float = 0.0
    #: Bumped by `drop()`; servers close connections that were opened before the bump.
    drop_generation: int = 0
    #: When positive, `drop()` happens by itself every this many seconds.
    drop_every_s: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def stall(self, seconds: float) -> None:
        self.stalled_until = time.monotonic() + seconds

    def drop(self) -> None:
        """Close every open connection now (new ones are accepted)."""
        self.drop_generation += 1

    def clear(self) -> None:
        self.reply_delay_s = 0.0
        self.stalled_until = 0.0
        self.split_writes = False
        self.coalesce_writes = False
        self.malformed_rate = 0.0
        self.drop_every_s = 0.0

    async def run_periodic_drops(self) -> None:
        """Drop every connection every `drop_every_s` seconds, for as long as it is set."""
        while True:
            await asyncio.sleep(self.drop_every_s if self.drop_every_s > 0 else 0.5)
            if self.drop_every_s > 0:
                self.drop()

    async def wait_if_stalled(self) -> None:
        while (remaining := self.stalled_until - time.monotonic()) > 0:
            await asyncio.sleep(min(remaining, 0.1))

    def parse(self, spec: str) -> None:
        """Apply a command-line spec: `delay=S`, `stall=S`, `drop=S` (every S seconds),
        `split`, `coalesce`, `malformed=P`."""
        name, _, value = spec.partition("=")
        match name:
            case "delay":
                self.reply_delay_s = float(value)
            case "stall":
                self.stall(float(value))
            case "drop":
                self.drop_every_s = float(value)
            case "split":
                self.split_writes = True
            case "coalesce":
                self.coalesce_writes = True
            case "malformed":
                self.malformed_rate = float(value or 1.0)
            case _:
                raise ValueError(
                    f"unknown fault {name!r}: "
                    "use delay=S, stall=S, drop=S, split, coalesce or malformed=P"
                )


async def write_with_faults(
    writer: asyncio.StreamWriter, data: bytes | memoryview, faults: Faults
) -> None:
    """Write `data`, split into pieces when the fault is on; then drain."""
    await faults.wait_if_stalled()
    if faults.split_writes and len(data) > 1:
        pos = 0
        while pos < len(data):
            piece = 64 if len(data) < 4096 else 65536
            step = faults.rng.randint(1, max(1, min(len(data) - pos, piece)))
            writer.write(data[pos : pos + step])
            await writer.drain()
            pos += step
            await asyncio.sleep(0.001)
        return
    writer.write(data)
    await writer.drain()
