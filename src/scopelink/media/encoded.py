"""Encoded video as every consumer shares it: one compressed frame (an H.264 access unit or a VP8
frame) and the fan-out that holds the newest one plus the newest keyframe.

Whoever made the frames (a tier encoder, or the telescope itself when its own H.264 is passed
through) publishes them here; WebRTC tracks read them by cursor. Timestamps count on RTP's 90 kHz
video clock from the moment the source frame arrived (`time.monotonic()`), for every source alike,
so a track can move between sources without a jump.
"""

from __future__ import annotations

import fractions
from collections import deque
from dataclasses import dataclass

import av

from scopelink.framestamp import FrameStamp
from scopelink.media.latest import LatestValue, Published

#: RTP's video clock; pts of every encoded frame count in it.
VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
#: Frames a fan-out keeps besides the newest (`EncodedFanout.after`).
RECENT_FRAMES = 4


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded frame and where it came from: an H.264 access unit (Annex-B, SPS/PPS before
    every IDR) or a VP8 frame, by the encoder's codec."""

    data: bytes
    keyframe: bool
    #: Presentation time on the 90 kHz clock, from the source frame's arrival (`received`).
    #: Every tier uses the same clock, so a track can switch tiers without a jump.
    pts: int
    width: int
    height: int
    stamp: FrameStamp | None
    #: `time.monotonic()` when the source frame arrived from the telescope.
    received: float
    #: Seconds spent scaling, converting and encoding (in the worker thread).
    encode_s: float

    def packet(self) -> av.Packet:
        """A fresh `av.Packet` for aiortc's sender, which then only packetises it."""
        packet = av.Packet(self.data)
        packet.pts = packet.dts = self.pts
        packet.time_base = VIDEO_TIME_BASE
        packet.is_keyframe = self.keyframe
        return packet


class EncodedFanout(LatestValue[EncodedFrame]):
    """The newest encoded frame of a tier, plus the newest keyframe, for cursors to read."""

    def __init__(self) -> None:
        super().__init__()
        self._keyframe: Published[EncodedFrame] | None = None
        #: The last few frames, so a reader one behind after a burst still gets them in order.
        self._recent: deque[Published[EncodedFrame]] = deque(maxlen=RECENT_FRAMES)

    @property
    def last_keyframe(self) -> Published[EncodedFrame] | None:
        """The newest keyframe published (a track joins or recovers from here)."""
        return self._keyframe

    def after(self, seq: int) -> Published[EncodedFrame] | None:
        """The frame published right after `seq`, if it is still among the last few."""
        for item in self._recent:
            if item.seq == seq + 1:
                return item
        return None

    def publish(self, value: EncodedFrame) -> int:
        seq = super().publish(value)
        item = Published(seq, value)
        self._recent.append(item)
        if value.keyframe:
            self._keyframe = item
        return seq


class BitrateMeter:
    """Bits per second of a stream over the last `window_s` seconds."""

    def __init__(self, window_s: float = 4.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._bytes = 0

    def add(self, when: float, size: int) -> None:
        self._samples.append((when, size))
        self._bytes += size
        while when - self._samples[0][0] > self.window_s:
            self._bytes -= self._samples.popleft()[1]

    @property
    def bps(self) -> int | None:
        """None until the samples span a second."""
        if len(self._samples) < 2:
            return None
        span = self._samples[-1][0] - self._samples[0][0]
        # n samples span n - 1 intervals: leave the first one's bytes out.
        return round((self._bytes - self._samples[0][1]) * 8 / span) if span >= 1.0 else None
