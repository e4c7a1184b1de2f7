"""Synthetic display frames with stamps, a frame source, and a decoder that reads stamps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from scopelink import framestamp
from scopelink.framestamp import FrameStamp
from scopelink.media.display import DisplayFrame, DisplayKind, read_stamp
from scopelink.media.latest import LatestValue

HEIGHT, WIDTH = 1920, 1080
_BASE = np.random.default_rng(7).integers(10, 50, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def display_frame(number: int, received: float | None = None) -> DisplayFrame:
    """A 1080×1920 star field with a moving star and frame stamp `number`, received at
    `received` (monotonic seconds; default now)."""
    rgb = _BASE.copy()
    y = 200 + (number * 7) % (HEIGHT - 300)
    rgb[y : y + 6, 500:506] = 255
    framestamp.draw(rgb, FrameStamp(number, 1_700_000_000_000 + number))
    rgb.flags.writeable = False
    now = time.monotonic() if received is None else received
    return DisplayFrame(
        rgb8=rgb, kind=DisplayKind.PREVIEW, image_id=number, stamp=FrameStamp(number, 0),
        received=now, processed=now, process_s=0.0, stretch=None,
    )  # fmt: skip


class Source:
    """A frame slot the test publishes numbered frames into, stamped as received `fps` apart
    (however fast the test publishes them: the encoder plans its rate by those times)."""

    def __init__(self, fps: float = 10.0) -> None:
        self.frames: LatestValue[DisplayFrame] = LatestValue()
        self.number = 0
        self.fps = fps
        self._last_received = time.monotonic()

    def received(self) -> float:
        """When the next frame counts as received: one frame interval after the last."""
        self._last_received += 1 / self.fps
        return self._last_received

    def publish(self) -> int:
        self.frames.publish(display_frame(self.number + 1, self.received()))
        self.number += 1
        return self.number

    async def play(self, count: int, fps: float) -> None:
        self.fps = fps
        for _ in range(count):
            self.publish()
            await asyncio.sleep(1 / fps)


class Telescope:
    """A frame source as the peer manager sees it; `passthrough`: its own stream, if set."""

    def __init__(self, source: Source, passthrough: Any = None) -> None:
        self.source = source
        self.passthrough = passthrough
        #: How many hold pixel demand now (an encoder is running).
        self.pixel_holders = 0

    @property
    def frames(self) -> LatestValue[DisplayFrame]:
        return self.source.frames

    @contextlib.asynccontextmanager
    async def viewer(self, *, pixels: bool = True) -> AsyncIterator[None]:
        yield

    @contextlib.asynccontextmanager
    async def pixels(self) -> AsyncIterator[None]:
        self.pixel_holders += 1
        try:
            yield
        finally:
            self.pixel_holders -= 1


@pytest.fixture
async def source() -> AsyncIterator[Source]:
    s = Source()
    yield s
    s.frames.close()


class Decoder:
    """Decodes encoded frames in order and reads the stamp of every picture.

    H.264 with libavcodec's decoder; VP8 with libvpx's (the one aiortc uses)."""

    def __init__(self, codec: str = "h264") -> None:
        self.codec = av.CodecContext.create({"h264": "h264", "vp8": "libvpx"}[codec], "r")
        self.sizes: list[tuple[int, int]] = []

    def stamps(self, data: bytes) -> list[int | None]:
        frames = self.codec.decode(av.Packet(data))
        out: list[int | None] = []
        for frame in frames:
            self.sizes.append((frame.width, frame.height))
            stamp = read_stamp(frame.to_ndarray(format="rgb24"))
            out.append(None if stamp is None else stamp.frame)
        return out


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def viewer_offer() -> tuple[RTCPeerConnection, str]:
    """An aiortc viewer that only receives video, its offer gathered (no public STUN)."""
    client = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client.addTransceiver("video", direction="recvonly")
    await client.setLocalDescription(await client.createOffer())
    return client, client.localDescription.sdp
