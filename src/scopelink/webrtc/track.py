"""The video track aiortc sends: encoded packets read from a tier's fan-out by cursor.

`recv()` returns `av.Packet`s, so `RTCRtpSender` only packetises them (`H264Encoder.pack`);
nothing is encoded per peer. Each track keeps the sequence number of the last frame it sent and
nothing else: if the fan-out moved on by more than one frame since, the frames in between are
gone, and the next P-frame would not decode. The track then waits for a keyframe (asking the
encoder for one) and resumes there, so a slow peer skips ahead and never builds up delay.

aiortc drops PLI/FIR for packet tracks (`_send_keyframe` only flags its own encode path), so a
decoder that lost packets recovers at the next periodic or requested keyframe; the peer layer
can call `request_keyframe()` on RTCP feedback.

A tier that cannot make a keyframe on request (the telescope's own stream, `PassthroughTier`)
would leave a joining viewer black for up to a GOP. There the track starts with the tier's last
keyframe, stamped as its newest frame so the picture's clock is current, and then waits, gated,
for the next keyframe: the frames after the cached one would not decode against it.

A tier switch lands on the new tier's first keyframe at most a frame old. A new tier that runs
behind the current one (encoded from the frames the telescope's stream passes through at once)
has keyframes older than the picture already shown; switching there would show the past. The
track then holds the current tier's picture (sends nothing) and asks for a keyframe until the new
tier catches up, a frame or two; after `SWITCH_HOLD_S` it switches anyway, so a tier that stays
far behind cannot keep a viewer on a stream its link cannot carry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from scopelink.media.encoded import EncodedFrame
from scopelink.media.latest import Published, SlotClosedError
from scopelink.webrtc.passthrough import VideoTier

log = logging.getLogger(__name__)

#: A track may send a frame this many behind the newest: a source that publishes two frames in
#: one go (a network burst from the telescope) must not cost a keyframe wait. Further behind,
#: the track skips to a keyframe, so no delay builds up.
MAX_BEHIND = 1
#: Frames that arrived this close together came in one burst (one TCP read of the telescope's
#: stream). Only then may a track send the frame before the newest: frames an encoder made one
#: after another are a frame interval apart, and a track behind those skips ahead as before.
BURST_S = 0.010
#: The longest a tier switch holds the picture while the new tier catches up (see above).
SWITCH_HOLD_S = 0.5


@dataclass(slots=True)
class TrackStats:
    """What one track sent and skipped."""

    frames_sent: int = 0
    keyframes_sent: int = 0
    bytes_sent: int = 0
    #: Encoded frames this track never sent because it was behind or waiting for a keyframe.
    frames_skipped: int = 0
    #: Times the track fell behind (or joined) and had to wait for a keyframe.
    keyframe_waits: int = 0
    #: Joins answered at once with the tier's cached keyframe (a tier that cannot make one).
    cached_starts: int = 0
    tier_switches: int = 0
    #: Switches made at the end of a hold, to a keyframe older than the last frame sent.
    late_switches: int = 0


class EncodedVideoTrack(MediaStreamTrack):
    """A video track over one tier's encoded frames; `switch_to()` moves it at a keyframe."""

    kind = "video"

    def __init__(self, encoder: VideoTier) -> None:
        super().__init__()
        self.stats = TrackStats()
        self._encoder = encoder
        self._pending: VideoTier | None = None
        #: Sequence number of the pending tier's newest frame already looked at.
        self._pending_seen = 0
        #: While the pending tier catches up: when the hold ends (`time.monotonic()`).
        self._hold_until: float | None = None
        #: Sequence number (in the current tier's fan-out) of the last frame sent.
        self._cursor = 0
        #: True until a keyframe is sent: after joining, falling behind or a switch.
        self._gated = True
        self._attached = False
        #: The last frame sent, with its pts as sent (the tier's plus `_pts_offset`).
        self._last: EncodedFrame | None = None
        #: Added to every frame's pts so RTP time never goes back across a tier switch.
        self._pts_offset = 0

    @property
    def encoder(self) -> VideoTier:
        """The tier this track sends now."""
        return self._encoder

    @property
    def next_encoder(self) -> VideoTier:
        """The tier this track is moving to, or the one it sends if it is not moving."""
        return self._pending or self._encoder

    @property
    def last_sent(self) -> EncodedFrame | None:
        return self._last

    def switch_to(self, encoder: VideoTier) -> None:
        """Move to another tier at its next keyframe; until then the current tier keeps going."""
        if encoder is self._encoder:
            self._drop_pending()
            return
        if encoder is self._pending:
            return
        self._drop_pending()
        self._pending = encoder
        self._pending_seen = encoder.output.seq
        self._hold_until = None
        if self._attached:
            encoder.acquire()
        encoder.request_keyframe()

    def request_keyframe(self) -> None:
        """Ask this track's tier for an IDR (a PLI/FIR from the peer)."""
        self._encoder.request_keyframe()

    def stop(self) -> None:
        if self._attached:
            self._attached = False
            self._encoder.release()
            if self._pending is not None:
                self._pending.release()
        super().stop()

    async def recv(self) -> av.Packet:
        """The next frame to send: the next in sequence, or after a gap the next keyframe."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._attached:
            self._attach()
            cached = self._cached_start()
            if cached is not None:
                return cached
        try:
            while True:
                if self._pending is not None:
                    keyframe = self._switch_if_ready()
                    if keyframe is not None:
                        return self._send(keyframe, switched=True)
                    if self._holding():
                        await self._wait_pending()  # the current tier's picture is held
                        continue
                    await self._wait_either()
                    if self._encoder.output.seq <= self._cursor:
                        continue  # the pending tier moved; look at it again
                item = await self._encoder.output.next(self._cursor)
                if not self._gated and item.seq == self._cursor + 1:
                    return self._send(item)
                if not self._gated and item.seq - (self._cursor + 1) <= MAX_BEHIND:
                    # One behind the newest: in order, if the two came in one burst.
                    following = self._encoder.output.after(self._cursor)
                    if following is not None and _burst(following, item):
                        return self._send(following)
                if not self._gated:
                    # Frames in between are gone; a P-frame after a gap would not decode.
                    self._gate()
                skipped = item.seq - self._cursor - 1 if self._cursor else 0
                if item.value.keyframe:
                    self.stats.frames_skipped += skipped
                    return self._send(item)
                keyframe = self._encoder.output.last_keyframe
                if (
                    keyframe is not None
                    and self._cursor < keyframe.seq >= item.seq - MAX_BEHIND
                    and _burst(keyframe, item)
                ):
                    # A keyframe came in the same burst: start there, the rest follows in order.
                    self.stats.frames_skipped += (
                        keyframe.seq - self._cursor - 1 if self._cursor else 0
                    )
                    return self._send(keyframe)
                self.stats.frames_skipped += skipped + 1
                self._cursor = item.seq
        except SlotClosedError:
            self.stop()
            raise MediaStreamError from None

    # -- cursor -----------------------------------------------------------------------------------

    def _attach(self) -> None:
        self._attached = True
        self._encoder.acquire()
        if self._pending is not None:
            self._pending.acquire()
        self._cursor = self._encoder.output.seq
        self._gate()

    def _cached_start(self) -> av.Packet | None:
        """A joining viewer of a tier that cannot make keyframes gets its last one at once."""
        output = self._encoder.output
        cached, latest = output.last_keyframe, output.latest
        if self._encoder.makes_keyframes or cached is None or latest is None:
            return None
        if cached.value is latest.value:
            return self._send(latest)  # the newest frame is a keyframe: live from here
        self.stats.cached_starts += 1
        self.stats.frames_sent += 1
        self.stats.keyframes_sent += 1
        self.stats.bytes_sent += len(cached.value.data)
        # Stamped as the newest frame; the track stays gated at the newest frame's cursor.
        self._last = replace(cached.value, pts=latest.value.pts + self._pts_offset)
        self._cursor = latest.seq
        return self._last.packet()

    def _gate(self) -> None:
        self._gated = True
        self.stats.keyframe_waits += 1
        self._encoder.request_keyframe()

    def _switch_if_ready(self) -> Published[EncodedFrame] | None:
        """Move to the pending tier if it has a fresh keyframe, and return that keyframe."""
        pending = self._pending
        assert pending is not None
        keyframe = pending.output.last_keyframe
        latest = pending.output.latest
        if latest is None:
            return None
        seen, self._pending_seen = self._pending_seen, latest.seq
        # At most one frame old, so joining there adds no more than a frame of delay.
        if keyframe is None or keyframe.seq <= seen or latest.seq - keyframe.seq > 1:
            return None
        last = self._last
        if last is not None and keyframe.value.pts < last.pts - self._pts_offset:
            # Older than what the peer already shows: the pending tier runs behind this one.
            # Hold this tier's picture and ask for a newer keyframe; once the hold is over, go
            # anyway (`_send` stamps it after the last frame sent).
            if self._hold_until is None:
                self._hold_until = time.monotonic() + SWITCH_HOLD_S
            if self._holding():
                pending.request_keyframe()
                return None
            self.stats.late_switches += 1
        old, self._encoder, self._pending = self._encoder, pending, None
        self._hold_until = None
        if self._attached:
            old.release()
        self.stats.tier_switches += 1
        log.debug("track %s: tier %s -> %s", self.id, old.tier.name, pending.tier.name)
        return keyframe

    def _holding(self) -> bool:
        """Whether the current tier's picture is held for the pending tier to catch up."""
        return self._hold_until is not None and time.monotonic() < self._hold_until

    async def _wait_pending(self) -> None:
        """While holding: until the pending tier publishes a frame, or the hold is over (then
        the current tier goes on, past the frames it held, until the pending tier's next
        keyframe, which is taken whatever its age)."""
        assert self._pending is not None and self._hold_until is not None
        timeout = max(0.0, self._hold_until - time.monotonic())
        try:
            await asyncio.wait_for(self._pending.output.next(self._pending_seen), timeout)
        except TimeoutError:
            self._pending.request_keyframe()
        except SlotClosedError:
            self._pending_closed()

    async def _wait_either(self) -> None:
        """Wait until the current tier has a frame after the cursor or the pending tier moves."""
        assert self._pending is not None
        current = asyncio.ensure_future(self._encoder.output.next(self._cursor))
        pending = asyncio.ensure_future(self._pending.output.next(self._pending_seen))
        try:
            await asyncio.wait({current, pending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (current, pending):
                waiter.cancel()
        if current.done() and not current.cancelled() and current.exception() is not None:
            raise current.exception()  # type: ignore[misc]
        if pending.done() and not pending.cancelled() and pending.exception() is not None:
            self._pending_closed()

    def _pending_closed(self) -> None:
        log.debug("track %s: pending tier closed; staying", self.id)
        self._drop_pending()

    def _send(self, item: Published[EncodedFrame], switched: bool = False) -> av.Packet:
        frame = item.value
        self._cursor = item.seq
        self._gated = False
        last = self._last
        if switched and last is not None:
            # The new tier's pts go on from the last frame sent: at least one RTP tick later
            # (the same source frame again, or a late switch to an older one), so the receiver
            # sees a new frame and its clock never goes back; ahead of it, as the tier made them.
            if frame.pts > last.pts:
                self._pts_offset = 0
            elif frame.pts + self._pts_offset <= last.pts:
                self._pts_offset = last.pts + 1 - frame.pts
        pts = frame.pts + self._pts_offset
        self._last = frame if pts == frame.pts else replace(frame, pts=pts)
        self.stats.frames_sent += 1
        self.stats.keyframes_sent += frame.keyframe
        self.stats.bytes_sent += len(frame.data)
        return self._last.packet()

    def _drop_pending(self) -> None:
        if self._pending is not None and self._attached:
            self._pending.release()
        self._pending = None
        # Frames this tier published while it held are skipped like any gap (`recv`).
        self._hold_until = None


def _burst(first: Published[EncodedFrame], last: Published[EncodedFrame]) -> bool:
    """Whether `last` arrived with `first`, in one burst (`BURST_S`)."""
    return last.value.received - first.value.received <= BURST_S
