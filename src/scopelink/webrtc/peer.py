"""One viewer's WebRTC peer connection: offer in, answer out, RTCP feedback mapped to the encoder.

A `Peer` wraps one aiortc `RTCPeerConnection` that sends one `EncodedVideoTrack`
(sendonly, H.264 or VP8) to one viewer of one telescope. aiortc does not trickle its own candidates:
`answer()` returns the local description after host-candidate gathering has finished, so the
answer carries every server candidate. The viewer's candidates may trickle in afterwards
(`add_remote_candidates`, an `application/trickle-ice-sdpfrag` body). aiortc cannot restart
ICE; a fragment with a new ufrag raises `IceRestartUnsupported` so the client opens a new
session instead.

aiortc ignores PLI/FIR and REMB for packet tracks; `webrtc/sender.py` hooks the sender so that
this module maps the feedback itself: PLI/FIR → `track.request_keyframe()`, receiver reports and
REMB → `PeerStats` (`webrtc/stats.py`) and, when adaptation is on, once a second into the peer's
`Adaptation` (its rate estimate and tier choice, `webrtc/adapt.py`). The offer is read by
`webrtc/sdp.py`.

Imports nothing from the web layer: a telescope-side proxy can reuse it as it is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import enum
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidStateError, OperationError
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)
from aiortc.sdp import candidate_from_sdp

from scopelink.media.encoded import VIDEO_CLOCK_HZ
from scopelink.ratelimit import TokenBucket
from scopelink.webrtc import aioice_patches
from scopelink.webrtc.adapt import Adaptation, Feedback, TierChooser
from scopelink.webrtc.encoder import Codec, Tier
from scopelink.webrtc.passthrough import VideoTier
from scopelink.webrtc.sdp import OfferRejected, check_offer, ice_ufrag, parse_sdpfrag
from scopelink.webrtc.sender import (
    NACK_HISTORY_PACKETS,
    limit_retransmissions,
    observe_rtcp,
    octets_sent,
    packets_sent,
    report_rtt_ms,
    sender_ssrc,
    smoothed_rtt_ms,
)
from scopelink.webrtc.stats import PeerStats
from scopelink.webrtc.track import EncodedVideoTrack

log = logging.getLogger(__name__)

# aiortc's ICE agent follows the browser's later nomination, answers a check with a check at
# once, and resolves mDNS candidates on any event loop (webrtc/aioice_patches.py).
aioice_patches.apply()

#: How often per-peer rates are sampled and adaptation takes a step.
SAMPLE_INTERVAL_S = 1.0
#: Retransmissions may use at most this share of the peer's estimated rate, as a token bucket
#: holding `RTX_BURST_S` of it (the encoder gets `adapt.MEDIA_SHARE` of the estimate). Under a
#: rate cap, unlimited NACK retransmissions filled the link and starved new frames; beyond the
#: budget a lost packet stays lost and the receiver asks for a keyframe instead.
RTX_SHARE = 0.15
RTX_BURST_S = 0.25


class IceRestartUnsupported(RuntimeError):
    """The viewer asked for an ICE restart; aiortc cannot do one, so start a new session."""


class PeerState(enum.Enum):
    """A peer's life: new → connecting → connected → closed, or failed → closed."""

    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


#: The allowed transitions, in one place.
TRANSITIONS: dict[PeerState, frozenset[PeerState]] = {
    PeerState.NEW: frozenset({PeerState.CONNECTING, PeerState.FAILED, PeerState.CLOSED}),
    PeerState.CONNECTING: frozenset({PeerState.CONNECTED, PeerState.FAILED, PeerState.CLOSED}),
    PeerState.CONNECTED: frozenset({PeerState.FAILED, PeerState.CLOSED}),
    PeerState.FAILED: frozenset({PeerState.CLOSED}),
    PeerState.CLOSED: frozenset(),
}


def new_session_id() -> str:
    """128 random bits, URL-safe: the session URL is the capability to change or end it."""
    return secrets.token_urlsafe(16)


#: The tier and codec a data-channel-only peer reports in its stats.
NO_VIDEO = "none"
#: What takes the data channels a viewer opens: the protocol's endpoint (outside this package).
DataChannelHandler = Callable[["Peer", RTCDataChannel], None]


