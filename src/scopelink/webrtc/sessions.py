"""The peers of every telescope: limits, timeouts, clean-up, and the tier encoders they share.

`PeerManager` creates `Peer`s from offers, refuses more than `max_peers` at once
(`TooManyPeers`), closes peers that have not connected within `connect_timeout_s`, and forgets
peers when they close or fail. It owns the `TierEncoder`s: one per (telescope, tier, codec), created
on first use and closed once no peer watches that tier. Each peer holds its telescope's `viewer()`
context while it lives, so the telescope's stream starts with the first viewer of any transport
(MJPEG or WebRTC) and stops after the last.

A peer's codec comes from its offer (`check_offer`: H.264 whenever it is accepted, else VP8) and
stays when the peer changes tier, so H.264 and VP8 peers each share one encoder per tier.

When the telescope sends its own H.264 that a browser can take (`FrameSource.passthrough`), the
top of an H.264 peer's tier ladder is that stream itself (`PassthroughTier`, never encoded here);
below it the encoded tiers, made from decoded frames, serve a viewer whose link cannot carry the
telescope's bitrate. `source_changed()` moves every peer of a
telescope onto its new ladder when the source changes (a view mode switch), at a keyframe.

The telescope is seen through `FrameSource` (its frame slot, its passthrough feed and its demand),
so this module imports no service and no web code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from aiortc import RTCIceServer

from scopelink.media.display import DisplayFrame
from scopelink.media.encoded import EncodedFanout
from scopelink.media.latest import LatestValue
from scopelink.webrtc.adapt import Adaptation, tier_bitrate
from scopelink.webrtc.encoder import FULL, TIERS, Codec, Tier, TierEncoder
from scopelink.webrtc.ice import IceSettings
from scopelink.webrtc.passthrough import SOURCE_TIER, PassthroughTier, VideoTier, source_tier
from scopelink.webrtc.peer import DataChannelHandler, Peer
from scopelink.webrtc.sdp import check_offer
from scopelink.webrtc.stats import PeerStats

log = logging.getLogger(__name__)

#: A client's last estimate is where its next session starts, if it comes back within this long
#: (a page reconnecting over a slow link should not start at the full tier's 4 Mbit/s again).
REMEMBER_ESTIMATE_S = 120.0
#: Clients remembered at most (the oldest are forgotten first).
REMEMBER_MAX = 256
#: Estimate reasons that mean the session was congested when it was last adapted.
CONGESTED = frozenset({"remb", "delay", "loss", "hold"})


@dataclass(slots=True)
class WebRtcSettings:
    """WebRTC's ports of call and limits, in one object (the app keeps it on its state)."""

    ice: IceSettings = field(default_factory=IceSettings)
    #: Concurrent peers sent video over all telescopes; the next offer is refused with the reason.
    max_peers: int = 16
    #: Concurrent peers with data channels only (far cheaper: no stream, no encoder).
    max_channel_peers: int = 256
    #: A peer not connected this long after its answer is closed.
    connect_timeout_s: float = 15.0
    #: Set each tier's bitrate and move peers between tiers by their receivers' feedback
    #: (webrtc/adapt.py); off, every tier keeps its starting bitrate and peers their tier.
    adaptive: bool = True
    #: Pass the telescope's own H.264 through where a browser can take it (else re-encode it).
    passthrough: bool = True


class PassthroughFeed(Protocol):
    """The telescope's own encoded stream, when a browser can take it unchanged."""

    @property
    def units(self) -> EncodedFanout:
        """Its access units as they arrive, every one (gaps only before a keyframe), in one
        fan-out for as long as the telescope lives."""
        ...

    @property
    def width(self) -> int: ...

    @property
    def bitrate(self) -> int | None:
        """Measured bits per second (None until measured)."""
        ...

    def packets(self) -> AbstractAsyncContextManager[None]:
        """Held while someone reads `units`: the stream runs while any holder does."""
        ...


