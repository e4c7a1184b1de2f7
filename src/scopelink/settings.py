"""Ports, defaults and limits: the one place they are written down."""

from __future__ import annotations

from dataclasses import dataclass

CONTROL_PORT = 4700
IMAGING_PORT = 4800
DISCOVERY_PORT = 4720

#: The firmware drops a control socket after ~15.5 s without traffic (measured on 8.89).
FIRMWARE_IDLE_CUT_S = 15.5
#: Our keepalive stays well below the idle cut.
CONTROL_KEEPALIVE_S = 5.0
#: The official app keeps the imaging socket alive every 4 s.
IMAGING_KEEPALIVE_S = 4.0
#: Longest control line we accept (comet data is > 50 kB; the proxy caps at 1 MiB).
MAX_LINE_BYTES = 1 << 20
#: Largest imaging payload we accept (a 4K RGB48 stack is ~75 MB; the proxy caps at 50 MB).
MAX_FRAME_BYTES = 128 << 20

#: Sensor geometry of the S50: portrait, 1080 wide x 1920 high, GRBG Bayer.
SENSOR_WIDTH = 1080
SENSOR_HEIGHT = 1920


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter."""

    initial_s: float = 0.25
    maximum_s: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int, rand: float) -> float:
        """Delay before reconnect attempt `attempt` (0-based); `rand` is uniform in [0, 1)."""
        cap = min(self.maximum_s, self.initial_s * self.factor**attempt)
        return cap * (0.5 + 0.5 * rand)
