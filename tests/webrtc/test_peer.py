"""A Peer against a real aiortc viewer: answer with candidates, video, RTCP feedback."""

from __future__ import annotations

import asyncio

import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RTCP_PSFB_APP, RTCP_PSFB_PLI, RtcpPsfbPacket, pack_remb_fci

from scopelink import framestamp
from scopelink.webrtc.encoder import REDUCED, Codec, TierEncoder
from scopelink.webrtc.peer import IceRestartUnsupported, Peer, PeerState
from scopelink.webrtc.sdp import OfferRejected, check_offer, parse_sdpfrag
from scopelink.webrtc.sender import AIORTC_MODULE_PRIVATES, AIORTC_SENDER_PRIVATES
from tests.webrtc.conftest import Source, viewer_offer, wait_until


async def test_viewer_gets_an_answer_with_candidates_and_decodes_advancing_frames(
    source: Source,
) -> None:
    encoder = TierEncoder(REDUCED, source.frames)
    session = Peer(encoder, telescope_id="t", client="c")
    client, offer = await viewer_offer()
    got: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    client.on("track", got.set_result)
    player = asyncio.create_task(source.play(300, fps=20))
    try:
        answer = await session.answer(offer)
        assert "a=candidate:" in answer  # aiortc does not trickle: the answer carries them
        assert "H264" in answer and "VP8" not in answer and "a=sendonly" in answer
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        remote = await asyncio.wait_for(got, 5)
        stamps: list[int] = []
        while len(stamps) < 5:
            frame = await asyncio.wait_for(remote.recv(), 5)
            stamp = framestamp.read(frame.to_ndarray(format="rgb24"))
            if stamp is not None:
                stamps.append(stamp.frame)
        assert stamps == sorted(stamps) and len(set(stamps)) == 5
        assert session.state is PeerState.CONNECTED

        # PLI from the viewer → a keyframe request to the tier; REMB → the stats.
        sender = session._sender
        assert sender is not None
        requested = encoder.stats.keyframes_requested
        await sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc)
        )
        remb = pack_remb_fci(750_000, [sender._ssrc])
        await sender._handle_rtcp_packet(
            RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=remb)
        )
        stats = session.stats()
        assert stats.keyframe_requests == 1 and encoder.stats.keyframes_requested > requested
        assert stats.remb_bps is not None and abs(stats.remb_bps - 750_000) < 1000
        await wait_until(lambda: session.stats().fps > 0, timeout=3)
        stats = session.stats()
        assert stats.frames_sent >= 5 and stats.bytes_sent > 0 and stats.packets_sent > 0
        assert stats.tier == "reduced" and stats.state == "connected"
    finally:
        player.cancel()
        await client.close()
        await session.close()
        await session.close()  # idempotent
    assert session.state is PeerState.CLOSED and session.closed.is_set()
    assert not encoder.running


async def test_trickled_candidates_are_added_and_an_ice_restart_is_refused(
    source: Source,
) -> None:
    session = Peer(TierEncoder(REDUCED, source.frames), telescope_id="t")
    client, offer = await viewer_offer()
    try:
        await session.answer(offer)
        ufrag = parse_sdpfrag(offer).ufrag
        fragment = (
            f"a=ice-ufrag:{ufrag}\r\na=ice-pwd:x\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n"
            "a=candidate:1 1 udp 2130706431 192.0.2.7 50000 typ host\r\na=end-of-candidates\r\n"
        )
        assert await session.add_remote_candidates(fragment) == 1
        restart = fragment.replace(f"a=ice-ufrag:{ufrag}", "a=ice-ufrag:newfrag")
        with pytest.raises(IceRestartUnsupported, match="new session"):
            await session.add_remote_candidates(restart)
    finally:
        await client.close()
        await session.close()


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda sdp: sdp.replace("a=recvonly", "a=sendonly"), "does not receive"),
        (
            lambda sdp: sdp.replace("H264/90000", "H265/90000").replace("VP8/90000", "VP9/90000"),
            r"no codec this server sends \(H264, VP8\); it offers VP9, H265",
        ),
        (lambda sdp: sdp.replace("m=video", "m=audio"), "no video"),
        (lambda sdp: "hello", "not an SDP"),
    ],
)
async def test_offers_without_receivable_h264_or_vp8_video_are_rejected(edit, reason) -> None:  # type: ignore[no-untyped-def]
    client, offer = await viewer_offer()
    await client.close()
    with pytest.raises(OfferRejected, match=reason):
        check_offer(edit(offer))


async def test_h264_is_chosen_whenever_offered_and_vp8_only_without_it() -> None:
    client, offer = await viewer_offer()
    await client.close()
    assert check_offer(offer) is Codec.H264  # aiortc offers VP8 first, H.264 still wins
    assert check_offer(offer.replace("H264/90000", "H265/90000")) is Codec.VP8
    with pytest.raises(OfferRejected, match=r"no codec this server sends \(H264\)"):
        check_offer(offer.replace("H264/90000", "H265/90000"), (Codec.H264,))


async def test_every_aiortc_internal_we_rely_on_is_still_there() -> None:
    # peer.py reads several of them with getattr defaults: without this, an aiortc upgrade that
    # renamed one would silently zero the RTT, the byte counts or the retransmission budget.
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        missing = [name for name in AIORTC_SENDER_PRIVATES if not hasattr(sender, name)]
        missing += [name for module, name in AIORTC_MODULE_PRIVATES if not hasattr(module, name)]
        assert not missing, f"aiortc {aiortc.__version__} lacks {missing}: see peer.py"
        assert callable(sender._handle_rtcp_packet) and callable(sender._retransmit)
    finally:
        await pc.close()
