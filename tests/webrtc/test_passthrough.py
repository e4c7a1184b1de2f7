"""The telescope's own H.264 sent to viewers unchanged: never encoded here, joined at once."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fractions
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from scopelink import framestamp
from scopelink.framestamp import FrameStamp
from scopelink.media.display import DisplayFrame
from scopelink.media.encoded import VIDEO_CLOCK_HZ, EncodedFanout, EncodedFrame
from scopelink.media.latest import LatestValue
from scopelink.webrtc.encoder import FULL, REDUCED, TIERS, Codec, TierEncoder
from scopelink.webrtc.passthrough import SOURCE_TIER, PassthroughTier, source_tier
from scopelink.webrtc.sessions import PeerManager
from scopelink.webrtc.track import SWITCH_HOLD_S, EncodedVideoTrack
from tests.webrtc.conftest import (
    Decoder,
    Source,
    Telescope,
    display_frame,
    viewer_offer,
    wait_until,
)

WIDTH, HEIGHT, GOP = 640, 360, 15


class CameraFeed:
    """What a telescope's RTSP stream becomes: Baseline H.264 access units, stamped, in a
    fan-out; `packets()` counts who holds the stream."""

    def __init__(self, fps: float = 30.0) -> None:
        self.units = EncodedFanout()
        self.fps = fps
        self.width = WIDTH
        self.bitrate: int | None = 1_000_000
        self.holders = 0
        self.number = 0
        self._codec = av.CodecContext.create("libx264", "w")
        self._codec.width, self._codec.height = WIDTH, HEIGHT
        self._codec.pix_fmt = "yuv420p"
        self._codec.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        self._codec.gop_size = GOP
        self._codec.max_b_frames = 0
        self._codec.profile = "Baseline"
        self._codec.options = {"preset": "ultrafast", "tune": "zerolatency"}

    @contextlib.asynccontextmanager
    async def packets(self) -> AsyncIterator[None]:
        self.holders += 1
        try:
            yield
        finally:
            self.holders -= 1

    def publish(self) -> EncodedFrame:
        self.number += 1
        rgb = np.full((HEIGHT, WIDTH, 3), 40, dtype=np.uint8)
        rgb[100:140, (self.number * 9) % 600 : (self.number * 9) % 600 + 40] = 220
        framestamp.draw(rgb, FrameStamp(self.number, 0))
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = round(self.number * VIDEO_CLOCK_HZ / self.fps)
        packets = self._codec.encode(frame)
        now = time.monotonic()
        unit = EncodedFrame(
            data=b"".join(bytes(p) for p in packets),
            keyframe=any(p.is_keyframe for p in packets),
            pts=round(now * VIDEO_CLOCK_HZ),  # the clock every tier's frames count on
            width=WIDTH,
            height=HEIGHT,
            stamp=None,
            received=now,
            encode_s=0.0,
        )
        self.units.publish(unit)
        return unit

    async def play(self, count: int) -> None:
        for _ in range(count):
            self.publish()
            await asyncio.sleep(1 / self.fps)


async def test_a_joining_track_starts_from_the_cached_keyframe_then_waits_for_the_next() -> None:
    feed = CameraFeed()
    tier = PassthroughTier(source_tier(WIDTH, feed.bitrate), feed.units, feed.packets)
    first = EncodedVideoTrack(tier)
    reader = asyncio.ensure_future(first.recv())  # starts the passthrough
    await wait_until(lambda: feed.holders == 1)
    for _ in range(4):  # an IDR and three P-frames: the newest frame is not a keyframe
        feed.publish()
        await asyncio.sleep(0.005)
    assert (await asyncio.wait_for(reader, 2)).is_keyframe

    late = EncodedVideoTrack(tier)
    start = await asyncio.wait_for(late.recv(), 1)  # at once, not a GOP later
    assert start.is_keyframe and late.stats.cached_starts == 1
    assert start.pts == tier.output.latest.value.pts  # stamped as the newest frame
    waiter = asyncio.ensure_future(late.recv())
    for _ in range(GOP - 4):
        feed.publish()  # P-frames after the cached keyframe would not decode: held back
    await asyncio.sleep(0.05)
    assert not waiter.done()
    feed.publish()  # the next IDR
    following = await asyncio.wait_for(waiter, 1)
    assert following.is_keyframe and following.pts > start.pts
    assert tier.stats.keyframes_requested >= 1  # asked, and answered by the telescope's GOP
    first.stop()
    late.stop()
    await wait_until(lambda: feed.holders == 0)


async def test_viewers_of_the_telescopes_own_stream_cost_no_encode_and_no_decode(
    source: Source,
) -> None:
    """Two aiortc viewers through the peer manager: both decode advancing stamps from the
    telescope's H.264, and no tier encoder ran nor was any pixel decoding asked for."""
    feed = CameraFeed()
    telescope = Telescope(source, passthrough=feed)
    manager = PeerManager(max_peers=4)
    player = asyncio.create_task(feed.play(600))
    clients = []
    try:
        remotes = []
        for _ in range(2):
            client, offer = await viewer_offer()
            got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
            client.on("track", got.set_result)
            session, answer = await manager.create("t", telescope, offer, tier=FULL)
            assert session.target_tier.name == SOURCE_TIER
            await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            clients.append(client)
            remotes.append(await asyncio.wait_for(got, 5))
        for remote in remotes:
            stamps: list[int] = []
            while len(stamps) < 8:
                frame = await asyncio.wait_for(remote.recv(), 5)
                stamp = framestamp.read(frame.to_ndarray(format="rgb24"))
                if stamp is not None:
                    stamps.append(stamp.frame)
            assert stamps == sorted(stamps) and len(set(stamps)) == 8
        tiers = manager.encoders("t")
        assert set(tiers) == {SOURCE_TIER}
        assert not any(isinstance(t, TierEncoder) for t in tiers.values())
        assert telescope.pixel_holders == 0 and feed.holders == 1
        assert all(s.stats().tier == SOURCE_TIER for s in manager.sessions("t"))
    finally:
        player.cancel()
        for client in clients:
            await client.close()
        await manager.close_all()
    await wait_until(lambda: feed.holders == 0)


