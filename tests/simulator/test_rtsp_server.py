"""The simulated camera's RTSP video, seen from a bare socket, PyAV and ffprobe."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from scopelink.seestar.control import ControlClient
from scopelink.simulator.h264 import NAL_IDR, NAL_PPS, NAL_SPS
from scopelink.simulator.rtp import PAYLOAD_TYPE
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.conftest import make_client
from tests.simulator.rtsp_wire import AccessUnits, Decoded, RtspWire, UdpPorts

WIDTH, HEIGHT = 1920, 1080


@pytest.fixture
async def moon(sim: Simulator, client: ControlClient) -> Simulator:
    """The simulator in the Moon view: stage RTSP."""
    await client.call("iscope_start_view", {"mode": "moon"})
    await sim.video.warm("moon")  # the picture is drawn once (~0.5 s), not in the first frame
    return sim


async def play_tcp(port: int, seconds: float) -> Decoded:
    wire = await RtspWire.open(port)
    try:
        await wire.setup_tcp()
        reply = await wire.request("PLAY")
        assert reply.status == 200
        return await wire.read_interleaved(seconds, AccessUnits())
    finally:
        await wire.close()


def assert_plays(seen: Decoded, *, min_frames: int = 5) -> None:
    """Decoded pictures of the documented size, each stamped, numbers rising."""
    assert len(seen.pictures) >= min_frames, f"only {len(seen.pictures)} pictures"
    assert {p.shape for p in seen.pictures} == {(HEIGHT, WIDTH)}
    assert all(s is not None for s in seen.stamps), "every decoded frame carries its stamp"
    numbers = [s.frame for s in seen.stamps if s is not None]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


async def test_describe_offers_one_constrained_baseline_h264_track(moon: Simulator) -> None:
    wire = await RtspWire.open(moon.rtsp.port)
    options = await wire.request("OPTIONS")
    assert options.status == 200
    for method in ("DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER"):
        assert method in options.header("public")
    reply = await wire.request("DESCRIBE", Accept="application/sdp")
    await wire.close()
    assert reply.status == 200
    assert reply.header("content-type") == "application/sdp"
    assert reply.header("content-base") == f"{wire.url}/"
    sdp = reply.body.decode()
    assert "m=video 0 RTP/AVP 96" in sdp
    assert "a=rtpmap:96 H264/90000" in sdp
    assert "a=framerate:30" in sdp
    assert "a=control:trackID=0" in sdp
    fmtp = next(line for line in sdp.split("\r\n") if line.startswith("a=fmtp:96 "))
    params = dict(p.split("=", 1) for p in fmtp.removeprefix("a=fmtp:96 ").split(";"))
    assert params["packetization-mode"] == "1"
    # 0x42 Baseline with constraint_set1 (0xc0): Constrained Baseline; level 4.0 for 1080p30.
    assert params["profile-level-id"] == "42c028"
    sps, pps = (base64.b64decode(p) for p in params["sprop-parameter-sets"].split(","))
    assert (sps[0] & 0x1F, pps[0] & 0x1F) == (NAL_SPS, NAL_PPS)


async def test_tcp_interleaved_stream_decodes_to_stamped_1080p_frames(moon: Simulator) -> None:
    wire = await RtspWire.open(moon.rtsp.port)
    setup = await wire.setup_tcp()
    assert setup.header("transport").startswith("RTP/AVP/TCP;unicast;interleaved=0-1")
    assert setup.header("session").endswith(";timeout=60")
    play = await wire.request("PLAY")
    assert play.status == 200 and "rtptime=" in play.header("rtp-info")
    units = AccessUnits()
    seen = await wire.read_interleaved(1.5, units)
    assert wire.interleaved == []
    teardown = await wire.request("TEARDOWN")
    assert teardown.status == 200
    await wire.close()
    assert_plays(seen, min_frames=20)
    assert {p.payload_type for p in units.packets} == {PAYLOAD_TYPE}
    assert len({p.ssrc for p in units.packets}) == 1
    # The first access unit is an IDR with SPS and PPS in-band, as is every IDR after it.
    assert seen.units[0][:2] == [NAL_SPS, NAL_PPS] and NAL_IDR in seen.units[0]
    for unit in seen.units:
        if NAL_IDR in unit:
            assert unit.index(NAL_SPS) < unit.index(NAL_PPS) < unit.index(NAL_IDR)
    assert sum(NAL_IDR in u for u in seen.units) >= 2, "a keyframe every second"
    assert 200 in seen.rtcp_types, "RTCP sender reports on the odd channel"


async def test_udp_stream_decodes_and_sends_sender_reports(moon: Simulator) -> None:
    ports = UdpPorts()
    wire = await RtspWire.open(moon.rtsp.port)
    try:
        await wire.request("DESCRIBE")
        setup = await wire.request(
            "SETUP", f"{wire.url}/trackID=0", Transport=f"RTP/AVP;unicast;client_port={ports.spec}"
        )
        assert setup.status == 200
        transport = setup.header("transport")
        assert f"client_port={ports.spec}" in transport
        lo, hi = moon.rtsp.server_ports
        assert f"server_port={lo}-{hi}" in transport and lo % 2 == 0
        wire.session = setup.header("session").split(";")[0]
        assert (await wire.request("PLAY")).status == 200
        seen = await ports.read(1.2, AccessUnits())
        keepalive = await wire.request("GET_PARAMETER")
        assert keepalive.status == 200
        assert (await wire.request("TEARDOWN")).status == 200
    finally:
        ports.close()
        await wire.close()
    assert_plays(seen, min_frames=20)
    assert 200 in seen.rtcp_types


async def play_udp(port: int, seconds: float) -> Decoded:
    ports = UdpPorts()
    wire = await RtspWire.open(port)
    try:
        transport = f"RTP/AVP;unicast;client_port={ports.spec}"
        setup = await wire.request("SETUP", f"{wire.url}/trackID=0", Transport=transport)
        wire.session = setup.header("session").split(";")[0]
        assert (await wire.request("PLAY")).status == 200
        return await ports.read(seconds, AccessUnits())
    finally:
        ports.close()
        await wire.close()


async def test_several_players_share_one_encode(moon: Simulator) -> None:
    before = moon.video.stats.frames_encoded
    port = moon.rtsp.port
    results = await asyncio.gather(play_tcp(port, 0.8), play_tcp(port, 0.8), play_udp(port, 0.8))
    for seen in results:
        assert_plays(seen, min_frames=12)
    encoded = moon.video.stats.frames_encoded - before
    assert encoded <= 32, f"{encoded} encodes for three players over ~0.8 s: one per frame"


async def test_bad_requests_get_their_rtsp_errors(moon: Simulator) -> None:
    wire = await RtspWire.open(moon.rtsp.port)
    track = f"{wire.url}/trackID=0"
    tcp = "RTP/AVP/TCP;unicast;interleaved=0-1"
    assert (await wire.request("DESCRIBE", f"rtsp://127.0.0.1:{moon.rtsp.port}/live")).status == 404
    assert (await wire.request("PLAY")).status == 454, "PLAY without a session"
    assert (await wire.request("PLAY", Session="12345678")).status == 454, "unknown session"
    assert (await wire.request("SETUP", Transport=tcp)).status == 459, "SETUP on the aggregate"
    multicast = "RTP/AVP;multicast;port=5000-5001"
    assert (await wire.request("SETUP", track, Transport=multicast)).status == 461
    assert (await wire.request("SETUP", track, Transport="RTP/SAVP;unicast")).status == 461
    assert (await wire.request("RECORD")).status == 405
    assert (await wire.request("FLY")).status == 501
    await wire.setup_tcp()
    assert (await wire.request("PLAY")).status == 200
    again = await wire.request("SETUP", track, Transport=tcp)
    assert again.status == 455, "no transport change while playing"
    assert (await wire.request("TEARDOWN")).status == 200
    assert (await wire.request("PLAY")).status == 454, "the session is gone after TEARDOWN"
    await wire.close()


async def test_a_request_without_cseq_is_refused(moon: Simulator) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", moon.rtsp.port)
    writer.write(b"OPTIONS * RTSP/1.0\r\n\r\n")
    status = await asyncio.wait_for(reader.readline(), 3)
    assert status.startswith(b"RTSP/1.0 400")
    writer.close()


async def test_the_stream_is_unavailable_outside_the_rtsp_stage(
    sim: Simulator, client: ControlClient
) -> None:
    await client.call("iscope_start_view", {"mode": "star"})
    wire = await RtspWire.open(sim.rtsp.port)
    assert (await wire.request("OPTIONS")).status == 200
    describe = await wire.request("DESCRIBE")
    assert describe.status == 503 and describe.header("retry-after")
    await client.call("iscope_start_view", {"mode": "sun"})
    assert (await wire.request("DESCRIBE")).status == 200
    await wire.close()


async def test_playing_connections_end_with_the_rtsp_stage(
    moon: Simulator, client: ControlClient
) -> None:
    wire = await RtspWire.open(moon.rtsp.port)
    await wire.setup_tcp()
    await wire.request("PLAY")
    reading = asyncio.create_task(wire.read_interleaved(5.0, AccessUnits()))
    await asyncio.sleep(0.5)
    await client.call("iscope_stop_view")
    seen = await asyncio.wait_for(reading, 2.0)  # ends at EOF, long before 5 s
    assert seen.pictures
    assert seen.rtcp_types[-1] == 200 and moon.rtsp.session_count == 0
    assert await wire.reader.read() == b"", "the server closed the connection"
    await wire.close()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_ffprobe_reads_the_stream(moon: Simulator, transport: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-rtsp_transport", transport, "-select_streams", "v",
        "-show_entries", "stream=codec_name,profile,width,height,r_frame_rate,has_b_frames",
        "-of", "json", moon.rtsp.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()
    (stream,) = json.loads(out)["streams"]
    assert stream["codec_name"] == "h264"
    assert stream["profile"] == "Constrained Baseline"
    assert (stream["width"], stream["height"]) == (WIDTH, HEIGHT)
    assert stream["r_frame_rate"] == "30/1"
    assert stream["has_b_frames"] == 0


async def test_a_b_frame_stream_can_be_configured() -> None:
    config = SimulatorConfig.ephemeral(video_profile="high", video_b_frames=2, video_fps=25)
    async with Simulator(config) as sim:
        client = make_client(sim)
        await client.connect(timeout=5)
        await client.call("iscope_start_view", {"mode": "planet"})
        wire = await RtspWire.open(sim.rtsp.port)
        describe = await wire.request("DESCRIBE")
        assert "profile-level-id=64" in describe.body.decode(), "High profile"
        assert "a=framerate:25" in describe.body.decode()
        await wire.close()
        proc = await asyncio.create_subprocess_exec(
            "ffprobe", "-v", "error", "-rtsp_transport", "tcp", "-select_streams", "v",
            "-show_entries", "stream=profile,has_b_frames", "-of", "json", sim.rtsp.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 15)
        await client.close()
    (stream,) = json.loads(out)["streams"]
    assert stream["profile"] == "High" and stream["has_b_frames"] > 0, err.decode()


async def test_zoom_changes_the_picture(moon: Simulator, client: ControlClient) -> None:
    whole = await play_tcp(moon.rtsp.port, 0.4)
    await client.call("set_setting", {"rtsp_roi_index": 2})
    view = (await client.call("get_view_state"))["View"]
    assert view["RTSP"]["roi_index"] == 2
    zoomed = await play_tcp(moon.rtsp.port, 0.4)
    assert_plays(whole, min_frames=3)
    assert_plays(zoomed, min_frames=3)
    # Below the stamp: 4x zoom of the Moon's centre fills the frame; at 1x the corners are sky.
    a = whole.pictures[-1][200:, :].astype(np.float32)
    b = zoomed.pictures[-1][200:, :].astype(np.float32)
    assert float(np.abs(a - b).mean()) > 20
    assert b[-100:, -100:].mean() > a[-100:, -100:].mean() + 50, "lit lunar surface, not sky"
    with pytest.raises(Exception, match="103"):
        await client.call("set_setting", {"rtsp_roi_index": 3})
