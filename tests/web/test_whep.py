"""WHEP over the real app, its simulator and a real aiortc player (no browser here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from scopelink import framestamp
from scopelink.settings import ServeSettings
from scopelink.web.rtc import PeerHost
from scopelink.webrtc.adapt import Feedback
from scopelink.webrtc.encoder import Codec
from scopelink.webrtc.ice import IceSettings
from scopelink.webrtc.sessions import PeerManager, WebRtcSettings
from tests.web.conftest import RunningApp, serve, wait_connected

WHEP = "/api/telescopes/simulator/whep"
SDP = {"Content-Type": "application/sdp"}


def configure(app: RunningApp, **kwargs: object) -> PeerManager:
    """Give the running app WebRTC settings for one test (the default manager has no peers)."""
    settings = WebRtcSettings(**kwargs)  # type: ignore[arg-type]
    state = app.app.state
    state.webrtc_settings = settings
    state.peers = PeerManager.from_settings(settings)
    state.peer_host = PeerHost(state.peers, settings, state.commands, state.telemetry)
    return state.peers


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=10)) as app:
        app.registry.get("simulator").pipeline.linger_s = 0.3
        yield app


@pytest.fixture
async def http(running: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=20) as client:
        await wait_connected(client)
        yield client


class Player:
    """A WHEP player: an aiortc peer that receives video only (in `only` that codec, if given)."""

    def __init__(self, only: str | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if only is not None:
            codecs = RTCRtpReceiver.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in codecs if c.mimeType == only])
        self.track: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        self.pc.on("track", self.track.set_result)

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def stamps(self, count: int) -> list[int]:
        remote = await asyncio.wait_for(self.track, 10)
        out: list[int] = []
        while len(out) < count:
            frame = await asyncio.wait_for(remote.recv(), 10)
            stamp = framestamp.read(frame.to_ndarray(format="rgb24"))
            if stamp is not None:
                out.append(stamp.frame)
        return out


def unreachable(offer: str) -> str:
    """The offer with its candidates replaced by one nobody answers (TEST-NET-1)."""
    lines = [line for line in offer.splitlines() if not line.startswith("a=candidate:")]
    at = next(i for i, line in enumerate(lines) if line.startswith("a=mid:"))
    lines.insert(at + 1, "a=candidate:1 1 udp 2130706431 192.0.2.1 9 typ host")
    return "\r\n".join(lines) + "\r\n"


async def test_whep_player_watches_and_delete_stops_the_telescope_stream(
    running: RunningApp, http: httpx.AsyncClient
) -> None:
    configure(running)
    pipeline = running.registry.get("simulator").pipeline
    player = Player()
    try:
        response = await http.post(WHEP, content=await player.offer(), headers=SDP)
        assert response.status_code == 201, response.text
        assert response.headers["content-type"] == "application/sdp"
        location = response.headers["location"]
        assert location.startswith(f"{WHEP}/") and len(location) > len(WHEP) + 20
        assert response.headers["etag"].startswith('"')
        assert "a=candidate:" in response.text
        await player.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        stamps = await player.stamps(5)
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
        assert pipeline.viewers == 1

        peers = (await http.get("/api/telescopes/simulator/webrtc/peers")).json()["peers"]
        (peer,) = peers
        assert peer["id"] == location.rsplit("/", 1)[1]
        assert peer["state"] == "connected" and peer["tier"] == "full"
        assert peer["frames_sent"] >= 5 and peer["bytes_sent"] > 0

        assert (await http.delete(location)).status_code == 200
        assert (await http.delete(location)).status_code == 404
    finally:
        await player.pc.close()
    assert pipeline.viewers == 0
    assert running.app.state.peers.encoders("simulator") == {}  # no tier without a viewer
    await asyncio.sleep(pipeline.linger_s + 0.3)
    assert not pipeline.imaging.streaming


async def test_refusals_wrong_type_limit_and_a_peer_that_never_connects(
    running: RunningApp, http: httpx.AsyncClient
) -> None:
    manager = configure(running, max_peers=1, connect_timeout_s=1.0)
    pipeline = running.registry.get("simulator").pipeline
    player = Player()
    offer = unreachable(await player.offer())
    await player.pc.close()

    wrong = await http.post(WHEP, content=offer, headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415
    assert wrong.headers["content-type"] == "application/problem+json"

    first = await http.post(WHEP, content=offer, headers=SDP)
    assert first.status_code == 201
    full = await http.post(WHEP, content=offer, headers=SDP)
    assert full.status_code == 503
    assert "limit of 1 concurrent WebRTC peers" in full.json()["detail"]

    restart = "a=ice-ufrag:restarted\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
    patch = await http.patch(
        first.headers["location"],
        content=restart,
        headers={"Content-Type": "application/trickle-ice-sdpfrag"},
    )
    assert patch.status_code == 422 and "new session" in patch.json()["detail"]
    trickle = "a=candidate:2 1 udp 2130706431 192.0.2.2 9 typ host\r\n"
    patch = await http.patch(
        first.headers["location"],
        content=trickle,
        headers={"Content-Type": "application/trickle-ice-sdpfrag"},
    )
    assert patch.status_code == 204

    assert len(manager) == 1 and pipeline.viewers == 1
    started = time.monotonic()
    while len(manager) and time.monotonic() - started < 5:
        await asyncio.sleep(0.05)
    assert len(manager) == 0, "the peer that never connected was not removed"
    assert pipeline.viewers == 0
    assert (await http.delete(first.headers["location"])).status_code == 404


async def test_options_and_ice_servers_hand_out_turn_credentials(
    running: RunningApp, http: httpx.AsyncClient
) -> None:
    ice = IceSettings(turn_urls=["turn:turn.scope.lan:3478?transport=udp"], turn_secret="s3cret")
    configure(running, ice=ice)
    response = await http.options(WHEP)
    assert response.status_code == 204
    assert response.headers["accept-post"] == "application/sdp"
    (link,) = response.headers.get_list("link")
    assert link.startswith('<turn:turn.scope.lan:3478?transport=udp>; rel="ice-server"')
    assert 'username="' in link and 'credential="' in link
    assert 'credential-type="password"' in link
    servers = (await http.get("/api/webrtc/ice-servers")).json()["iceServers"]
    (turn,) = servers
    expiry = int(turn["username"].split(":", 1)[0])
    assert 3500 < expiry - time.time() <= 3600
    assert turn["credential"]


async def test_tokens_are_required_and_a_viewer_may_watch() -> None:
    settings = ServeSettings(simulator_fps=10, tokens={"op": "operator", "eye": "viewer"})
    async with serve(settings) as app:
        configure(app)
        async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as anonymous:
            player = Player()
            offer = await player.offer()
            try:
                refused = await anonymous.post(WHEP, content=offer, headers=SDP)
                assert refused.status_code == 401
                assert (await anonymous.options(WHEP)).status_code == 401
                viewer = {**SDP, "Authorization": "Bearer eye"}
                accepted = await anonymous.post(WHEP, content=offer, headers=viewer)
                assert accepted.status_code == 201, accepted.text
                location = accepted.headers["location"]
                # Only its creator (or an operator) may end a session.
                assert (await anonymous.delete(location)).status_code == 401
                bearer = {"Authorization": "Bearer eye"}
                assert (await anonymous.delete(location, headers=bearer)).status_code == 200
            finally:
                await player.pc.close()


def video_codecs(sdp: str) -> set[str]:
    """The encoding names of an SDP's `a=rtpmap` lines, without retransmission (rtx)."""
    names = {line.split(" ", 1)[1].split("/")[0] for line in sdp.splitlines() if "rtpmap" in line}
    return names - {"rtx"}