async def test_peers_move_to_the_telescopes_stream_when_it_appears_and_back_when_it_goes(
    source: Source,
) -> None:
    feed = CameraFeed()
    telescope = Telescope(source)  # star mode: previews, encoded here
    manager = PeerManager(max_peers=4)

    async def play_previews() -> None:
        # Received now, not on the source's synthetic clock: both sources' frames count on
        # the same clock, as a telescope's do, or a switch back would look like going back.
        for number in range(1, 2000):
            source.frames.publish(display_frame(number, time.monotonic()))
            await asyncio.sleep(0.05)

    previews = asyncio.create_task(play_previews())
    video = asyncio.create_task(feed.play(2000))
    client, offer = await viewer_offer()
    try:
        got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        client.on("track", got.set_result)
        session, answer = await manager.create("t", telescope, offer, tier=FULL)
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(got, 5)
        await wait_until(lambda: session.stats().frames_sent > 3, timeout=5)
        assert session.stats().tier == FULL.name and telescope.pixel_holders == 1

        telescope.passthrough = feed  # the view went to the Moon; its stream can pass
        manager.source_changed("t", telescope)
        await wait_until(lambda: session.stats().tier == SOURCE_TIER, timeout=3)
        await wait_until(lambda: telescope.pixel_holders == 0, timeout=3)  # encoder let go
        full = manager.encoders("t").get(FULL.name)
        assert full is None or not full.running

        telescope.passthrough = None  # back to the stars
        manager.source_changed("t", telescope)
        await wait_until(lambda: session.stats().tier == FULL.name, timeout=3)
        await wait_until(lambda: feed.holders == 0, timeout=3)  # the stream is let go
        assert not manager.encoders("t")[SOURCE_TIER].running
    finally:
        previews.cancel()
        video.cancel()
        await client.close()
        await manager.close_all()


def test_the_ladder_has_the_telescopes_stream_on_top_only_where_it_may_pass(
    source: Source,
) -> None:
    feed = CameraFeed()
    telescope = Telescope(source, passthrough=feed)
    ladder = PeerManager(max_peers=1).ladder(telescope, Codec.H264)
    assert [t.name for t in ladder] == ["reduced", "full", SOURCE_TIER]
    assert ladder[-1].min_bitrate == feed.bitrate  # below its bitrate a viewer steps down
    # A VP8-only browser, or the server told to re-encode: the encoded tiers only.
    assert PeerManager(max_peers=1).ladder(telescope, Codec.VP8) == TIERS
    assert PeerManager(max_peers=1, passthrough=False).ladder(telescope, Codec.H264) == TIERS