class FrameSource(Protocol):
    """A telescope as the peers need it (`FramePipeline` is one)."""

    @property
    def frames(self) -> LatestValue[DisplayFrame]:
        """The newest display frame (the slot may be renewed when the source restarts)."""
        ...

    @property
    def passthrough(self) -> PassthroughFeed | None:
        """The telescope's own stream if a browser can take it unchanged; None otherwise."""
        ...

    def viewer(self, *, pixels: bool = True) -> AbstractAsyncContextManager[None]:
        """Held while someone watches: the first starts the stream, the last stops it.
        `pixels=False`: the watcher needs no decoded frames of its own."""
        ...

    def pixels(self) -> AbstractAsyncContextManager[None]:
        """Held while someone needs `frames` (an encoder): decoded pixels are made meanwhile."""
        ...


class TooManyPeers(RuntimeError):
    """The configured limit of concurrent peers is reached."""

    def __init__(self, limit: int, *, video: bool = True) -> None:
        what = "sends video to" if video else "carries data channels for"
        super().__init__(f"the server already {what} its limit of {limit} concurrent WebRTC peers")
        self.limit = limit


class UnknownPeer(KeyError):
    """No live peer session has this id."""

    def __str__(self) -> str:
        return f"no peer session {self.args[0]!r}"


