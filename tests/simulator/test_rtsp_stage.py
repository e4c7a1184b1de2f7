"""The RTSP view stage around the video: events, recording, the silent 4800 port, faults, models."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest

from scopelink.seestar.control import ControlClient
from scopelink.seestar.errors import CommandError
from scopelink.seestar.events import Event
from scopelink.simulator.imaging_server import HANDSHAKE
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import make_client, sky_at
from tests.simulator.rtsp_wire import AccessUnits, RtspWire
from tests.simulator.test_imaging_server import Wire
from tests.simulator.test_rtsp_server import assert_plays, play_tcp


def raw_events(client: ControlClient, *names: str) -> list[Event]:
    seen: list[Event] = []
    client.subscribe(seen.append, set(names))
    return seen


async def test_solar_system_modes_enter_the_rtsp_stage(
    sim: Simulator, client: ControlClient
) -> None:
    seen = raw_events(client, "View", "RTSP")
    await client.call("iscope_start_view", {"mode": "sun"})
    view = (await client.call("get_view_state"))["View"]
    assert (view["mode"], view["stage"]) == ("sun", "RTSP")
    assert view["RTSP"] == {
        "state": "working",
        "lapse_ms": view["RTSP"]["lapse_ms"],
        "roi_index": 0,
        "port": sim.rtsp.port,
    }
    await asyncio.sleep(0.1)
    names = [(e.event, e.raw.get("stage")) for e in seen]
    assert ("View", "RTSP") in names and ("RTSP", None) in names
    rtsp = next(e.raw for e in seen if e.event == "RTSP")
    assert (rtsp["state"], rtsp["port"], rtsp["roi_index"]) == ("working", sim.rtsp.port, 0)
    await client.call("iscope_start_view", {"mode": "star"})
    view = (await client.call("get_view_state"))["View"]
    assert view["stage"] == "ContinuousExposure" and "RTSP" not in view


async def test_record_runs_only_in_the_rtsp_stage(sim: Simulator, client: ControlClient) -> None:
    await client.call("iscope_start_view", {"mode": "star"})
    with pytest.raises(CommandError) as refused:
        await client.call("start_record_avi", {"raw": False})
    assert refused.value.code == 207
    await client.call("iscope_start_view", {"mode": "planet"})
    seen = raw_events(client, "AviRecord")
    await client.call("start_record_avi", {"raw": False})
    await asyncio.sleep(0.4)
    record = (await client.call("get_view_state"))["View"]["AviRecord"]
    assert record["state"] == "working" and record["note"] == "mp4 record"
    assert record["saved_frames"] > 0 and record["file_saved"] is False
    await client.call("stop_record_avi")
    record = (await client.call("get_view_state"))["View"]["AviRecord"]
    assert record["state"] == "complete" and record["file_saved"] is True
    with pytest.raises(CommandError):
        await client.call("stop_record_avi")
    await asyncio.sleep(0.1)
    assert [e.raw["state"] for e in seen] == ["start", "working", "complete"]


async def test_imaging_port_is_silent_in_the_rtsp_stage_and_resumes_in_star_mode(
    sim: Simulator, client: ControlClient
) -> None:
    await client.call("iscope_start_view", {"mode": "moon"})
    wire = await Wire.open(sim.imaging.port)
    await wire.handshake()
    await wire.send("begin_streaming", 21)
    with pytest.raises(TimeoutError):
        await wire.frame(timeout=0.8)
    await wire.send("test_connection", 7)
    header, payload = await wire.frame()
    assert header.frame_id == 7 and b"server connected" in payload, "the link itself lives on"
    await client.call("iscope_start_view", {"mode": "star"})
    header, _ = await wire.frame(timeout=3.0)
    assert header.frame_id == 21 and header.width == 1080
    await wire.close()


async def test_stall_holds_replies_and_video(sim: Simulator, client: ControlClient) -> None:
    await client.call("iscope_start_view", {"mode": "moon"})
    wire = await RtspWire.open(sim.rtsp.port)
    await wire.setup_tcp()
    await wire.request("PLAY")
    await wire.read_interleaved(0.3, AccessUnits())
    sim.faults.stall(2.0)
    # What was on its way when the stall began (a frame being written, the sockets' buffers)
    # still arrives; then nothing does.
    await wire.skip_until_quiet(0.15)
    units = AccessUnits()
    await wire.read_interleaved(0.6, units)
    assert not units.packets, "no RTP during the stall"
    started = time.monotonic()
    reply = await wire.request("GET_PARAMETER", timeout=3.0)
    assert reply.status == 200 and time.monotonic() - started > 0.15, "the reply waits"
    after = await wire.read_interleaved(1.2, AccessUnits())
    assert_plays(after, min_frames=3)
    await wire.close()


async def test_drop_closes_rtsp_connections(sim: Simulator, client: ControlClient) -> None:
    await client.call("iscope_start_view", {"mode": "scenery"})
    wire = await RtspWire.open(sim.rtsp.port)
    await wire.setup_tcp()
    await wire.request("PLAY")
    reading = asyncio.create_task(wire.read_interleaved(5.0, AccessUnits()))
    await asyncio.sleep(0.3)
    sim.faults.drop()
    await asyncio.wait_for(reading, 2.0)
    assert sim.rtsp.session_count == 0
    await wire.close()
    seen = await play_tcp(sim.rtsp.port, 0.4)  # new connections are welcome
    assert_plays(seen, min_frames=3)


async def test_slow_viewer_skips_to_the_next_idr_without_delaying_others(
    sim: Simulator, client: ControlClient
) -> None:
    await client.call("iscope_start_view", {"mode": "scenery"})
    await sim.video.warm("scenery")
    # A player that stops reading after PLAY, with the smallest receive buffer there is.
    loop = asyncio.get_running_loop()
    hung = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hung.setblocking(False)
    await loop.sock_connect(hung, ("127.0.0.1", sim.rtsp.port))
    url = f"rtsp://127.0.0.1:{sim.rtsp.port}/stream"

    async def ask(text: str) -> str:
        await loop.sock_sendall(hung, text.encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += await loop.sock_recv(hung, 1)  # one byte at a time: no RTP read ahead
        return reply.decode()

    setup = await ask(
        f"SETUP {url}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n"
        "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
    )
    session = setup.split("Session: ")[1].split(";")[0]
    assert await ask(f"PLAY {url} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n")
    await asyncio.sleep(0.3)
    seen = await play_tcp(sim.rtsp.port, 1.2)
    assert_plays(seen, min_frames=20)
    gaps = np.diff([s.frame for s in seen.stamps if s is not None])
    assert gaps.max() <= 2, "the reading player missed nothing while the other stalled"
    (info,) = [s for s in sim.rtsp.sessions() if s.id == session]
    assert info.frames_sent < 25, f"{info.frames_sent} frames sent to a player that reads none"
    assert info.frames_behind > 20, "it is simply behind, waiting for its socket to drain"
    assert info.write_buffer < 1 << 20, "what waits for it is bounded by about a frame"
    hung.close()


@pytest.fixture
async def s30() -> Simulator:
    simulator = Simulator(SimulatorConfig.ephemeral(model="S30"))
    await simulator.start()
    yield simulator  # type: ignore[misc]
    await simulator.stop()


async def test_s30_has_a_wide_camera_on_its_own_ports(s30: Simulator) -> None:
    assert s30.wide_rtsp is not None and s30.wide_imaging is not None
    client = make_client(s30)
    await client.connect(timeout=5)
    try:
        state = await client.call("get_device_state")
        assert state["device"]["product_model"] == "Seestar S30"
        assert "second_camera" in state and state["ap"]["ssid"].startswith("S30_")
        await client.call("iscope_start_view", {"mode": "moon"})
        await asyncio.gather(s30.video.warm("moon"), s30.wide_video.warm("moon"))  # type: ignore[union-attr]
        main, wide = await asyncio.gather(
            play_tcp(s30.rtsp.port, 0.5), play_tcp(s30.wide_rtsp.port, 0.5)
        )
        assert_plays(main, min_frames=5)
        assert_plays(wide, min_frames=5)
        # The wide field shows the Moon as a small disc: far less of the frame is lit.
        lit_main = (main.pictures[-1][200:] > 60).mean()
        lit_wide = (wide.pictures[-1][200:] > 60).mean()
        assert lit_wide < lit_main / 10
        await client.call("iscope_start_view", {"mode": "star"})
        imaging = await Wire.open(s30.wide_imaging.port)
        header, payload = await imaging.frame()
        assert payload == HANDSHAKE
        await imaging.send("begin_streaming", 21)
        header, _ = await imaging.frame(timeout=3.0)
        assert (header.frame_id, header.width, header.height) == (21, 1080, 1920)
        await imaging.close()
    finally:
        await client.close()


async def test_s50_has_no_wide_camera(sim: Simulator) -> None:
    assert sim.wide_rtsp is None and sim.wide_imaging is None


async def test_goto_in_moon_mode_ends_in_the_rtsp_stage(
    sim: Simulator, client: ControlClient
) -> None:
    ra, dec = sky_at(sim, 40.0, 120.0)
    done = asyncio.create_task(
        client.wait_for_event("AutoGoto", lambda e: e.state == "complete", timeout=15)
    )
    await client.call(
        "iscope_start_view", {"mode": "moon", "target_ra_dec": [ra, dec], "target_name": "Moon"}
    )
    assert (await client.call("get_view_state"))["View"]["stage"] == "AutoGoto"
    await done
    view = (await client.call("get_view_state"))["View"]
    assert (view["stage"], view["target_name"]) == ("RTSP", "Moon")
    assert view["RTSP"]["state"] == "working"


async def test_an_idle_session_times_out(sim: Simulator, client: ControlClient) -> None:
    await client.call("iscope_start_view", {"mode": "sun"})
    sim.rtsp.session_timeout_s = 0.3
    wire = await RtspWire.open(sim.rtsp.port)
    setup = await wire.setup_tcp()
    assert setup.header("session").endswith(";timeout=1"), "whole seconds, at least one"
    assert sim.rtsp.session_count == 1
    await asyncio.sleep(0.6)
    assert sim.rtsp.session_count == 0
    assert (await wire.request("PLAY")).status == 454
    await wire.close()
