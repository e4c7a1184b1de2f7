"""One live source per telescope: the preview stream in star views, the telescope's own video in
its RTSP stages, passed through untouched and decoded only when someone needs pixels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from scopelink.media.display import DisplayKind
from scopelink.seestar.control import ControlClient
from scopelink.seestar.imaging import ImagingClient
from scopelink.services.frame_pipeline import FramePipeline, LiveMode
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import make_client
from tests.services.test_frame_pipeline import FAST_BACKOFF
from tests.webrtc.conftest import wait_until


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    simulator = Simulator(SimulatorConfig.ephemeral(fps=10, video_fps=30))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


@pytest.fixture
async def pipeline(sim: Simulator) -> AsyncIterator[FramePipeline]:
    imaging = ImagingClient(sim.host, sim.imaging.port, backoff=FAST_BACKOFF)
    await imaging.connect(timeout=5)
    p = FramePipeline(imaging, video_port=sim.rtsp.port, linger_s=0.2)
    assert p.video is not None
    p.video.linger_s = 0.2
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
        await imaging.close()


async def moon(client: ControlClient, pipeline: FramePipeline) -> None:
    """The telescope goes to its Moon view; telemetry tells the pipeline its stage."""
    await client.call("iscope_start_view", {"mode": "moon"})
    await pipeline.set_stage("RTSP")


async def test_a_passthrough_viewer_gets_the_telescopes_units_and_nothing_is_decoded(
    client: ControlClient, pipeline: FramePipeline
) -> None:
    changes: list[object] = []
    pipeline.add_source_listener(lambda: changes.append(pipeline.passthrough))
    await moon(client, pipeline)
    assert pipeline.mode is LiveMode.VIDEO and pipeline.passthrough is None  # not known yet
    video = pipeline.video
    assert video is not None
    async with pipeline.viewer(pixels=False):
        # The stream starts for the viewer; once its SPS says Baseline, it can pass.
        await wait_until(lambda: pipeline.passthrough is video, timeout=10)
        assert changes[-1] is video
        start = video.units.seq
        await wait_until(lambda: video.units.seq >= start + 15, timeout=5)
        keyframe = video.units.last_keyframe
        assert keyframe is not None and keyframe.value.data.startswith(b"\x00\x00\x00\x01")
        assert video.decoded == 0 and pipeline.frames.seq == 0  # no pixels were asked for
        assert (video.facts.width, video.facts.height) == (1920, 1080)
        assert video.bitrate is None or video.bitrate > 100_000
    await wait_until(lambda: not video.running, timeout=3)  # the stream goes after its linger


async def test_pixels_in_the_video_mode_are_decoded_stamped_frames_of_the_newest_unit(
    client: ControlClient, pipeline: FramePipeline
) -> None:
    await moon(client, pipeline)
    video = pipeline.video
    assert video is not None
    passed_pts: set[int] = set()
    video.units.tap(lambda item: passed_pts.add(item.value.pts))
    async with pipeline.viewer():  # an MJPEG viewer: it needs pixels
        seq = pipeline.frames.seq
        stamps = []
        while len(stamps) < 10:
            item = await asyncio.wait_for(pipeline.frames.next(seq), 5)
            seq = item.seq
            display = item.value
            assert display.kind is DisplayKind.VIDEO and display.stretch is None
            assert (display.width, display.height) == (1920, 1080)
            assert display.stamp is not None
            # Its unit's pts, as passed through: a tier encoded from this frame and the
            # telescope's stream agree on which picture is newer.
            assert display.pts in passed_pts
            stamps.append(display.stamp.frame)
        assert stamps == sorted(stamps) and len(set(stamps)) == 10
        assert video.decoded >= video.displayed >= 10
    await wait_until(lambda: not video.running, timeout=3)


async def test_back_to_the_stars_the_preview_stream_resumes_for_the_same_viewer(
    client: ControlClient, pipeline: FramePipeline
) -> None:
    async with pipeline.viewer():
        first = await asyncio.wait_for(pipeline.frames.next(0), 5)
        assert first.value.kind is DisplayKind.PREVIEW and pipeline.is_current(first.value)
        await moon(client, pipeline)
        # The star view's last frame is no "latest" for a viewer arriving now (MJPEG, snapshot).
        assert not pipeline.is_current(first.value)
        video = pipeline.video
        assert video is not None
        await wait_until(
            lambda: (
                pipeline.frames.latest is not None
                and pipeline.frames.latest.value.kind is DisplayKind.VIDEO
            ),
            timeout=10,
        )
        await client.call("iscope_start_view", {"mode": "star"})
        await pipeline.set_stage("ContinuousExposure")
        assert pipeline.mode is LiveMode.PREVIEW and pipeline.passthrough is None
        await wait_until(lambda: not video.running, timeout=3)  # let go at once
        await wait_until(
            lambda: (
                pipeline.frames.latest is not None
                and pipeline.frames.latest.value.kind is DisplayKind.PREVIEW
            ),
            timeout=10,
        )


async def test_a_stream_with_b_frames_is_not_offered_for_passthrough_and_decodes_for_pixels() -> (
    None
):
    simulator = Simulator(
        SimulatorConfig.ephemeral(fps=10, video_fps=30, video_profile="high", video_b_frames=2)
    )
    await simulator.start()
    imaging = ImagingClient(simulator.host, simulator.imaging.port, backoff=FAST_BACKOFF)
    pipeline = FramePipeline(imaging, video_port=simulator.rtsp.port, linger_s=0.2)
    control = make_client(simulator)
    try:
        await imaging.connect(timeout=5)
        await control.connect(timeout=5)
        await pipeline.start()
        await moon(control, pipeline)
        video = pipeline.video
        assert video is not None
        async with pipeline.viewer(pixels=False):
            await wait_until(lambda: video.facts is not None and video.units.seq > 30, timeout=10)
            assert pipeline.passthrough is None
            assert video.passthrough_refusal is not None
            assert "High" in video.passthrough_refusal or "B-frames" in video.passthrough_refusal
        # Re-encoded instead: its pictures decode for the tier encoders and MJPEG.
        async with pipeline.viewer():
            item = await asyncio.wait_for(pipeline.frames.next(0), 5)
            assert item.value.kind is DisplayKind.VIDEO and item.value.stamp is not None
    finally:
        await pipeline.stop()
        await control.close()
        await imaging.close()
        await simulator.stop()