class PeerManager:
    """Creates, limits, times out and cleans up peer sessions; owns the shared tier encoders."""

    def __init__(
        self,
        max_peers: int,
        connect_timeout_s: float = 15.0,
        *,
        max_channel_peers: int = 256,
        adaptive: bool = True,
        passthrough: bool = True,
        tiers: tuple[Tier, ...] = TIERS,
    ) -> None:
        """`adaptive`: tier bitrates and each peer's tier follow feedback (webrtc/adapt.py);
        `tiers`, lowest first, are what adaptation chooses from. `max_peers` limits the peers
        sent video, `max_channel_peers` those with data channels only (far cheaper)."""
        self.max_peers = max_peers
        self.max_channel_peers = max_channel_peers
        self.connect_timeout_s = connect_timeout_s
        self.adaptive = adaptive
        self.passthrough = passthrough
        self.tiers = tiers
        self._sessions: dict[str, Peer] = {}
        self._viewing: dict[str, AbstractAsyncContextManager[None]] = {}
        self._watchdogs: dict[str, asyncio.Task[None]] = {}
        self._encoders: dict[tuple[str, str, Codec], VideoTier] = {}
        #: client → (monotonic time, last estimate) of sessions that ended.
        #: Per client: when its last session ended, its estimate, and whether its link had shown
        #: its limit (`RateController.limited`).
        self._last_estimates: dict[str, tuple[float, int, bool]] = {}
        #: Peers being set up count against the limit too.
        self._pending = 0
        self._pending_channels = 0

    @classmethod
    def from_settings(cls, settings: WebRtcSettings) -> PeerManager:
        return cls(
            settings.max_peers,
            settings.connect_timeout_s,
            max_channel_peers=settings.max_channel_peers,
            adaptive=settings.adaptive,
            passthrough=settings.passthrough,
        )

    def __len__(self) -> int:
        return len(self._sessions)

    # -- sessions ---------------------------------------------------------------------------------

    async def create(
        self,
        telescope_id: str,
        source: FrameSource,
        offer_sdp: str,
        *,
        client: str = "",
        tier: Tier = FULL,
        ice_servers: list[RTCIceServer] | None = None,
        on_datachannel: DataChannelHandler | None = None,
    ) -> tuple[Peer, str]:
        """A new peer for `telescope_id` answering `offer_sdp`: the session and its answer SDP.
        `on_datachannel` gets each data channel the viewer opens (none taken without it).

        Raises `TooManyPeers` at the limit and `OfferRejected` for an offer it cannot answer.
        """
        codec = check_offer(offer_sdp, accept_channels_only=on_datachannel is not None)
        if codec is None:
            return await self._create_channels_only(
                telescope_id, offer_sdp, client, ice_servers, on_datachannel
            )
        if self._video_count() + self._pending >= self.max_peers:
            raise TooManyPeers(self.max_peers)
        self._pending += 1
        # Pixels are the encoders' business (they hold `pixels()` while they run): a viewer of
        # the telescope's own stream costs no decoding.
        viewing = source.viewer(pixels=False)
        adaptation, tier = self._adaptation(self.ladder(source, codec), tier, client)
        try:
            await viewing.__aenter__()
            session = Peer(
                self._encoder(telescope_id, source, tier, codec),
                telescope_id=telescope_id,
                client=client,
                ice_servers=ice_servers,
                encoder_for=lambda t: self._encoder(telescope_id, source, t, codec),
                adaptation=adaptation,
                on_feedback=self._rebalance,
                on_close=self._forget,
                on_datachannel=on_datachannel,
            )
            self._sessions[session.id] = session
            self._viewing[session.id] = viewing
        except BaseException:
            self._pending -= 1
            await viewing.__aexit__(None, None, None)
            self._prune(telescope_id)
            raise
        self._pending -= 1
        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            # Closing runs `_forget`, which releases the viewer and the encoders.
            await session.close()
            raise
        self._watchdogs[session.id] = asyncio.create_task(
            self._expire_unless_connected(session), name=f"peer-timeout-{session.id[:6]}"
        )
        return session, answer

    async def _create_channels_only(
        self,
        telescope_id: str,
        offer_sdp: str,
        client: str,
        ice_servers: list[RTCIceServer] | None,
        on_datachannel: DataChannelHandler | None,
    ) -> tuple[Peer, str]:
        """A peer with data channels and no video: no stream, no encoder, its own limit."""
        channels_only = len(self._sessions) - self._video_count()
        if channels_only + self._pending_channels >= self.max_channel_peers:
            raise TooManyPeers(self.max_channel_peers, video=False)
        session = Peer(
            None,
            telescope_id=telescope_id,
            client=client,
            ice_servers=ice_servers,
            on_close=self._forget,
            on_datachannel=on_datachannel,
        )
        self._sessions[session.id] = session
        self._pending_channels += 1
        try:
            answer = await session.answer(offer_sdp)
        except BaseException:
            await session.close()
            raise
        finally:
            self._pending_channels -= 1
        self._watchdogs[session.id] = asyncio.create_task(
            self._expire_unless_connected(session), name=f"peer-timeout-{session.id[:6]}"
        )
        return session, answer

    def _watching(self, telescope_id: str) -> list[Peer]:
        """The telescope's peers that are sent video."""
        return [s for s in self.sessions(telescope_id) if s.track is not None]

    def _video_count(self) -> int:
        return sum(1 for s in self._sessions.values() if s.track is not None)

    def get(self, session_id: str) -> Peer:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownPeer(session_id) from None

    def sessions(self, telescope_id: str | None = None) -> list[Peer]:
        return [
            s
            for s in self._sessions.values()
            if telescope_id is None or s.telescope_id == telescope_id
        ]

    def stats(self, telescope_id: str | None = None) -> list[PeerStats]:
        """Per-peer stats, of one telescope or of all."""
        return [s.stats() for s in self.sessions(telescope_id)]

    def encoders(self, telescope_id: str, codec: Codec = Codec.H264) -> dict[str, VideoTier]:
        """The tiers in `codec` that exist for a telescope now, by tier name (`source`: the
        telescope's own stream, passed through)."""
        return {
            tier: e
            for (tid, tier, c), e in self._encoders.items()
            if tid == telescope_id and c is codec
        }

    async def close(self, session_id: str) -> None:
        await self.get(session_id).close()

    async def close_all(self) -> None:
        """Close every peer and encoder (server shutdown)."""
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())))
        for encoder in list(self._encoders.values()):
            await encoder.close()
        self._encoders.clear()

    # -- internals --------------------------------------------------------------------------------

    def ladder(self, source: FrameSource, codec: Codec) -> tuple[Tier, ...]:
        """The tiers an H.264 or VP8 peer of `source` chooses from, lowest first: the encoded
        tiers, topped by the telescope's own stream where it can pass. The encoded tiers stay
        below it: a viewer whose link cannot carry the telescope's bitrate watches them, and
        the full tier's adaptive bitrate probes the link on the way back up."""
        feed = source.passthrough
        if feed is None or codec is not Codec.H264 or not self.passthrough:
            return self.tiers
        return (*self.tiers, source_tier(feed.width, feed.bitrate))

    def source_changed(self, telescope_id: str, source: FrameSource) -> None:
        """The telescope's source changed (a view mode switch, its own stream came or went):
        every peer of it moves onto its new ladder, each at its next keyframe."""
        for session in self._watching(telescope_id):
            if session.closed.is_set():
                continue
            codec = session.codec
            session.retarget(
                self.ladder(source, codec),
                lambda t, c=codec: self._encoder(telescope_id, source, t, c),  # type: ignore[misc]
            )
        self._prune(telescope_id)

    def _encoder(
        self, telescope_id: str, source: FrameSource, tier: Tier, codec: Codec
    ) -> VideoTier:
        key = (telescope_id, tier.name, codec)
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.tier != tier and encoder.holders == 0:
            # The telescope's stream restarted with other facts: a new tier for it.
            del self._encoders[key]
            asyncio.get_running_loop().create_task(encoder.close())
            encoder = None
        if encoder is None:
            feed = source.passthrough if tier.name == SOURCE_TIER else None
            if feed is not None:
                encoder = PassthroughTier(tier, feed.units, feed.packets)
            else:
                # A callable: the encoder follows the pipeline's renewed slot after a restart.
                encoder = TierEncoder(tier, lambda: source.frames, codec, demand=source.pixels)
            self._encoders[key] = encoder
            log.info("telescope %s: tier %s (%s) created", telescope_id, tier.name, codec)
        return encoder

    def _adaptation(
        self, ladder: tuple[Tier, ...], requested: Tier, client: str
    ) -> tuple[Adaptation | None, Tier]:
        """A new peer's adaptation and starting tier: the requested tier at its starting
        bitrate, or, for a client whose last session ended recently, that session's estimate
        (and the highest tier up to the requested one whose floor it meets).

        The top of the encoded tiers stands for the top of `ladder` (the telescope's own stream
        where it passes)."""
        names = [t.name for t in self.tiers]
        if requested.name == names[-1]:
            requested = ladder[-1]
        names = [t.name for t in ladder]
        if not self.adaptive or requested.name not in names:
            return None, requested
        # The tier asked for is the ceiling: a viewer that chose the reduced tier (a phone, a
        # metered link) is never moved above it; its bitrate still follows its link.
        allowed = ladder[: names.index(requested.name) + 1]
        now = time.monotonic()
        for key, (when, *_) in list(self._last_estimates.items()):
            if now - when > REMEMBER_ESTIMATE_S:
                del self._last_estimates[key]
        remembered = self._last_estimates.get(client) if client else None
        if remembered is None:
            return Adaptation.over(allowed, requested), requested
        _, estimate, limited = remembered
        start = next((t for t in reversed(allowed) if t.min_bitrate <= estimate), ladder[0])
        log.info(
            "client %s: starting at %s, %d kbit/s (its last session's estimate)",
            client,
            start.name,
            estimate // 1000,
        )
        return Adaptation.over(allowed, start, min(estimate, start.max_bitrate), limited), start

    def _rebalance(self, peer: Peer) -> None:
        """Set each of the peer's telescope's encoders to the lowest estimate among its peers,
        with frames bounded to one frame interval if any of them is behind a link that has shown
        its limit (`TierEncoder.set_tight`).

        A peer counts for the tier it watches or is moving to, so a peer on its way down does
        not hold the tier it leaves back."""
        estimates: dict[int, tuple[VideoTier, list[int], list[bool]]] = {}
        for session in self._watching(peer.telescope_id):
            estimate = session.estimate_bps
            if estimate is None or session.closed.is_set() or session.track is None:
                continue
            encoder = session.track.next_encoder
            entry = estimates.setdefault(id(encoder), (encoder, [], []))
            entry[1].append(estimate)
            entry[2].append(session.limited)
        for encoder, values, limited in estimates.values():
            bitrate = tier_bitrate(encoder.tier, values)
            if encoder.worth_changing_to(bitrate):
                log.debug("tier %s: %d kbit/s", encoder.tier.name, bitrate // 1000)
                encoder.set_bitrate(bitrate)
            if any(limited) != encoder.tight:
                log.info(
                    "tier %s: frames bounded to %s",
                    encoder.tier.name,
                    "one frame interval (a viewer's link is the limit)"
                    if any(limited)
                    else "the usual VBV",
                )
                encoder.set_tight(any(limited))

    def _prune(self, telescope_id: str) -> None:
        """Close the telescope's tier encoders that no live peer watches or moves to."""
        wanted = {
            (s.target_tier.name, s.codec)
            for s in self._watching(telescope_id)
            if not s.closed.is_set() and s.target_tier is not None
        } | {
            (s.track.encoder.tier.name, s.codec)
            for s in self._watching(telescope_id)
            if s.track is not None
        }
        for key, encoder in list(self._encoders.items()):
            tid, name, codec = key
            if tid == telescope_id and (name, codec) not in wanted and encoder.holders == 0:
                del self._encoders[key]
                asyncio.get_running_loop().create_task(encoder.close())
                log.info("telescope %s: tier %s (%s) closed (no viewer)", telescope_id, name, codec)

    async def _expire_unless_connected(self, session: Peer) -> None:
        connected = asyncio.ensure_future(session.connected.wait())
        closed = asyncio.ensure_future(session.closed.wait())
        try:
            await asyncio.wait(
                {connected, closed},
                timeout=self.connect_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            connected.cancel()
            closed.cancel()
        if not session.connected.is_set() and not session.closed.is_set():
            log.warning(
                "peer %s: not connected within %.1f s; closing",
                session.log_id,
                self.connect_timeout_s,
            )
            await session.close()

    async def _forget(self, session: Peer) -> None:
        """A session closed (by the viewer, a failure, the timeout or shutdown)."""
        self._sessions.pop(session.id, None)
        estimate = session.estimate_bps
        stats = session.stats()
        if estimate is not None and stats.remb_bps and stats.estimate_reason in CONGESTED:
            # Ended while congested (often: the page gave up on a frozen picture): the receiver's
            # last word is the better start.
            estimate = min(estimate, stats.remb_bps)
        elif estimate is not None and stats.remb_bps is None and session.start_bps:
            # Sent video but never heard an estimate back: the receiver got too little to make
            # one (a link far slower than the start). Half the start, so each retry of a page
            # behind such a link starts lower, down to the lowest tier.
            estimate = min(estimate, session.start_bps // 2)
        if estimate is not None and session.client and stats.frames_sent:
            self._last_estimates.pop(session.client, None)
            self._last_estimates[session.client] = (time.monotonic(), estimate, session.limited)
            while len(self._last_estimates) > REMEMBER_MAX:
                del self._last_estimates[next(iter(self._last_estimates))]
        watchdog = self._watchdogs.pop(session.id, None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        viewing = self._viewing.pop(session.id, None)
        if viewing is not None:
            with contextlib.suppress(Exception):
                await viewing.__aexit__(None, None, None)
        self._prune(session.telescope_id)
