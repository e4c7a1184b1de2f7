"""The simulated camera's RTSP video, seen from a bare socket, PyAV and ffprobe."""

from __future__ import annotations

import asyncio
import base64

import pytest

from scopelink.seestar.control import ControlClient
from scopelink.simulator.h264 import NAL_IDR, NAL_PPS, NAL_SPS
from scopelink.simulator.rtp import PAYLOAD_TYPE
from scopelink.simulator.simulator import Simulator
from tests.simulator.rtsp_wire import AccessUnits, Decoded, RtspWire, UdpPorts

WIDTH, HEIGHT = 1920, 1080


@pytest.fixture
async def moon(sim: Simulator, client: ControlClient) -> Simulator:
    """The simulator in the Moon view: stage RTSP."""
    await client.call("iscope_start_view", {"mode": "moon"})
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
    assert {p.shape for p in seen.pictures} == {(HEIGHT, WIDTH, 3)}
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


async def test_several_players_share_one_encode(moon: Simulator) -> None:
    ports = UdpPorts()
    udp = await RtspWire.open(moon.rtsp.port)
    await udp.request(
        "SETUP", f"{udp.url}/trackID=0", Transport=f"RTP/AVP;unicast;client_port={ports.spec}"
    )
    udp.session = None
    before = moon.video.stats.frames_encoded
    results = await asyncio.gather(play_tcp(moon.rtsp.port, 1.0), play_tcp(moon.rtsp.port, 1.0))
    await udp.close()
    ports.close()
    for seen in results:
        assert_plays(seen, min_frames=15)
    encoded = moon.video.stats.frames_encoded - before
    assert encoded <= 40, f"{encoded} encodes for two players over ~1 s: one per frame"