async def test_two_units_of_one_burst_are_both_sent_in_order_without_a_keyframe_wait() -> None:
    feed = CameraFeed()
    tier = PassthroughTier(source_tier(WIDTH, feed.bitrate), feed.units, feed.packets)
    track = EncodedVideoTrack(tier)
    reader = asyncio.ensure_future(track.recv())
    await wait_until(lambda: feed.holders == 1)
    feed.publish()  # the IDR
    assert (await asyncio.wait_for(reader, 1)).is_keyframe
    feed.publish()
    feed.publish()  # two P-frames in one go: one TCP read of the telescope's stream
    first = await asyncio.wait_for(track.recv(), 1)
    second = await asyncio.wait_for(track.recv(), 1)
    assert not first.is_keyframe and second.pts > first.pts
    assert track.stats.keyframe_waits == 1  # only the join's
    track.stop()


@pytest.mark.parametrize("behind", [2, 25])
async def test_a_switch_to_a_tier_running_behind_holds_the_picture_until_it_catches_up(
    behind: int,
) -> None:
    # The reduced tier encodes the decoded video: its frames come `behind` frame intervals after
    # the units passed through, with the same pts. Switching down must not show the past (a
    # frame or two behind), must not wait for long (far behind: the picture steps back once,
    # after the hold) and must not spin while it waits.
    feed = CameraFeed()
    decoded: LatestValue[DisplayFrame] = LatestValue()
    loop = asyncio.get_running_loop()

    async def play() -> None:
        for _ in range(300):
            unit = feed.publish()
            picture = dataclasses.replace(display_frame(feed.number, unit.received), pts=unit.pts)
            loop.call_later(behind / feed.fps, decoded.publish, picture)
            await asyncio.sleep(1 / feed.fps)

    source = PassthroughTier(source_tier(WIDTH, feed.bitrate), feed.units, feed.packets)
    reduced = TierEncoder(dataclasses.replace(REDUCED, fps=30), decoded)
    track = EncodedVideoTrack(source)
    looks = 0
    switch_if_ready = track._switch_if_ready

    def counted() -> Any:
        nonlocal looks
        looks += 1
        return switch_if_ready()

    track._switch_if_ready = counted  # type: ignore[method-assign]
    decoder = Decoder()
    stamps: list[int | None] = []
    pts: list[int] = []

    async def receive() -> None:
        packet = await asyncio.wait_for(track.recv(), 2)
        pts.append(packet.pts)
        stamps.extend(decoder.stamps(bytes(packet)))

    player = asyncio.create_task(play())
    try:
        while len(stamps) < 40:  # a GOP (15) or two on the telescope's stream
            await receive()
        track.switch_to(reduced)
        switched_at = time.monotonic()
        while track.encoder is not reduced:
            await receive()
        took = time.monotonic() - switched_at
        for _ in range(10):
            await receive()
    finally:
        player.cancel()
        track.stop()
    assert track.stats.tier_switches == 1
    assert decoder.sizes[0] == (WIDTH, HEIGHT) and decoder.sizes[-1][0] == REDUCED.width
    assert all(b > a for a, b in itertools.pairwise(pts)), pts  # RTP time never goes back
    assert None not in stamps
    if behind == 2:
        assert track.stats.late_switches == 0
        assert took < SWITCH_HOLD_S, took  # held a frame or two, not the whole hold
        assert stamps == sorted(stamps), stamps
    else:
        assert track.stats.late_switches == 1
        assert SWITCH_HOLD_S <= took < SWITCH_HOLD_S + 0.3, took
        back = [a - b for a, b in itertools.pairwise(stamps) if b < a]
        assert len(back) == 1 and back[0] <= behind, stamps  # once, by the tier's lag
    # Woken by frames (two tiers at 30 fps over the switch), not spinning between them.
    assert looks < 4 * 30 * (took + 0.2), looks