class Peer:
    """One RTCPeerConnection sending one tier's encoded video to one viewer, or, without an
    encoder, carrying only data channels (a client that wants control and status, no video)."""

    def __init__(
        self,
        encoder: VideoTier | None,
        *,
        telescope_id: str,
        client: str = "",
        ice_servers: list[RTCIceServer] | None = None,
        encoder_for: Callable[[Tier], VideoTier] | None = None,
        adaptation: Adaptation | None = None,
        on_feedback: Callable[[Peer], None] | None = None,
        on_close: Callable[[Peer], Awaitable[None]] | None = None,
        on_datachannel: DataChannelHandler | None = None,
    ) -> None:
        """`encoder_for` and `adaptation` together turn on adaptive bitrate and tiers;
        `on_feedback` runs after each adaptation step (the manager sets the shared encoders'
        bitrates there). `ice_servers` defaults to none at all (aiortc would otherwise use
        Google's public STUN server)."""
        self.id = new_session_id()
        #: Enough of the id to follow one peer in the logs; the whole id is a capability.
        self.log_id = self.id[:8]
        self.telescope_id = telescope_id
        self.client = client
        #: The video this peer is sent; None for a data-channel-only peer.
        self.track = EncodedVideoTrack(encoder) if encoder is not None else None
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()
        self._encoder_for = encoder_for
        self._adaptation = adaptation if encoder_for is not None else None
        self._on_feedback = on_feedback
        self._target = encoder.tier if encoder is not None else None
        self._remb_fresh = False
        #: The newest unsmoothed RTT since the last sample (ms).
        self._raw_rtt_ms: float | None = None
        #: The retransmission budget, in bytes; its rate follows the estimate (`_may_retransmit`).
        self._rtx = TokenBucket(rate=0.0, burst=0.0, tokens=0.0)
        #: Sequence numbers NACKed lately (each counts once, however often it is asked for),
        #: and how many first came since the last sample.
        self._nacked: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._nacked_new = 0
        self._on_close = on_close
        self._state = PeerState.NEW
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers or [])))
        self._sender: RTCRtpSender | None = None
        self._transceiver: Any = None
        self._remote_ufrag: str | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._closing = False
        self._stats = PeerStats(
            self.id,
            telescope_id,
            client,
            encoder.tier.name if encoder is not None else NO_VIDEO,
            codec=encoder.codec.value if encoder is not None else NO_VIDEO,
        )
        self._watch_states()
        self._pc.on("datachannel", self._datachannel)
        self._on_datachannel = on_datachannel
        #: The data channels the viewer opened, by label (the protocol's are docs/protocol.md).
        self.channels: dict[str, RTCDataChannel] = {}

    def _datachannel(self, channel: RTCDataChannel) -> None:
        if self._on_datachannel is None or channel.label in self.channels:
            log.info("peer %s: data channel %r refused", self.log_id, channel.label)
            channel.close()
            return
        self.channels[channel.label] = channel
        log.info("peer %s: data channel %r open", self.log_id, channel.label)
        self._on_datachannel(self, channel)

    # -- state ------------------------------------------------------------------------------------

    @property
    def state(self) -> PeerState:
        return self._state

    def _set_state(self, new: PeerState) -> None:
        if new is self._state:
            return
        if new not in TRANSITIONS[self._state]:
            log.debug("peer %s: ignoring %s -> %s", self.log_id, self._state.value, new.value)
            return
        log.info("peer %s: %s -> %s", self.log_id, self._state.value, new.value)
        self._state = new
        self._stats.state = new.value
        if new is PeerState.CONNECTED:
            self.connected.set()

    def _watch_states(self) -> None:
        pc = self._pc

        @pc.on("connectionstatechange")
        async def _connection() -> None:
            state = pc.connectionState
            log.info("peer %s: connection %s", self.log_id, state)
            if state == "connected":
                self._set_state(PeerState.CONNECTED)
            elif state == "failed":
                self._set_state(PeerState.FAILED)
                await self.close()
            elif state == "closed":
                await self.close()

        @pc.on("iceconnectionstatechange")
        def _ice() -> None:
            log.info("peer %s: ICE %s", self.log_id, pc.iceConnectionState)

        @pc.on("icegatheringstatechange")
        def _gathering() -> None:
            log.debug("peer %s: ICE gathering %s", self.log_id, pc.iceGatheringState)

    # -- signaling --------------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Apply a viewer's offer; the answer SDP, with every host candidate gathered."""
        if self.track is None:
            return await self._answer_channels_only(offer_sdp)
        codec = self.track.encoder.codec
        check_offer(offer_sdp, (codec,))
        self._set_state(PeerState.CONNECTING)
        self._remote_ufrag = ice_ufrag(offer_sdp)
        transceiver = self._pc.addTransceiver(self.track, direction="sendonly")
        # Before setRemoteDescription: aiortc applies preferences while it reads the offer.
        transceiver.setCodecPreferences(
            [
                c
                for c in RTCRtpSender.getCapabilities("video").codecs
                if c.mimeType.lower() in (codec.mime_type.lower(), "video/rtx")
            ]
        )
        await self._apply(offer_sdp, transceiver)
        self._transceiver = transceiver
        self._sender = transceiver.sender
        observe_rtcp(transceiver.sender, self._on_rtcp)
        limit_retransmissions(transceiver.sender, self._may_retransmit)
        transceiver.sender.transport.on(
            "statechange",
            lambda: log.info("peer %s: DTLS %s", self.log_id, transceiver.sender.transport.state),
        )
        self._sampler = asyncio.create_task(self._sample(), name=f"peer-{self.id[:6]}")
        log.info(
            "peer %s: answered for telescope %s (%s)", self.log_id, self.telescope_id, self.client
        )
        return self._pc.localDescription.sdp

    async def _answer_channels_only(self, offer_sdp: str) -> str:
        if check_offer(offer_sdp, accept_channels_only=True) is not None:
            raise OfferRejected("this peer carries no video; offer data channels only")
        self._set_state(PeerState.CONNECTING)
        self._remote_ufrag = ice_ufrag(offer_sdp)
        await self._apply(offer_sdp)
        log.info(
            "peer %s: answered for telescope %s (%s), data channels only",
            self.log_id,
            self.telescope_id,
            self.client,
        )
        return self._pc.localDescription.sdp

    async def _apply(self, offer_sdp: str, video: Any = None) -> None:
        """The offer in, our answer as the local description; a failure closes the session and
        is an `OfferRejected` (also when the offer's video did not match the `video`
        transceiver)."""
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            if video is not None and video.mid is None:
                raise OfferRejected("the offer's video m-line could not be matched")
            await self._pc.setLocalDescription(await self._pc.createAnswer())
        except (ValueError, OperationError, InvalidStateError) as exc:
            await self.close()
            if isinstance(exc, OfferRejected):
                raise
            raise OfferRejected(f"the offer could not be applied: {exc}") from exc

    @property
    def codec(self) -> Codec | None:
        """The codec this peer is sent (a tier switch keeps it); None without video."""
        return self.track.encoder.codec if self.track is not None else None

    @property
    def local_ufrag(self) -> str | None:
        """The server's ICE ufrag (the WHEP ETag names the ICE session by it)."""
        description = self._pc.localDescription
        return ice_ufrag(description.sdp) if description is not None else None

    async def add_remote_candidates(self, sdpfrag: str) -> int:
        """Add the viewer's trickled candidates; returns how many were added."""
        if self._pc.remoteDescription is None or self._closing:
            raise InvalidStateError("the session has no remote description or is closed")
        fragment = parse_sdpfrag(sdpfrag)
        if fragment.ufrag is not None and fragment.ufrag != self._remote_ufrag:
            raise IceRestartUnsupported(
                "ICE restart is not supported by this server; start a new session"
            )
        # Bundled: every m-line shares the first transport: our video receiver's, or (data
        # channels only) the SCTP association's.
        if self._transceiver is not None:
            ice = self._transceiver.receiver.transport.transport
            mid = self._transceiver.mid
        elif self._pc.sctp is not None:
            ice = self._pc.sctp.transport.transport
            mid = None
        else:
            raise InvalidStateError("the session has no transport to add candidates to")
        added = 0
        for value in fragment.candidates:
            try:
                candidate = candidate_from_sdp(value.split(":", 1)[1])
            except (ValueError, IndexError) as exc:
                raise OfferRejected(f"unreadable candidate {value!r}") from exc
            candidate.sdpMid = mid
            await ice.addRemoteCandidate(candidate)
            added += 1
        if fragment.end_of_candidates:
            await ice.addRemoteCandidate(None)
        return added

    # -- feedback ---------------------------------------------------------------------------------

    def _on_rtcp(self, packet: object, sender: RTCRtpSender) -> None:
        ssrc = sender_ssrc(sender)
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for report in packet.reports:
                if report.ssrc == ssrc:
                    self._stats.fraction_lost = report.fraction_lost / 256
                    self._stats.jitter_ms = report.jitter / (VIDEO_CLOCK_HZ / 1000)
                    self._stats.rtt_ms = smoothed_rtt_ms(sender)
                    # aiortc smooths RTT heavily; adaptation wants each report's.
                    raw = report_rtt_ms(sender, report.lsr, report.dlsr)
                    if raw is not None:
                        self._raw_rtt_ms = raw
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self._stats.keyframe_requests += 1
            if self.track is not None:
                self.track.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                if ssrc in ssrcs:
                    self._stats.remb_bps = bitrate
                    self._remb_fresh = True

    async def _sample(self) -> None:
        """Once a second: rates for the stats, and one adaptation step."""
        last_frames, last_bytes, last_rtx, last_t = 0, 0, 0, time.monotonic()
        last_packets = 0
        track = self.track
        assert track is not None  # sampled only with video
        while True:
            await asyncio.sleep(SAMPLE_INTERVAL_S)
            now = time.monotonic()
            sent = track.stats
            elapsed = max(now - last_t, 1e-6)
            self._stats.fps = (sent.frames_sent - last_frames) / elapsed
            self._stats.bitrate_bps = round((sent.bytes_sent - last_bytes) * 8 / elapsed)
            rtx = self._stats.retransmitted_bytes
            rtx_bps = round((rtx - last_rtx) * 8 / elapsed)
            last_frames, last_bytes, last_rtx, last_t = (
                sent.frames_sent,
                sent.bytes_sent,
                rtx,
                now,
            )
            packets = self._packets_sent()
            sent_packets, last_packets = packets - last_packets, packets
            nacked, self._nacked_new = self._nacked_new, 0
            self._stats.nack_loss = min(nacked / sent_packets, 1.0) if sent_packets else None
            feedback = Feedback(
                now=now,
                # What the link carried for this peer: media and retransmissions alike.
                sent_bps=self._stats.bitrate_bps + rtx_bps,
                remb_bps=self._stats.remb_bps,
                remb_fresh=self._remb_fresh,
                fraction_lost=self._stats.fraction_lost,
                nack_loss=self._stats.nack_loss,
                rtt_ms=self._raw_rtt_ms,
                jitter_ms=self._stats.jitter_ms,
            )
            self._remb_fresh = False
            self._raw_rtt_ms = None
            if sent.frames_sent:
                self.adapt(feedback)

    def _packets_sent(self) -> int:
        return packets_sent(self._sender) if self._sender is not None else 0

    def _may_retransmit(self, sequence_number: int, size: int | None) -> bool:
        """Whether the NACKed packet `sequence_number` of `size` bytes (None: no longer kept)
        may be resent now."""
        if sequence_number not in self._nacked:
            self._nacked[sequence_number] = None
            self._nacked_new += 1
            if len(self._nacked) > NACK_HISTORY_PACKETS:
                self._nacked.popitem(last=False)
        if size is None:
            self._stats.retransmissions_refused += 1
            return False
        bitrate = self.track.encoder.bitrate if self.track is not None else 0
        self._rtx.rate = RTX_SHARE * (self.estimate_bps or bitrate) / 8
        self._rtx.burst = self._rtx.rate * RTX_BURST_S
        if not self._rtx.take(size):
            self._stats.retransmissions_refused += 1
            return False
        self._stats.retransmitted_packets += 1
        self._stats.retransmitted_bytes += size
        return True

    def adapt(self, feedback: Feedback) -> None:
        """One adaptation step: update the estimate, maybe change tier, tell the manager."""
        adaptation, encoder_for = self._adaptation, self._encoder_for
        if adaptation is None or encoder_for is None or self.track is None:
            return
        assert self._target is not None
        estimate = adaptation.rate.update(feedback)
        self._stats.estimate_bps = estimate
        self._stats.estimate_reason = adaptation.rate.reason
        target = adaptation.chooser.choose(self._target, adaptation.rate.probe, feedback.now)
        if target is not self._target:
            log.info(
                "peer %s: tier %s -> %s (estimate %d kbit/s, %s; probing at %d kbit/s)",
                self.log_id,
                self._target.name,
                target.name,
                estimate // 1000,
                adaptation.rate.reason,
                adaptation.rate.probe // 1000,
            )
            self._target = target
            self.track.switch_to(encoder_for(target))
        if self._on_feedback is not None:
            self._on_feedback(self)

    def retarget(self, tiers: Sequence[Tier], encoder_for: Callable[[Tier], VideoTier]) -> None:
        """The telescope's source changed (its own stream came or went): adapt across `tiers`
        from now on and move to the one standing where this peer's tier stood (the top stays the
        top), at its next keyframe. A peer without video has nothing to move."""
        if self.track is None or self._target is None:
            return
        old = self._adaptation.chooser.tiers if self._adaptation is not None else (self._target,)
        names = [t.name for t in tiers]
        if self._target.name == old[-1].name:
            target = tiers[-1]  # the top stays the top: the telescope's stream came or went
        elif self._target.name in names:
            target = tiers[names.index(self._target.name)]
        else:
            target = tiers[0]
        self._encoder_for = encoder_for
        if self._adaptation is not None:
            self._adaptation.chooser = TierChooser(tiers)
            self._adaptation.rate.min_bps = min(t.min_bitrate for t in tiers)
            self._adaptation.rate.max_bps = max(t.max_bitrate for t in tiers)
        log.info(
            "peer %s: source changed; tier %s -> %s", self.log_id, self._target.name, target.name
        )
        self._target = target
        self.track.switch_to(encoder_for(target))

    @property
    def start_bps(self) -> int | None:
        """The estimate this peer started from (None: not adaptive)."""
        return None if self._adaptation is None else self._adaptation.rate.start_bps

    @property
    def estimate_bps(self) -> int | None:
        """The adaptive estimate of this peer's available bitrate (None: not adaptive)."""
        return None if self._adaptation is None else round(self._adaptation.rate.estimate)

    @property
    def limited(self) -> bool:
        """Whether this peer's link has shown its limit (a congestion signal in the session, or
        in its client's last one)."""
        return self._adaptation is not None and self._adaptation.rate.limited

    @property
    def target_tier(self) -> Tier | None:
        """The tier this peer should watch (the track moves there at the next keyframe)."""
        return self._target

    def stats(self) -> PeerStats:
        """A snapshot of this peer's stats."""
        s = self._stats
        s.limited = self.limited
        if self.track is None:
            return dataclasses.replace(s)
        sent = self.track.stats
        s.tier = self.track.encoder.tier.name
        s.tier_bitrate_bps = self.track.encoder.bitrate
        s.tier_vbv_ms = round(self.track.encoder.vbv_buffer_s * 1000)
        s.frames_sent, s.keyframes_sent = sent.frames_sent, sent.keyframes_sent
        s.frames_skipped, s.tier_switches = sent.frames_skipped, sent.tier_switches
        s.late_switches = sent.late_switches
        if self._sender is not None:
            s.bytes_sent = octets_sent(self._sender)
            s.packets_sent = self._packets_sent()
        return dataclasses.replace(s)

    # -- end --------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop sending and close the connection; safe to call any number of times."""
        if self._closing:
            await self.closed.wait()
            return
        self._closing = True
        if self._sampler is not None:
            self._sampler.cancel()
        if self.track is not None:
            self.track.stop()
        try:
            await self._pc.close()
        finally:
            self._set_state(PeerState.CLOSED)
            log.info("peer %s: closed", self.log_id)
            self.closed.set()
            if self._on_close is not None:
                await self._on_close(self)
