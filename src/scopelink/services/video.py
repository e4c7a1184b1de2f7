"""The telescope's own video (its RTSP stages): received once, passed through, decoded on demand.

In its Moon, Sun, planet and scenery modes a Seestar sends no preview frames on its imaging port;
it serves H.264 over RTSP. `TelescopeVideo` holds that stream for one telescope:

- **Packets.** While anyone holds `packets()` (WebRTC peers on the passthrough tier, and the
  decoder below), one `RtspSource` receives the stream. Every access unit (a tap, not a
  latest-wins follower: a skipped unit would make the next ones undecodable) is republished
  unchanged into `units`, one `EncodedFanout` for the telescope's life, on the same 90 kHz clock
  the tier encoders use, so a WebRTC track can move between the passthrough and an encoded tier
  without a jump. A unit that follows a gap (a reconnect) is held back until the next keyframe.
- **Pixels.** While anyone holds `pixels()` (an MJPEG viewer, a snapshot, an encoder making the
  reduced tier or a stream that cannot pass), a decoder follows `units` and publishes display
  frames through `publish`. Every unit must be decoded (later pictures refer to earlier ones), but
  only the newest decoded picture is converted to RGB; a decoder that falls behind skips to the
  next keyframe. Nothing is decoded while only passthrough viewers watch.
- **Facts.** What the stream is (`facts`) and whether a browser can take it unchanged
  (`passthrough_refusal`); listeners hear when that changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import av
import numpy as np

from scopelink.media.display import DisplayFrame, DisplayKind, read_stamp
from scopelink.media.encoded import VIDEO_CLOCK_HZ, BitrateMeter, EncodedFanout, EncodedFrame
from scopelink.media.latest import Published, SlotClosedError
from scopelink.seestar.rtsp import (
    AccessUnit,
    RtspSource,
    StreamFacts,
    Transport,
    passthrough_ok,
)
from scopelink.settings import RTSP_PORT

log = logging.getLogger(__name__)

#: The stream stays open this long after its last holder leaves, so a page reload or a tier
#: switch does not bounce the telescope's RTSP session.
LINGER_S = 2.0
#: A stream's timestamps are anchored to our clock at its first unit; if they drift this far
#: from arrival times (a telescope clock jump), they are anchored again.
REANCHOR_S = 0.5


class TelescopeVideo:
    """One telescope's RTSP video: the passthrough feed (`units`) and decoded frames on demand."""

    def __init__(
        self,
        host: str,
        port: int = RTSP_PORT,
        *,
        publish: Callable[[DisplayFrame], None],
        transport: Transport | str = Transport.TCP,
        name: str = "video",
        linger_s: float = LINGER_S,
    ) -> None:
        """`publish` receives each decoded display frame (the frame pipeline's slot)."""
        self.name = name
        self.rtsp = RtspSource(host, port, transport=transport, name=f"{name}-rtsp")
        self.linger_s = linger_s
        #: The telescope's access units, unchanged, on the tier encoders' clock.
        self.units = EncodedFanout()
        #: Units held back after a gap until the next keyframe.
        self.units_held = 0
        #: Pictures decoded, and display frames made from them (only the newest of a burst).
        self.decoded = 0
        self.displayed = 0
        self._publish = publish
        self._packet_holders = 0
        self._pixel_holders = 0
        self._running = False
        # Where the stream's pts sit on our clock, per RTSP session (see `_forward`).
        self._session = 0
        self._last_number = 0
        self._offset: int | None = None
        self._waiting_for_keyframe = True
        self.rtsp.units.tap(self._forward)
        self._decoder: asyncio.Task[None] | None = None
        self._linger: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[], None]] = []
        self._refusal: str | None = "the stream has not started yet"
        self._rate = BitrateMeter()

    # -- what the stream is -----------------------------------------------------------------------

    @property
    def facts(self) -> StreamFacts | None:
        return self.rtsp.facts

    @property
    def passthrough_refusal(self) -> str | None:
        """None if a browser can take the stream unchanged; else why not (or not known yet)."""
        return self._refusal

    @property
    def width(self) -> int:
        facts = self.facts
        return facts.width if facts is not None and facts.width else 1920

    @property
    def bitrate(self) -> int | None:
        """The stream's bits per second, measured over the last few seconds (None at first)."""
        return self._rate.bps

    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener()` when `passthrough_refusal` changes; returns the unsubscriber."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _check_facts(self) -> None:
        facts = self.facts
        refusal = passthrough_ok(facts) if facts is not None else "the stream has not started yet"
        if refusal == self._refusal:
            return
        self._refusal = refusal
        log.info(
            "%s: %s",
            self.name,
            "the telescope's H.264 goes to browsers unchanged"
            if refusal is None
            else f"the telescope's video is re-encoded: {refusal}",
        )
        # Not inside the tap that called us: listeners move peers between tiers.
        asyncio.get_running_loop().call_soon(self._notify)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                log.exception("%s: listener failed", self.name)

    # -- demand -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    def packets(self) -> AbstractAsyncContextManager[None]:
        """Held while someone reads `units`: the stream runs while any holder does."""
        return self._packets()

    @contextlib.asynccontextmanager
    async def _packets(self) -> AsyncIterator[None]:
        self._packet_holders += 1
        try:
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            if not self._running:
                self._running = True
                self._waiting_for_keyframe = True
                self.rtsp.start()
            yield
        finally:
            self._packet_holders -= 1
            if self._packet_holders == 0 and self.running:
                self._linger = asyncio.create_task(self._stop_after_linger())

    def pixels(self) -> AbstractAsyncContextManager[None]:
        """Held while someone needs decoded frames: the stream runs and is decoded meanwhile."""
        return self._pixels()

    @contextlib.asynccontextmanager
    async def _pixels(self) -> AsyncIterator[None]:
        async with self.packets():
            self._pixel_holders += 1
            try:
                if self._decoder is None or self._decoder.done():
                    self._decoder = asyncio.create_task(self._decode(), name=f"{self.name}-dec")
                yield
            finally:
                self._pixel_holders -= 1
                if self._pixel_holders == 0 and self._decoder is not None:
                    self._decoder.cancel()
                    self._decoder = None

    async def _stop_after_linger(self) -> None:
        await asyncio.sleep(self.linger_s)
        if self._packet_holders == 0:
            await asyncio.shield(self.stop())

    async def stop(self) -> None:
        """Let the stream go now (the telescope left its RTSP stage, or nobody watches)."""
        tasks = [self._decoder]
        if self._linger is not None and self._linger is not asyncio.current_task():
            tasks.append(self._linger)
        self._decoder = self._linger = None
        self._running = False
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.rtsp.close()

    async def close(self) -> None:
        """Stop for good: the tracks reading `units` end."""
        await self.stop()
        self.units.close()

    # -- forwarding -------------------------------------------------------------------------------

    def _forward(self, item: Published[AccessUnit]) -> None:
        """Republish one unit of the stream on our clock (a tap: called for every unit)."""
        unit = item.value
        if unit.session != self._session or unit.number != self._last_number + 1:
            # A new connection, or units lost on the way: only a keyframe decodes after it.
            self._waiting_for_keyframe = True
            self._session, self._offset = unit.session, None
        self._last_number = unit.number
        self._check_facts()
        if self.units.closed or (self._waiting_for_keyframe and not unit.keyframe):
            self.units_held += 1
            return
        self._waiting_for_keyframe = False
        # The stream's own timestamps (smooth), anchored to arrival on our clock at the start.
        arrival = round(unit.received * VIDEO_CLOCK_HZ)
        offset = self._offset
        if offset is None or abs(unit.pts + offset - arrival) > REANCHOR_S * VIDEO_CLOCK_HZ:
            offset = self._offset = arrival - unit.pts
        facts = self.facts
        width, height = (facts.width, facts.height) if facts is not None else (None, None)
        self._rate.add(unit.received, len(unit.data))
        self.units.publish(
            EncodedFrame(
                data=unit.data,
                keyframe=unit.keyframe,
                pts=unit.pts + offset,
                width=width or 0,
                height=height or 0,
                stamp=None,  # not decoded: the stamp is read where pixels are made
                received=unit.received,
                encode_s=0.0,
            )
        )

    # -- decoding ---------------------------------------------------------------------------------

    async def _decode(self) -> None:
        """Decode every unit in order; make a display frame of the newest picture only."""
        codec: av.VideoCodecContext | None = None
        units = self.units
        # The decoder starts at a keyframe to come, or one in the same burst as the newest unit.
        seen = units.seq - 1 if units.seq else 0
        while True:
            try:
                latest = await units.next(seen)
            except SlotClosedError:
                return
            item = units.after(seen) if codec is not None else None
            if item is None:
                # Just started, or fell further behind than the fan-out keeps: only a keyframe
                # decodes on its own.
                keyframe = units.last_keyframe
                if keyframe is None or keyframe.seq <= seen or latest.seq - keyframe.seq > 1:
                    seen, codec = latest.seq, None
                    continue
                item, codec = keyframe, av.CodecContext.create("h264", "r")
            seen = item.seq
            newest = self.units.seq == item.seq
            try:
                picture = await asyncio.to_thread(_decode_unit, codec, item.value, newest)
            except av.FFmpegError as exc:
                log.warning("%s: undecodable unit (%s); waiting for a keyframe", self.name, exc)
                codec = None
                continue
            if picture is None:
                continue
            self.decoded += 1
            rgb8, process_s = picture
            if rgb8 is None:
                continue
            stamp = read_stamp(rgb8)
            self.displayed += 1
            self._publish(
                DisplayFrame(
                    rgb8=rgb8,
                    kind=DisplayKind.VIDEO,
                    image_id=item.seq,
                    stamp=stamp,
                    received=item.value.received,
                    processed=time.monotonic(),
                    process_s=process_s,
                    stretch=None,
                    pts=item.value.pts,  # as the unit passed through has it
                )
            )


def _decode_unit(
    codec: av.VideoCodecContext, unit: EncodedFrame, convert: bool
) -> tuple[np.ndarray | None, float] | None:
    """Decode one access unit (blocking); its picture as read-only RGB if `convert`.

    None if the unit gave no picture."""
    started = time.perf_counter()
    frames = codec.decode(av.Packet(unit.data))
    if not frames:
        return None
    if not convert:
        return None, time.perf_counter() - started
    rgb8 = frames[-1].to_ndarray(format="rgb24")
    rgb8.flags.writeable = False
    return rgb8, time.perf_counter() - started
