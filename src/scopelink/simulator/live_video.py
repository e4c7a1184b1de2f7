"""One camera's live video: rendered, stamped and H.264-encoded once per frame for all viewers.

`LiveVideo` runs only while at least one viewer holds it (`acquire()` / `release()`). Each frame
is rendered (`VideoRenderer`) and encoded in a worker thread and published, already cut into RTP
payloads, to a `LatestValue`: every RTSP session reads the newest frame, none is queued.

Frame stamps: the number counts the frames this camera rendered, from 1. `emit_ms` is the wall
clock read after rendering, immediately before the encode; the encode (a few ms, `stats`) is the
only step between it and the hand-over to the sockets, and belongs to the telescope's latency as
it would on the real one, whose encoder sits behind its sensor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from scopelink import framestamp
from scopelink.media.latest import LatestValue
from scopelink.simulator.h264 import (
    CLOCK_HZ,
    H264Encoder,
    H264Settings,
    ParameterSets,
    packetize,
    probe_parameter_sets,
)
from scopelink.simulator.video import VideoRenderer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded picture, ready for any session: RTP payloads and the RTP time offset."""

    payloads: tuple[bytes, ...]
    #: 90 kHz presentation time since the video started; sessions add their own offset.
    pts: int
    keyframe: bool
    #: Wall-clock time of the picture (seconds), for RTCP sender reports.
    wall_s: float
    #: The stamp's frame number (with B-frames, frames go out in decoding order).
    number: int

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.payloads)


@dataclass(slots=True)
class LiveVideoStats:
    frames_encoded: int = 0
    bytes_encoded: int = 0
    keyframes: int = 0
    recent_encode_s: deque[float] = field(default_factory=lambda: deque(maxlen=120))

    @property
    def median_encode_ms(self) -> float | None:
        return statistics.median(self.recent_encode_s) * 1000.0 if self.recent_encode_s else None


class LiveVideo:
    """Renders and encodes one camera's RTSP video while anyone watches it."""

    def __init__(
        self,
        settings: H264Settings,
        *,
        mode: Callable[[], str | None],
        roi_index: Callable[[], int],
        wide: bool = False,
        seed: int = 0,
    ) -> None:
        self.settings = settings
        self._mode = mode
        self._roi_index = roi_index
        self.renderer = VideoRenderer(settings.width, settings.height, wide=wide, seed=seed)
        self.frames: LatestValue[EncodedFrame] = LatestValue()
        self.stats = LiveVideoStats()
        self.parameter_sets: ParameterSets | None = None
        self._encoder: H264Encoder | None = None
        # The encoder is used by one worker thread at a time.
        self._encode_lock = threading.Lock()
        self._viewers = 0
        self._wanted = asyncio.Event()
        self._idr = False
        self._number = 0
        self._last_pts = -1
        self._t0 = time.monotonic()
        # The wall clock at pts 0: sender reports pair a frame's pts with its wall time.
        self._wall0 = time.time()
        self._task: asyncio.Task[None] | None = None

    @property
    def viewers(self) -> int:
        return self._viewers

    def clock(self) -> int:
        """The video's 90 kHz clock now (what a frame rendered now would carry as pts)."""
        return round((time.monotonic() - self._t0) * CLOCK_HZ)

    async def start(self) -> None:
        # SPS and PPS depend on the settings only: learn them for the SDP before anyone asks.
        self.parameter_sets = await asyncio.to_thread(probe_parameter_sets, self.settings)
        self._task = asyncio.create_task(self._run(), name="sim-live-video")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def acquire(self) -> None:
        """A viewer starts playing; it gets an IDR at once rather than at the end of the GOP."""
        self._viewers += 1
        self._idr = True
        self._wanted.set()

    def release(self) -> None:
        self._viewers = max(0, self._viewers - 1)

    def request_idr(self) -> None:
        self._idr = True

    async def warm(self, mode: str) -> None:
        """Draw a mode's picture ahead of its first frame (a few hundred ms)."""
        await asyncio.to_thread(self.renderer.canvas, mode)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        interval = 1.0 / self.settings.fps
        while True:
            if self._viewers == 0:
                self._wanted.clear()
                await self._wanted.wait()
                next_at = loop.time()
            # Timestamps on the frame grid, not the render's jittery clock: players read the
            # frame rate from them (a grid-aligned stream probes as exactly 30/1).
            pts = round(round((next_at - self._t0) / interval) * interval * CLOCK_HZ)
            # Never the same pts twice (x264 refuses it), even after re-aligning to the clock.
            pts = self._last_pts = max(pts, self._last_pts + 1)
            mode = self._mode()
            if mode is not None:
                force, self._idr = self._idr, False
                try:
                    frames = await asyncio.to_thread(
                        self._produce, mode, self._roi_index(), force, pts
                    )
                except Exception:
                    log.exception("simulated RTSP camera: a frame failed")
                    frames = []
                for frame in frames:
                    self.frames.publish(frame)
            next_at += interval
            now = loop.time()
            if next_at < now - interval:
                next_at = now  # fell behind: skip ticks rather than burst
            await asyncio.sleep(max(0.0, next_at - now))

    def _produce(self, mode: str, roi_index: int, force_idr: bool, pts: int) -> list[EncodedFrame]:
        """Render, stamp and encode one frame (worker thread)."""
        with self._encode_lock:
            if self._encoder is None:
                self._encoder = H264Encoder(self.settings)
            now = time.monotonic()
            rgb = self.renderer.render(mode, now - self._t0, roi_index)
            self._number += 1
            emit_ms = int(time.time() * 1000)
            framestamp.draw(rgb, framestamp.FrameStamp(self._number, emit_ms))
            units = self._encoder.encode(rgb, pts, force_idr)
            self.stats.recent_encode_s.append(self._encoder.last_encode_s)
        frames = []
        for unit in units:
            payloads = tuple(packetize(unit.nals))
            wall_s = self._wall0 + unit.pts / CLOCK_HZ
            frame = EncodedFrame(payloads, unit.pts, unit.keyframe, wall_s, self._number)
            self.stats.frames_encoded += 1
            self.stats.bytes_encoded += frame.size
            self.stats.keyframes += unit.keyframe
            frames.append(frame)
        return frames
