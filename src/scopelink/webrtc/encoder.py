"""One encoder per quality tier and codec, shared by every WebRTC peer watching that tier.

A `TierEncoder` follows a `LatestValue[DisplayFrame]` (latest frame wins: a frame that arrives
while the previous one is encoding replaces the one waiting), scales each frame to the tier's
size, encodes it in a worker thread and publishes the encoded frame to an
`EncodedFanout`. Tracks read the fan-out by cursor; nothing is queued per peer. The encoder runs
only while at least one track holds it (`acquire()` / `release()`).

Each encoder has one `Codec`: H.264 (libx264) for every browser that takes it, VP8 (libvpx, its
real-time settings in `scopelink.webrtc.vp8`) only for a browser that cannot.

H.264 settings, all measured on the 2-vCPU box (docs/webrtc-media.md): Baseline profile (no
B-frames), `tune=zerolatency` (no lookahead, sliced threads: one packet out per frame in), preset
`ultrafast`, a keyframe every `keyframe_interval_s` plus one on `request_keyframe()`, and a VBV
buffer of a quarter second so a keyframe cannot burst far above the bitrate (one frame interval
while `set_tight`: a viewer's link has shown its limit). libavcodec's
libx264 wrapper reconfigures the rate control when `bit_rate` changes, so `set_bitrate()` takes
effect on the next frame without a new context or a keyframe, within the VBV ceiling the context
was opened with (PyAV cannot move that one): above it, or far below it (`DEEP_CUT`), the context
is re-created at the cost of a keyframe. So it is when the source's measured frame rate strays
from the one the context plans for (`FPS_TOLERANCE`): x264 budgets each frame by that rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fractions
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from scopelink.media.display import DisplayFrame, scale
from scopelink.media.encoded import VIDEO_CLOCK_HZ, VIDEO_TIME_BASE, EncodedFanout, EncodedFrame
from scopelink.media.latest import LatestValue, SlotClosedError, follow
from scopelink.webrtc.vp8 import open_vp8

log = logging.getLogger(__name__)

#: x264 preset: `ultrafast` encodes a 1080×1920 frame in ~6.5 ms p50 here (scaling and colour
#: included); `superfast` costs ~35 % more at the same bitrate (bench/bench_webrtc_encode.py).
PRESET = "ultrafast"
#: VBV buffer in seconds of bitrate: bounds any frame's size, keyframes included, and so its
#: burst on the wire (aiortc has no pacer). A quarter second lets a keyframe through a link
#: at the bitrate with a quarter second of queueing at worst (docs/webrtc-adaptation.md).
#: Behind a link that has shown its limit, the buffer is one frame interval (`tight`): Chromium
#: holds every frame as long as its largest frame takes to arrive, and a quarter-second
#: keyframe behind a 4 Mbit/s cap kept each frame ~200 ms late (measured; one frame: ~100 ms).
#: A keyframe in one frame's budget is softer (stars ~4 dB worse for that frame), so the
#: quarter second stays where the link is not the limit.
VBV_BUFFER_S = 0.25
#: The source's frame rate is measured (`FrameRate`); when it strays this far from the rate the
#: open context plans for, the context re-opens at the measured rate. x264 budgets each frame
#: as bitrate / planned rate: a 2 fps source under a plan of 10 fps got a fifth of its bitrate
#: (measured, tests/webrtc/test_encoder.py). A Seestar's frame rate follows its exposure.
FPS_TOLERANCE = 0.3
#: Encode times kept for the median shown in stats.
_RECENT = 120


class Codec(enum.StrEnum):
    """A video codec a tier can be encoded in; H.264 first, VP8 only for who cannot take it."""

    H264 = "h264"
    VP8 = "vp8"

    @property
    def rtp_name(self) -> str:
        """The encoding name in SDP (`a=rtpmap:<pt> <name>/90000`)."""
        return {"h264": "H264", "vp8": "VP8"}[self.value]

    @property
    def mime_type(self) -> str:
        return f"video/{self.rtp_name}"


@dataclass(frozen=True, slots=True)
class Tier:
    """A quality tier: output width (height keeps the aspect ratio), bitrates, frame rate hint.

    `bitrate` is where the encoder starts; adaptation (webrtc/adapt.py) moves it within
    [`min_bitrate`, `max_bitrate`]. Below a tier's floor a peer is better served by the tier
    under it (fewer pixels, so more bits per pixel).
    """

    name: str
    width: int
    bitrate: int
    min_bitrate: int = 0
    max_bitrate: int = 0
    #: Frames per second the rate control plans for until the source's own rate is measured.
    fps: float = 10.0
    keyframe_interval_s: float = 2.0

    def size_for(self, source_width: int, source_height: int) -> tuple[int, int]:
        """Output (width, height) for a source frame: never upscaled, both even (yuv420p)."""
        width = min(self.width, source_width) & ~1
        height = round(source_height * width / source_width) & ~1
        return max(width, 2), max(height, 2)

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.fps * self.keyframe_interval_s))

    def __post_init__(self) -> None:
        # Unset bounds mean "this tier's bitrate only".
        if self.min_bitrate <= 0:
            object.__setattr__(self, "min_bitrate", self.bitrate)
        if self.max_bitrate <= 0:
            object.__setattr__(self, "max_bitrate", self.bitrate)
        if not self.min_bitrate <= self.bitrate <= self.max_bitrate:
            raise ValueError(f"tier {self.name}: need min ≤ bitrate ≤ max")


#: The full-resolution portrait tier and a quarter-area one for slow links. Their bitrate ranges
#: overlap (1.2–1.5 Mbit/s), which gives the tier choice its hysteresis.
FULL = Tier("full", width=1080, bitrate=4_000_000, min_bitrate=1_200_000, max_bitrate=6_000_000)
REDUCED = Tier("reduced", width=540, bitrate=1_000_000, min_bitrate=150_000, max_bitrate=1_500_000)
#: Every tier, lowest first.
TIERS: tuple[Tier, ...] = (REDUCED, FULL)


def tier_named(name: str | None) -> Tier:
    """The tier a client asked for by name (the schema allows only these names); none: full."""
    return REDUCED if name == REDUCED.name else FULL


#: The smallest relative bitrate change adaptation makes (`TierEncoder.worth_changing_to`): in
#: place (x264 below the open rate) 5 %; where a change re-opens the encoder and so costs a
#: keyframe (x264 above the open rate, VP8 always) 30 %.
H264_BITRATE_STEP = 0.05
REOPEN_BITRATE_STEP = 0.30
#: A bitrate this many times below the open context's VBV ceiling re-opens it at a lower one.
DEEP_CUT = 3


class FrameRate:
    """The source's frame rate, from the arrival times of the frames encoded (a moving
    average of their intervals; gaps over `max_gap_s`, a paused source, are left out)."""

    def __init__(self, *, weight: float = 0.2, min_samples: int = 4, max_gap_s: float = 5.0):
        self._weight, self._min_samples, self._max_gap_s = weight, min_samples, max_gap_s
        self._last: float | None = None
        self._interval: float | None = None
        self._samples = 0

    def add(self, received: float) -> None:
        last, self._last = self._last, received
        if last is None or not 0 < received - last <= self._max_gap_s:
            return
        interval = received - last
        self._samples += 1
        if self._interval is None:
            self._interval = interval
        else:
            self._interval += self._weight * (interval - self._interval)

    @property
    def fps(self) -> float | None:
        """Frames per second, once enough intervals were seen."""
        if self._interval is None or self._samples < self._min_samples:
            return None
        return 1.0 / self._interval


@dataclass(slots=True)
class EncoderStats:
    """Counters since the encoder was created."""

    frames_encoded: int = 0
    #: Source frames never encoded because a newer one arrived first.
    frames_skipped: int = 0
    keyframes: int = 0
    keyframes_requested: int = 0
    errors: int = 0
    bytes_out: int = 0
    recent_encode_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT))

    @property
    def median_encode_ms(self) -> float | None:
        return statistics.median(self.recent_encode_s) * 1000.0 if self.recent_encode_s else None


def to_yuv420p(rgb8: np.ndarray, size: tuple[int, int]) -> av.VideoFrame:
    """Scale and convert RGB to an I420 frame; cv2 is ~10× cheaper than swscale."""
    i420 = cv2.cvtColor(scale(rgb8, size), cv2.COLOR_RGB2YUV_I420)
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")


def open_codec(
    tier: Tier,
    size: tuple[int, int],
    bitrate: int,
    preset: str = PRESET,
    *,
    max_rate: int | None = None,
    tight: bool = False,
) -> av.VideoCodecContext:
    """A libx264 context for `tier` at `size` with the settings in the module docstring.

    `max_rate` is the VBV ceiling (default: the bitrate); it cannot change once open. `tight`:
    the VBV buffer is one frame interval (`vbv_buffer_s`).
    """
    max_rate = max(max_rate or bitrate, bitrate)
    codec = av.CodecContext.create("libx264", "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.time_base = VIDEO_TIME_BASE
    codec.framerate = fractions.Fraction(round(tier.fps * 1000), 1000)
    codec.bit_rate = bitrate
    codec.gop_size = tier.gop_frames
    codec.max_b_frames = 0
    codec.profile = "Baseline"
    codec.options = {
        "preset": preset,
        "tune": "zerolatency",
        # A forced I-frame must be an IDR, or a joining decoder has nothing to start from.
        "forced-idr": "1",
        # The VBV ceiling is fixed at open (PyAV cannot change rc_max_rate later): a bitrate
        # raised above it needs a new context, and so a keyframe (see TierEncoder._encode).
        "maxrate": str(max_rate),
        "bufsize": str(int(max_rate * vbv_buffer_s(tier.fps, tight=tight))),
    }
    return codec


def vbv_buffer_s(fps: float, *, tight: bool = False) -> float:
    """The VBV buffer for a source at `fps`: `VBV_BUFFER_S`, or one frame's interval if longer
    (a smaller buffer would cap every frame below its share of the bitrate); `tight`: one frame's
    interval."""
    return 1.0 / fps if tight else max(VBV_BUFFER_S, 1.0 / fps)


def open_tier_codec(
    codec: Codec,
    tier: Tier,
    size: tuple[int, int],
    bitrate: int,
    *,
    max_rate: int | None = None,
    tight: bool = False,
) -> av.VideoCodecContext:
    """The context a `TierEncoder` in `codec` opens for `tier` at `size` and `bitrate`
    (`max_rate`: x264's VBV ceiling; libvpx has none to set apart; `tight`: a VBV buffer of one
    frame interval)."""
    if codec is Codec.VP8:
        return open_vp8(
            size,
            bitrate,
            framerate=fractions.Fraction(round(tier.fps * 1000), 1000),
            gop_frames=tier.gop_frames,
            time_base=VIDEO_TIME_BASE,
            buffer_s=vbv_buffer_s(tier.fps, tight=tight),
        )
    return open_codec(tier, size, bitrate, max_rate=max_rate, tight=tight)


class HeldTier:
    """One tier's fan-out that tracks read, and the work behind it (`run()`), which runs while
    any track holds the tier (`acquire()` / `release()`)."""

    #: Whether a keyframe comes on request (`request_keyframe`): a joining track then waits for
    #: a fresh one; otherwise it starts from the last one (`EncodedVideoTrack`).
    makes_keyframes = True

    def __init__(self, tier: Tier, codec: Codec, output: EncodedFanout) -> None:
        self.tier = tier
        self.codec = codec
        self.output = output
        self.stats = EncoderStats()
        self._holders = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def holders(self) -> int:
        return self._holders

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def acquire(self) -> None:
        """A track starts reading: the first one starts the work."""
        if self.output.closed:
            raise SlotClosedError(f"tier {self.tier.name} is closed")
        self._holders += 1
        if not self.running:
            self._task = asyncio.create_task(self.run(), name=f"tier-{self.tier.name}-{self.codec}")

    def release(self) -> None:
        """A track stops reading: after the last one, the work stops."""
        self._holders = max(0, self._holders - 1)
        if self._holders == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self) -> None:
        raise NotImplementedError


class TierEncoder(HeldTier):
    """Encodes the newest display frame for one tier while any track holds it; once for all."""

    def __init__(
        self,
        tier: Tier,
        frames: LatestValue[DisplayFrame] | Callable[[], LatestValue[DisplayFrame]],
        codec: Codec = Codec.H264,
        *,
        demand: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        """`frames` is the slot to follow, or a callable returning the current one (for a
        pipeline that renews its slot when restarted; the encoder then follows the new one).
        `demand` is held while the encoder runs (the source makes pixels meanwhile)."""
        super().__init__(tier, codec, EncodedFanout())
        self._source = frames
        self._demand = demand
        self._bitrate = tier.bitrate
        #: The VBV maximum rate the current context was opened with.
        self._ceiling = tier.bitrate
        #: The source's measured frame rate, and the rate the open context plans for.
        self._frame_rate = FrameRate()
        self._planned_fps = tier.fps
        #: Whether frames are to be bounded to one frame interval of the bitrate (`set_tight`),
        #: and whether the open context is.
        self._tight = False
        self._opened_tight = False
        self._force_keyframe = False

    async def close(self) -> None:
        """Stop encoding and close the fan-out, which ends every track on this tier."""
        await self._stop()
        self.output.close()

    # -- control ----------------------------------------------------------------------------------

    @property
    def bitrate(self) -> int:
        return self._bitrate

    def set_bitrate(self, bitrate: int) -> None:
        """Target bits per second from the next frame on.

        H.264: down to any value, or back up to the rate the context was opened with, x264 is
        reconfigured in place (no keyframe); above that a new context starts with a keyframe.
        VP8: libvpx keeps the rate it was opened with, so any change means a new context and a
        keyframe.
        """
        self._bitrate = max(int(bitrate), 10_000)

    @property
    def tight(self) -> bool:
        """Whether each frame, keyframes included, is bounded to one frame interval of the
        bitrate (see `VBV_BUFFER_S`)."""
        return self._tight

    def set_tight(self, tight: bool) -> None:
        """Bound each frame to one frame interval of the bitrate (True) or to `VBV_BUFFER_S`
        (False) from the next frame on; a change re-opens the context (a keyframe)."""
        self._tight = tight

    @property
    def vbv_buffer_s(self) -> float:
        """The open context's VBV buffer, in seconds of the bitrate: no frame is larger."""
        return vbv_buffer_s(self._planned_fps, tight=self._opened_tight)

    def worth_changing_to(self, bitrate: int) -> bool:
        """Whether moving to `bitrate` is worth it: x264 changes in place up to the rate it was
        opened at, so 5 % is enough; above it, and for VP8 always, the encoder re-opens with a
        keyframe, so it waits for a 30 % change."""
        reopens = self.codec is Codec.VP8 or bitrate > self._ceiling
        step = REOPEN_BITRATE_STEP if reopens else H264_BITRATE_STEP
        return abs(bitrate - self._bitrate) >= step * self._bitrate

    def request_keyframe(self) -> None:
        """Make the next encoded frame an IDR (a peer joined, lost a frame, or sent PLI/FIR)."""
        if not self._force_keyframe:
            self.stats.keyframes_requested += 1
        self._force_keyframe = True

    # -- the work ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Encode the newest frame of the source, skipping any that came while busy."""
        # Local to this run: a restarted encoder gets a fresh context, which starts with an IDR.
        codec: av.VideoCodecContext | None = None
        # Only frames newer than now: an old frame would show the past to a new peer.
        if isinstance(self._source, LatestValue):
            items = self._source.values(self._source.seq)  # ends when the slot closes
        else:
            items = follow(self._source(), fresh=True)  # goes on into the slots that renew it
        seen = 0
        async with self._demand() if self._demand is not None else contextlib.nullcontext():
            async for item in items:
                if seen and item.seq > seen:
                    self.stats.frames_skipped += item.seq - seen - 1
                seen = item.seq
                codec = await self._encode(item.value, codec)
        self.output.close()

    async def _encode(
        self, display: DisplayFrame, codec: av.VideoCodecContext | None
    ) -> av.VideoCodecContext | None:
        """Encode and publish one frame; returns the context for the next (None: start afresh)."""
        size = self.tier.size_for(display.width, display.height)
        self._frame_rate.add(display.received)
        if codec is None or (codec.width, codec.height) != size or self._needs_new_context():
            # The VBV ceiling is the bitrate itself: x264 follows a lower `bit_rate` in place
            # only when it was opened with maxrate = bitrate (measured: opened at 4 Mbit/s with
            # a 6 Mbit/s ceiling, a cut to 2 Mbit/s changed nothing). A deep cut re-opens too:
            # the old ceiling would let frames burst far above the link the cut was made for.
            self._ceiling = self._bitrate
            self._planned_fps = self._frame_rate.fps or self._planned_fps
            self._opened_tight = self._tight
            codec = open_tier_codec(
                self.codec,
                replace(self.tier, fps=self._planned_fps),
                size,
                self._bitrate,
                max_rate=self._ceiling,
                tight=self._tight,
            )
        force, self._force_keyframe = self._force_keyframe, False
        pts = display.pts if display.pts is not None else round(display.received * VIDEO_CLOCK_HZ)
        try:
            # The thread holds the context: a release() meanwhile cannot free it under x264.
            data, keyframe, elapsed = await asyncio.to_thread(
                _encode_frame, codec, display.rgb8, size, pts, force, self._bitrate
            )
        except Exception:
            # One frame that cannot be encoded must not end the live view for every peer.
            self.stats.errors += 1
            log.exception("tier %s (%s): could not encode a frame", self.tier.name, self.codec)
            return None  # whatever state the context is in, the next frame starts afresh
        if not data:
            return codec
        self.stats.frames_encoded += 1
        self.stats.keyframes += keyframe
        self.stats.bytes_out += len(data)
        self.stats.recent_encode_s.append(elapsed)
        if not self.output.closed:
            self.output.publish(
                EncodedFrame(
                    data=data,
                    keyframe=keyframe,
                    pts=pts,
                    width=size[0],
                    height=size[1],
                    stamp=display.stamp,
                    received=display.received,
                    encode_s=elapsed,
                )
            )
        return codec

    @property
    def planned_fps(self) -> float:
        """The frame rate the encoder's rate control plans for (the source's, once measured)."""
        return self._planned_fps

    def _needs_new_context(self) -> bool:
        """Whether the bitrate asked for, the source's frame rate or the frame bound needs a new
        context (and so a keyframe)."""
        if self._tight != self._opened_tight:
            return True
        fps = self._frame_rate.fps
        if fps is not None and abs(fps - self._planned_fps) > FPS_TOLERANCE * self._planned_fps:
            return True
        if self.codec is Codec.VP8:
            return self._bitrate != self._ceiling  # libvpx ignores bit_rate once open (measured)
        return self._bitrate > self._ceiling or self._bitrate * DEEP_CUT < self._ceiling


def _encode_frame(
    codec: av.VideoCodecContext,
    rgb8: np.ndarray,
    size: tuple[int, int],
    pts: int,
    force_keyframe: bool,
    bitrate: int,
) -> tuple[bytes, bool, float]:
    """Scale, convert and encode one frame (blocking: a worker thread runs it)."""
    started = time.perf_counter()
    if codec.bit_rate != bitrate:
        # libx264's wrapper sees the change on the next frame and reconfigures x264 in place.
        codec.bit_rate = bitrate
    frame = to_yuv420p(rgb8, size)
    frame.pts = pts
    frame.time_base = VIDEO_TIME_BASE
    frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
    packets = codec.encode(frame)
    data = b"".join(bytes(p) for p in packets)
    keyframe = any(p.is_keyframe for p in packets)
    return data, keyframe, time.perf_counter() - started
