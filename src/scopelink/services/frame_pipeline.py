"""The frame pipeline: camera frames made viewable once and shared by every viewer.

Owns three things for one telescope:

- **Display frames.** A task follows the imaging client's decoded previews ("latest wins": a
  frame that arrives while the previous one is being processed replaces the one waiting) and turns
  each into an 8-bit RGB `DisplayFrame` in a worker thread, once, whatever the number of viewers.
  The screen stretch is the usual astronomical auto-stretch: the sky background neutralised,
  then black point and midtones from the median and MAD of a subsample, one curve linked across
  the channels so star colours keep their balance.
- **JPEG variants.** `jpeg()` encodes a display frame at most once per (width, quality); every
  viewer asking for the same variant of the same frame shares that one encode.
- **Viewer demand.** `viewer()` counts viewers: the first starts the telescope's preview stream,
  and the stream stops a short linger after the last leaves, so a page reload does not bounce it.
- **One live source, whatever the mode.** In the telescope's RTSP stages (Moon, Sun, planets,
  scenery: `set_stage("RTSP")`, told by telemetry) the imaging port is silent and the live
  picture is the telescope's own H.264 (`services/video.py`). Viewers then hold that stream
  instead of the preview stream; `frames` carries its decoded pictures while anyone needs pixels
  (`viewer()`, `pixels()`); and `passthrough` offers the stream itself to WebRTC where a browser
  can take it unchanged. Listeners (`add_source_listener`) hear when that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import statistics
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import cv2
import numpy as np

from scopelink.media.display import (
    DisplayFrame,
    DisplayKind,
    StretchParams,
    read_stamp,
    scale_to_width,
)
from scopelink.media.latest import LatestValue, follow
from scopelink.seestar.frames import FrameKind, ImagingFrame
from scopelink.seestar.imaging import ImagingClient
from scopelink.services.video import TelescopeVideo

log = logging.getLogger(__name__)

#: JPEG limits: narrower is useless, wider than the sensor is only upscaling.
MIN_JPEG_WIDTH = 64
MAX_JPEG_WIDTH = 1080
MIN_JPEG_QUALITY = 30
MAX_JPEG_QUALITY = 95

#: Where the auto-stretch puts the sky background (0 black, 1 white).
TARGET_BACKGROUND = 0.15
#: Black point, in (normalised) MADs from the median; the usual screen-stretch value.
SHADOWS_CLIP_MADS = -2.8
#: MAD of a normal distribution is 0.6745 sigma; this scales it to sigma.
MAD_TO_SIGMA = 1.4826
#: Statistics come from every n-th pixel in each direction: 1/16 of the frame is plenty.
SAMPLE_STEP = 4
#: Process times kept for the mean and median shown by the API.
_RECENT = 120
_U16_MAX = 65535


class LiveMode(enum.StrEnum):
    """Where the live picture comes from."""

    #: The imaging port's preview stream (star views), stretched here.
    PREVIEW = "preview"
    #: The telescope's own H.264 over RTSP (view stage RTSP).
    VIDEO = "video"


#: The view stage in which a Seestar serves live video over RTSP.
RTSP_STAGE = "RTSP"


class DisplayError(ValueError):
    """A frame that cannot be made into a display image (no pixels, unsupported type)."""


@dataclass(slots=True)
class PipelineStats:
    """Counters since the pipeline was created, for the API and tests."""

    #: Preview frames stretched and published to `frames`.
    frames_processed: int = 0
    #: Preview frames never processed because a newer one arrived first.
    frames_skipped: int = 0
    stacks_processed: int = 0
    #: Frames that could not be processed (logged).
    errors: int = 0
    #: JPEG encodes actually run (shared ones count once).
    jpeg_encodes: int = 0
    recent_process_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT))
    recent_jpeg_s: deque[float] = field(default_factory=lambda: deque(maxlen=_RECENT))

    @property
    def mean_process_ms(self) -> float | None:
        return _ms(statistics.fmean, self.recent_process_s)

    @property
    def median_process_ms(self) -> float | None:
        return _ms(statistics.median, self.recent_process_s)

    @property
    def median_jpeg_ms(self) -> float | None:
        return _ms(statistics.median, self.recent_jpeg_s)


def _ms(summary: object, values: deque[float]) -> float | None:
    return summary(values) * 1000.0 if values else None  # type: ignore[operator]


# -- the stretch (pure functions, run in worker threads) -----------------------------------------


def mtf(midtone: float | np.ndarray, x: float | np.ndarray) -> float | np.ndarray:
    """The midtones transfer function: 0 -> 0, 1 -> 1, `midtone` -> 0.5."""
    return (midtone - 1.0) * x / ((2.0 * midtone - 1.0) * x - midtone)


def _median_of_histogram(counts: np.ndarray, total: int) -> int:
    return int(np.searchsorted(np.cumsum(counts), (total + 1) // 2))


def measure_stretch(rgb16: np.ndarray, step: int = SAMPLE_STEP) -> StretchParams:
    """Stretch parameters of a uint16 (h, w, 3) image, from every `step`-th pixel.

    The sky background is neutralised first: each channel loses what its median exceeds the
    darkest channel's (sky glow is an additive cast). The stretch curve itself is then linked,
    one curve for all three channels, so star colours keep their balance.
    """
    if rgb16.dtype != np.uint16 or rgb16.ndim != 3 or rgb16.shape[2] != 3:
        raise DisplayError(f"expected a uint16 (h, w, 3) image, got {rgb16.dtype} {rgb16.shape}")
    sample = rgb16[::step, ::step].reshape(-1, 3)
    if sample.size == 0:
        raise DisplayError("empty image")
    # Histograms make median and MAD linear-time: no sorting of a few hundred thousand values.
    per_channel = [np.bincount(sample[:, c], minlength=_U16_MAX + 1) for c in range(3)]
    total = int(sample.shape[0])
    medians = [_median_of_histogram(counts, total) for counts in per_channel]
    floor = min(medians)
    offsets = tuple(m - floor for m in medians)
    counts = np.zeros(_U16_MAX + 1, dtype=np.int64)
    for channel_counts, offset in zip(per_channel, offsets, strict=True):
        # The channel's histogram with `offset` taken off every value (clipped at zero).
        counts[: _U16_MAX + 1 - offset] += channel_counts[offset:]
        counts[0] += channel_counts[:offset].sum()
    total *= 3
    median = _median_of_histogram(counts, total)
    deviations = np.zeros(_U16_MAX + 1, dtype=np.int64)
    above = counts[median:]
    deviations[: above.size] += above
    below = counts[:median][::-1]  # distances 1, 2, ... below the median
    deviations[1 : below.size + 1] += below
    mad_adu = max(_median_of_histogram(deviations, total), 1)  # a flat frame still has 1 ADU
    median_n = median / _U16_MAX
    mad_n = MAD_TO_SIGMA * mad_adu / _U16_MAX
    black = min(max(median_n + SHADOWS_CLIP_MADS * mad_n, 0.0), 1.0 - 1.0 / _U16_MAX)
    background = (median_n - black) / (1.0 - black)
    midtone = float(mtf(TARGET_BACKGROUND, background)) if background > 0 else 0.5
    return StretchParams(median_n, mad_n, black, midtone, offsets)  # type: ignore[arg-type]


def stretch_lut(params: StretchParams) -> np.ndarray:
    """The stretch as three 65536-entry uint16 -> uint8 tables, one per channel.

    The curve is the same for all three; only the background offsets differ.
    """
    x = np.arange(_U16_MAX + 1, dtype=np.float64) / _U16_MAX
    clipped = np.clip((x - params.black) / (1.0 - params.black), 0.0, 1.0)
    curve = np.clip(np.rint(np.asarray(mtf(params.midtone, clipped)) * 255.0), 0, 255)
    curve = curve.astype(np.uint8)
    luts = np.empty((3, _U16_MAX + 1), dtype=np.uint8)
    for c, offset in enumerate(params.offsets):
        luts[c, offset:] = curve[: _U16_MAX + 1 - offset]
        luts[c, :offset] = curve[0]
    return luts


#: The table lookup is split into bands of rows, looked up in parallel: `np.take` releases the
#: GIL, and every frame waits for its stretch before anyone sees it (docs/benchmarks.md, the
#: pipeline on one core and on all). One band per core this process may run on, at most four;
#: images under `_BAND_MIN_PIXELS` pixels are looked up in one piece.
_BANDS = max(1, min(len(os.sched_getaffinity(0)), 4))
_BAND_MIN_PIXELS = 500_000
_lookups = ThreadPoolExecutor(max_workers=_BANDS, thread_name_prefix="stretch")


def auto_stretch(rgb16: np.ndarray) -> tuple[np.ndarray, StretchParams]:
    """A uint16 RGB image as read-only uint8 RGB through the auto-stretch."""
    params = measure_stretch(rgb16)
    luts = stretch_lut(params)
    # A table lookup per value is cheaper than the arithmetic per value, and exact. `np.take`
    # into the output is ~30 % cheaper than indexing and assigning (7.5 vs 10.7 ms at 1080×1920).
    rgb8 = np.empty(rgb16.shape, dtype=np.uint8)

    def look_up(rows: slice) -> None:
        for c in range(3):
            np.take(luts[c], rgb16[rows, :, c], out=rgb8[rows, :, c])

    height = rgb16.shape[0]
    if _BANDS == 1 or height * rgb16.shape[1] < _BAND_MIN_PIXELS:
        look_up(slice(None))
    else:
        edges = [height * i // _BANDS for i in range(_BANDS + 1)]
        bands = [slice(a, b) for a, b in itertools.pairwise(edges)]
        for done in [_lookups.submit(look_up, band) for band in bands]:
            done.result()
    rgb8.flags.writeable = False
    return rgb8, params


def render_display(frame: ImagingFrame) -> DisplayFrame:
    """Stretch one imaging frame into a DisplayFrame (blocking: run it in a worker thread)."""
    started = time.perf_counter()
    rgb = frame.rgb
    if rgb is None:
        raise DisplayError("an acknowledgement carries no image")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DisplayError(f"expected an (h, w, 3) image, got shape {rgb.shape}")
    params: StretchParams | None
    if rgb.dtype == np.uint8:
        # A JPEG stack is already stretched by the telescope; stretching again would clip it.
        rgb8, params = rgb, None
        if rgb8.flags.writeable:
            rgb8 = rgb8.copy()
            rgb8.flags.writeable = False
    else:
        rgb8, params = auto_stretch(rgb)
    stamp = read_stamp(rgb)
    elapsed = time.perf_counter() - started
    return DisplayFrame(
        rgb8=rgb8,
        kind=DisplayKind.STACK if frame.kind is FrameKind.STACK else DisplayKind.PREVIEW,
        image_id=frame.header.image_id,
        stamp=stamp,
        received=frame.received,
        processed=time.monotonic(),
        process_s=elapsed,
        stretch=params,
    )


def clamp_width(width: int) -> int:
    return min(max(int(width), MIN_JPEG_WIDTH), MAX_JPEG_WIDTH)


def clamp_quality(quality: int) -> int:
    return min(max(int(quality), MIN_JPEG_QUALITY), MAX_JPEG_QUALITY)


def encode_jpeg(rgb8: np.ndarray, width: int, quality: int) -> bytes:
    """RGB uint8 as a JPEG `width` pixels wide (never upscaled), aspect ratio kept (blocking)."""
    image = scale_to_width(rgb8, width)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise DisplayError(f"JPEG encoding failed at width {width}, quality {quality}")
    return data.tobytes()


# -- the service -----------------------------------------------------------------------------------


class FramePipeline:
    """Turns one telescope's preview frames into display frames and JPEGs, once for all viewers."""

    def __init__(
        self,
        imaging: ImagingClient,
        *,
        video_port: int | None = None,
        linger_s: float = 2.0,
    ) -> None:
        """`video_port`: the telescope's RTSP port (None: the telescope has no video stages)."""
        self.imaging = imaging
        self.linger_s = linger_s
        self.mode = LiveMode.PREVIEW
        self.video: TelescopeVideo | None = None
        if video_port is not None:
            self.video = TelescopeVideo(
                imaging.host, video_port, publish=self._publish_video, name=f"{imaging.name}-video"
            )
            self.video.add_listener(self._source_changed)
        self._pixel_viewers = 0
        # While the mode is VIDEO, one hold on the stream for all viewers, one on its pixels.
        self._video_holds: dict[str, contextlib.AsyncExitStack] = {}
        self._mode_lock = asyncio.Lock()
        self._source_listeners: list[Callable[[], None]] = []
        #: The newest processed preview frame; viewers `await frames.next(seq)`.
        self.frames: LatestValue[DisplayFrame] = LatestValue()
        #: The newest processed stacked image.
        self.stack_frames: LatestValue[DisplayFrame] = LatestValue()
        self.stats = PipelineStats()
        self._viewers = 0
        self._task: asyncio.Task[None] | None = None
        self._linger: asyncio.Task[None] | None = None
        self._running = False
        # Encodes in flight or done, per frame; an entry goes when its frame is garbage.
        self._jpegs: weakref.WeakKeyDictionary[
            DisplayFrame, dict[tuple[int, int], asyncio.Task[bytes]]
        ]
        self._jpegs = weakref.WeakKeyDictionary()
        # Concurrent requests for a stack share one imaging frame, so one processing.
        self._stack_job: tuple[ImagingFrame, asyncio.Task[DisplayFrame]] | None = None

    @property
    def viewers(self) -> int:
        """How many viewers (`viewer()` contexts) are open."""
        return self._viewers

    @property
    def passthrough(self) -> TelescopeVideo | None:
        """The telescope's own stream, if the live picture is one a browser takes unchanged."""
        video = self.video
        if self.mode is LiveMode.VIDEO and video is not None and video.passthrough_refusal is None:
            return video
        return None

    def is_current(self, display: DisplayFrame) -> bool:
        """Whether `display` comes from the live source of the current mode."""
        return (display.kind is DisplayKind.VIDEO) == (self.mode is LiveMode.VIDEO)

    def add_source_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` when the live source changes (mode, or passthrough); returns the
        unsubscriber."""
        self._source_listeners.append(listener)
        return lambda: (
            self._source_listeners.remove(listener) if listener in self._source_listeners else None
        )

    def _source_changed(self) -> None:
        for listener in list(self._source_listeners):
            try:
                listener()
            except Exception:
                log.exception("%s: source listener failed", self.imaging.name)

    async def set_stage(self, stage: str | None) -> None:
        """The telescope's view stage (from telemetry): RTSP means live video, else previews."""
        mode = (
            LiveMode.VIDEO if stage == RTSP_STAGE and self.video is not None else LiveMode.PREVIEW
        )
        async with self._mode_lock:
            if mode is self.mode:
                return
            log.info("%s: live source %s -> %s", self.imaging.name, self.mode, mode)
            self.mode = mode
            # The viewers' holds on the video stream follow the mode: taken, or let go.
            await self._sync_video_holds()
            if mode is LiveMode.VIDEO:
                if self.imaging.streaming:
                    # The telescope sends no previews now; ask again when the stage returns.
                    await self.imaging.stop_streaming()
                if self.video is not None:
                    # A source still retrying from an earlier try need not wait out its backoff.
                    self.video.rtsp.retry_now()
            else:
                if self.video is not None:
                    await self.video.stop()  # at once, not after its linger
                if self._viewers and not self.imaging.streaming:
                    await self.imaging.begin_streaming()
        self._source_changed()

    async def _sync_video_holds(self) -> None:
        """Hold the video stream (and its pixels) for the viewers while the mode is VIDEO."""
        video = self.video
        if video is None:
            return
        wanted = {
            "packets": self.mode is LiveMode.VIDEO and self._viewers > 0,
            "pixels": self.mode is LiveMode.VIDEO and self._pixel_viewers > 0,
        }
        for kind, want in wanted.items():
            if want and kind not in self._video_holds:
                stack = contextlib.AsyncExitStack()
                await stack.enter_async_context(
                    video.packets() if kind == "packets" else video.pixels()
                )
                self._video_holds[kind] = stack
            elif not want:
                await self._release_video(kind)

    async def _release_video(self, kind: str) -> None:
        stack = self._video_holds.pop(kind, None)
        if stack is not None:
            await stack.aclose()

    def _publish_video(self, display: DisplayFrame) -> None:
        if self.mode is LiveMode.VIDEO and not self.frames.closed:
            self.stats.frames_processed += 1
            self.stats.recent_process_s.append(display.process_s)
            self.frames.publish(display)

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start following the imaging client's frames; a pipeline stopped before gets new slots."""
        if self._running:
            return
        if self.frames.closed:
            self.frames = self.frames.renew()
        if self.stack_frames.closed:
            self.stack_frames = self.stack_frames.renew()
        self._running = True
        self._task = asyncio.create_task(self._follow(), name="frame-pipeline")

    async def stop(self) -> None:
        """Stop processing and close the slots, which ends every viewer's stream."""
        if not self._running:
            return
        self._running = False
        lingering = self._linger is not None and not self._linger.done()
        for task in (self._task, self._linger):
            if task is not None:
                task.cancel()
        for task in (self._task, self._linger):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._linger = None
        if lingering:
            # The linger was about to stop the stream; do it now instead of leaving it on.
            await self.imaging.stop_streaming()
        for kind in list(self._video_holds):
            await self._release_video(kind)
        if self.video is not None:
            await self.video.stop()
        self.frames.close()
        self.stack_frames.close()

    # -- viewers ----------------------------------------------------------------------------------

    def viewer(self, *, pixels: bool = True) -> AbstractAsyncContextManager[None]:
        """`async with pipeline.viewer():` while someone watches; streaming follows demand.

        `pixels=False`: the viewer reads encoded video only (a WebRTC peer, whose encoders hold
        `pixels()` themselves), so in the video mode nothing is decoded for it."""
        return self._viewer(pixels)

    def pixels(self) -> AbstractAsyncContextManager[None]:
        """Held while someone needs `frames` beside a viewer (a tier encoder): in the video mode
        the telescope's stream is decoded meanwhile."""
        return self._pixels()

    @contextlib.asynccontextmanager
    async def _pixels(self) -> AsyncIterator[None]:
        self._pixel_viewers += 1
        try:
            if self.mode is LiveMode.VIDEO:
                async with self._mode_lock:
                    await self._sync_video_holds()
            yield
        finally:
            self._pixel_viewers -= 1
            if self._pixel_viewers == 0 and self.mode is LiveMode.VIDEO:
                async with self._mode_lock:
                    await self._sync_video_holds()

    @contextlib.asynccontextmanager
    async def _viewer(self, pixels: bool) -> AsyncIterator[None]:
        self._viewers += 1
        try:
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            if self.mode is LiveMode.PREVIEW and not self.imaging.streaming:
                await self.imaging.begin_streaming()
            if self.mode is LiveMode.VIDEO:
                async with self._mode_lock:
                    await self._sync_video_holds()
            if pixels:
                async with self.pixels():
                    yield
            else:
                yield
        finally:
            self._viewers -= 1
            if self._viewers == 0 and self.mode is LiveMode.VIDEO:
                async with self._mode_lock:
                    await self._sync_video_holds()
            if self._viewers == 0 and self._running:
                self._linger = asyncio.create_task(self._stop_after_linger(), name="frame-linger")

    async def _stop_after_linger(self) -> None:
        await asyncio.sleep(self.linger_s)
        if self._viewers == 0 and self.imaging.streaming:
            # Shielded: a viewer arriving mid-request must not cut the request in half.
            await asyncio.shield(self.imaging.stop_streaming())
            log.info(
                "%s: no viewers for %.1f s; preview stream stopped",
                self.imaging.name,
                self.linger_s,
            )

    # -- processing -------------------------------------------------------------------------------

    async def _follow(self) -> None:
        seen = 0
        # Across the imaging client's slot renewals (it renews its slot when started again).
        async for item in follow(self.imaging.frames):
            if seen and item.seq > seen:
                self.stats.frames_skipped += item.seq - seen - 1
            seen = item.seq
            await self._process_preview(item.value)

    async def _process_preview(self, frame: ImagingFrame) -> None:
        try:
            display = await asyncio.to_thread(render_display, frame)
        except Exception:
            # One bad frame must not end the live view for everybody.
            self.stats.errors += 1
            log.exception("%s: could not process preview frame", self.imaging.name)
            return
        self.stats.frames_processed += 1
        self.stats.recent_process_s.append(display.process_s)
        if not self.frames.closed:
            self.frames.publish(display)

    async def process_stack(self, frame: ImagingFrame) -> DisplayFrame:
        """Stretch a stacked image like a preview and publish it to `stack_frames`.

        Raises DisplayError when the frame carries no image.
        """
        job = self._stack_job
        if job is None or job[0] is not frame:
            task = asyncio.ensure_future(self._process_stack(frame))
            self._stack_job = job = (frame, task)
            task.add_done_callback(self._stack_done)
        return await asyncio.shield(job[1])

    def _stack_done(self, task: asyncio.Task[DisplayFrame]) -> None:
        # Let go of the (large) source frame; later requests bring a new one anyway.
        if self._stack_job is not None and self._stack_job[1] is task:
            self._stack_job = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: could not process a stack: %s", self.imaging.name, task.exception())

    async def _process_stack(self, frame: ImagingFrame) -> DisplayFrame:
        display = await asyncio.to_thread(render_display, frame)
        self.stats.stacks_processed += 1
        if not self.stack_frames.closed:
            self.stack_frames.publish(display)
        return display

    # -- JPEG -------------------------------------------------------------------------------------

    async def jpeg(self, display: DisplayFrame, width: int, quality: int) -> bytes:
        """`display` as a JPEG, encoded once per (frame, width, quality) for every caller.

        Width is clamped to 64..1080 and to the frame's own width, quality to 30..95.
        """
        key = (min(clamp_width(width), display.width), clamp_quality(quality))
        encodes = self._jpegs.setdefault(display, {})
        task = encodes.get(key)
        if task is None:
            task = asyncio.ensure_future(self._encode(display, *key))
            task.add_done_callback(lambda done: self._forget_failed(display, key, done))
            encodes[key] = task
        # Shielded: a viewer that goes away must not cancel the encode others wait for.
        return await asyncio.shield(task)

    async def _encode(self, display: DisplayFrame, width: int, quality: int) -> bytes:
        started = time.perf_counter()
        data = await asyncio.to_thread(encode_jpeg, display.rgb8, width, quality)
        self.stats.jpeg_encodes += 1
        self.stats.recent_jpeg_s.append(time.perf_counter() - started)
        return data

    def _forget_failed(
        self, display: DisplayFrame, key: tuple[int, int], task: asyncio.Task[bytes]
    ) -> None:
        if task.cancelled() or task.exception() is not None:
            # Not cached: the next caller tries again. (exception() also marks it retrieved.)
            encodes = self._jpegs.get(display)
            if encodes is not None and encodes.get(key) is task:
                del encodes[key]
