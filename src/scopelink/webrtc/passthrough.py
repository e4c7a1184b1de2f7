"""The telescope's own H.264, sent to viewers as it came: a tier that is never encoded here.

In its Moon, Sun, planet and scenery modes a Seestar encodes its live video itself (RTSP). When
that stream is one a browser can take (Constrained Baseline, no B-frames: see
`scopelink.seestar.rtsp.passthrough_ok`), `PassthroughTier` stands where a `TierEncoder` would:
its output is the fan-out of access units the telescope session publishes, unchanged, and
tracks read it by cursor exactly as they read an encoder's output. Nothing is decoded or
encoded, whatever the number of viewers; while any track reads, the tier holds the stream's
demand, so the telescope's stream runs only while watched.

What it cannot do is what only an encoder can:

- **Keyframes on request.** The telescope sends an IDR when its GOP says so. A viewer that lost
  packets (PLI/FIR) waits for that next IDR; a viewer that joins is shown the last IDR at once
  (`EncodedVideoTrack` sends the cached one, stamped as the newest frame) and then resumes live at
  the next IDR.
- **Bitrate.** The telescope's rate is its own. A viewer whose link cannot carry it is moved by
  adaptation to the tier below, which the reduced-tier encoder makes from decoded frames; the
  passthrough tier's floor is the stream's measured bitrate (`source_tier`).
- **Bounded frames** (`set_tight`): an IDR is as large as the telescope made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from scopelink.media.encoded import EncodedFanout
from scopelink.webrtc.encoder import Codec, HeldTier, Tier, TierEncoder

log = logging.getLogger(__name__)

#: The tier name of the telescope's own stream.
SOURCE_TIER = "source"
#: Until the stream's bitrate is measured, a passthrough tier assumes this much (bit/s): a
#: 1080p-class 30 fps stream from a camera is typically 3–6 Mbit/s.
ASSUMED_BITRATE = 4_000_000


def source_tier(width: int, bitrate: int | None) -> Tier:
    """The tier of the telescope's own stream: its width, and its bitrate as both floor and
    ceiling (a viewer whose estimate falls below it moves to the tier under it)."""
    rate = bitrate or ASSUMED_BITRATE
    return Tier(SOURCE_TIER, width=width, bitrate=rate, min_bitrate=rate, max_bitrate=rate)


class PassthroughTier(HeldTier):
    """A tier whose frames are the telescope's own H.264 access units, shared by every track.

    `feed` is the fan-out the telescope's access units are published into, for as long as
    the telescope lives; `demand` is held while any track reads.
    """

    #: Tracks start a joining viewer from the cached keyframe: none can be made on request.
    makes_keyframes = False

    def __init__(
        self,
        tier: Tier,
        feed: EncodedFanout,
        demand: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        super().__init__(tier, Codec.H264, feed)
        self._demand = demand

    async def close(self) -> None:
        """Let the stream go; the feed itself belongs to the telescope and stays open."""
        await self._stop()

    # -- what an encoder could change and this cannot ----------------------------------------------

    @property
    def bitrate(self) -> int:
        """The stream's bitrate as measured when this tier was made (`source_tier`)."""
        return self.tier.bitrate

    def set_bitrate(self, bitrate: int) -> None:
        """The telescope's bitrate is its own: nothing to set."""

    def worth_changing_to(self, bitrate: int) -> bool:
        return False

    @property
    def tight(self) -> bool:
        return False

    def set_tight(self, tight: bool) -> None:
        """Frames are as large as the telescope made them: nothing to bound."""

    @property
    def vbv_buffer_s(self) -> float:
        """Unknown for a stream made elsewhere; one GOP at worst. Reported as 0."""
        return 0.0

    @property
    def planned_fps(self) -> float:
        return self.tier.fps

    def request_keyframe(self) -> None:
        """Counted only: the telescope's next IDR answers it (see the module docstring)."""
        self.stats.keyframes_requested += 1

    # -- the work ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Hold the stream's demand for as long as a track reads."""
        async with self._demand() if self._demand is not None else contextlib.nullcontext():
            await asyncio.Event().wait()


#: What a track reads and adaptation steers: a tier encoded here, or the telescope's own stream.
VideoTier = TierEncoder | PassthroughTier