async def test_a_player_without_h264_watches_vp8_while_h264_players_share_their_own_encoder(
    running: RunningApp, http: httpx.AsyncClient
) -> None:
    manager = configure(running)
    pipeline = running.registry.get("simulator").pipeline
    vp8, h264 = Player(only="video/VP8"), Player()
    try:
        answers = []
        for player in (vp8, h264):
            response = await http.post(WHEP, content=await player.offer(), headers=SDP)
            assert response.status_code == 201, response.text
            await player.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
            answers.append(response)
        assert video_codecs(answers[0].text) == {"VP8"}
        assert video_codecs(answers[1].text) == {"H264"}  # it offered VP8 too (first)
        for player in (vp8, h264):
            stamps = await player.stamps(5)
            assert stamps == sorted(stamps) and len(set(stamps)) == 5

        # One encoder per codec for the tier, each shared by its codec's peers.
        assert set(manager.encoders("simulator", Codec.VP8)) == {"full"}
        assert set(manager.encoders("simulator", Codec.H264)) == {"full"}
        peers = (await http.get("/api/telescopes/simulator/webrtc/peers")).json()["peers"]
        by_id = {p["id"]: p for p in peers}
        ids = [r.headers["location"].rsplit("/", 1)[1] for r in answers]
        assert [by_id[i]["codec"] for i in ids] == ["vp8", "h264"]
        assert all(by_id[i]["frames_sent"] >= 5 for i in ids)

        # An offer with neither codec: a 400 that says why.
        neither = (await Player().offer()).replace("H264/", "H265/").replace("VP8/", "VP9/")
        refused = await http.post(WHEP, content=neither, headers=SDP)
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "no codec this server sends (H264, VP8); it offers VP9, H265" in detail
        assert len(manager) == 2

        for response in answers:
            assert (await http.delete(response.headers["location"])).status_code == 200
    finally:
        await vp8.pc.close()
        await h264.pc.close()
    assert pipeline.viewers == 0
    assert manager.encoders("simulator", Codec.VP8) == manager.encoders("simulator") == {}


async def test_a_vp8_player_that_changes_tier_stays_on_vp8(
    running: RunningApp, http: httpx.AsyncClient
) -> None:
    manager = configure(running, adaptive=True)
    player = Player(only="video/VP8")
    try:
        response = await http.post(WHEP, content=await player.offer(), headers=SDP)
        assert response.status_code == 201, response.text
        await player.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        await player.stamps(3)
        (session,) = manager.sessions()
        # The viewer's receiver reports a slow link: adaptation moves it down a tier.
        now = time.monotonic() + 1000  # after anything the sampler fed in
        session.adapt(Feedback(now, 1_000_000, remb_bps=3_000_000, remb_fresh=True, rtt_ms=2.0))
        # A falling REMB with a queue on the path (RTT well above its low).
        congested = Feedback(now + 1, 1_000_000, remb_bps=600_000, remb_fresh=True, rtt_ms=150.0)
        session.adapt(congested)
        assert session.target_tier.name == "reduced"
        deadline = time.monotonic() + 10
        while session.stats().tier != "reduced":
            assert time.monotonic() < deadline, "the peer never moved to the reduced tier"
            await asyncio.sleep(0.05)
        stamps = await player.stamps(5)
        # The switch may land on the source frame last sent on the old tier: shown twice.
        assert stamps == sorted(stamps) and len(set(stamps)) >= 4
        assert session.stats().codec == "vp8"
        vp8 = manager.encoders("simulator", Codec.VP8)
        assert vp8["reduced"].running and not vp8["full"].running  # left, not yet forgotten
        assert manager.encoders("simulator", Codec.H264) == {}
    finally:
        await player.pc.close()
