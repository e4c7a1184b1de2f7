"""The telemetry hub against the app's simulator: what the video views add to the state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from scopelink.schema.state import TelescopeState
from scopelink.seestar.events import parse_event
from scopelink.seestar.messages import RawEvent
from scopelink.services.telemetry import TelemetryChannel, _changes_from_event
from scopelink.settings import ServeSettings
from tests.web.conftest import RunningApp, serve


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=5.0)) as app:
        yield app


def channel(app: RunningApp) -> TelemetryChannel:
    return app.app.state.telemetry.channel("simulator")


async def until(
    app: RunningApp, check: Callable[[TelescopeState], bool], what: str, timeout: float = 15
) -> TelescopeState:
    state = channel(app).state
    for _ in range(int(timeout / 0.05)):
        if check(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {what}: {state.model_dump()}")


async def test_the_live_section_follows_the_source_and_describes_the_telescopes_stream(
    running: RunningApp,
) -> None:
    await until(running, lambda s: s.connection.control == "connected", "connected")
    state = channel(running).state
    assert state.live.source == "preview" and state.live.codec is None
    session = running.registry.get("simulator")
    # A viewer that takes the stream as it is (a WebRTC peer on the passthrough tier).
    async with session.pipeline.viewer(pixels=False):
        await session.commands.start_view("moon")
        live = (await until(running, lambda s: s.live.source == "video", "on video")).live
        live = (await until(running, lambda s: s.live.width is not None, "with facts")).live
        assert (live.codec, live.width, live.height) == ("h264", 1920, 1080)
        assert live.profile is not None and live.level is not None
        # Measured figures come with the poll.
        live = (
            await until(
                running,
                lambda s: s.live.frame_rate is not None and s.live.bitrate_bps is not None,
                "measured",
            )
        ).live
        assert live.frame_rate > 0 and live.bitrate_bps > 0
        assert live.passthrough is (live.passthrough_refusal is None)
        await session.commands.start_view("star")
        live = (await until(running, lambda s: s.live.source == "preview", "back")).live
        assert live.passthrough is False and live.passthrough_refusal is None
        assert live.codec is None and live.width is None


async def test_zoom_and_recording_follow_the_telescopes_events(running: RunningApp) -> None:
    await until(running, lambda s: s.connection.control == "connected", "connected")
    commands = running.registry.get("simulator").commands
    await commands.start_view("sun")
    await until(running, lambda s: s.view.stage == "RTSP", "in the Sun's video view")
    await commands.set_rtsp_zoom(4)
    await until(running, lambda s: s.view.zoom == 4, "at 4x")
    await commands.start_recording()
    state = await until(running, lambda s: s.recording.active, "recording")
    assert state.recording.state in ("start", "working")
    await commands.stop_recording()
    state = await until(running, lambda s: not s.recording.active, "stopped")
    assert state.recording.state == "complete" and state.recording.file_saved is True
    # Leaving the video view keeps the last recording's figures.
    await commands.start_view("star")
    state = await until(running, lambda s: s.view.stage != "RTSP", "back to the stars")
    assert state.recording.saved_frames is not None


def event(name: str, **fields: object) -> dict[str, dict[str, object]]:
    return _changes_from_event(parse_event(RawEvent(name, {"Event": name, **fields})))


def test_recording_and_zoom_are_read_from_the_firmwares_events() -> None:
    assert event("AviRecord", state="working", lapse_ms=1500, saved_frames=45) == {
        "recording": {"active": True, "state": "working", "lapse_ms": 1500, "saved_frames": 45}
    }
    stopped = event("AviRecord", state="complete", lapse_ms=2000, saved_frames=60, file_saved=True)
    assert stopped["recording"]["active"] is False and stopped["recording"]["file_saved"] is True
    assert event("RTSP", state="working", roi_index=1) == {"view": {"zoom": 2}}
    assert event("Setting", rtsp_roi_index=2) == {"view": {"zoom": 4}}
    assert event("Setting", rtsp_roi_index=7) == {}  # not a zoom this firmware has
    assert event("Setting", heater_enable=True) == {"optics": {"dew_heater": True}}
    assert event("WheelMove", state="complete", position=2) == {
        "optics": {"filter_position": 2, "lp_filter": True}
    }
    assert event("WheelMove", state="start", position=1) == {}  # not there yet
