"""Adaptive bitrate: each peer's allowed rate from its receiver's feedback, and the tier it watches.

aiortc has no sender-side bandwidth estimation and ignores feedback for packet tracks, so this
module does the sender's half itself, once a second per peer (`RateController.update`):

- **Delay-based, from REMB and RTT.** The browser's receive-side estimator (GCC) raises its REMB
  slowly while all is well (about 8 % a second, capped at 1.5 × what it receives) and, when it
  sees queueing delay grow, drops it to 0.85 × what it receives. A rising REMB below our send
  rate is only a ramp that has not caught up (every session starts that way). The signal is a
  REMB that stops rising (falls, or repeats) below what we send, retransmissions included,
  while the round-trip time shows a queue (40 ms above its lowest of the last 30 s) or loss
  shows; then the estimate drops to the REMB. A queue seen twice in a row is congestion even
  without a REMB: the estimate drops to 0.85 × what we sent (or the REMB, if lower), and by
  0.6 more for every further interval the queue stays. An RTT over 300 ms is a queue with no
  baseline needed, acted on at once with 0.5 × what we sent.
- **Loss-based, from receiver reports and NACKs.** Above 10 % loss the estimate drops to
  send rate × (1 − loss / 2). Between 2 % and 10 % loss, or with a queue, it holds; otherwise it
  may rise. Loss is the larger of the receiver report's and the share of packets NACKed
  (`Feedback.nack_loss`): Chromium counts a packet recovered by retransmission as received.
- **Probing up.** With no congestion signal the estimate grows 8 % a second, up to the highest
  tier's ceiling. After the first congestion signal (`limited`) it goes no higher than
  1.15 × the newest REMB (`REMB_HEADROOM`), if that REMB is plausible (at least half what we
  send); after 5 quiet seconds that bound widens by 0.05 × REMB a second, up to 1.5 × REMB.
  The tiers' encoders are shared, so there are no per-peer padding probes. Instead a peer tries
  the higher tier once its probe (the estimate without that bound) has stayed above the tier's
  floor (with headroom) for `up_hold_s`. If the link
  cannot carry it, RTT, REMB or loss say so within a second or two, and the peer goes back down;
  the next try then waits twice as long (up to `max_hold_s`).

Tier choice (`TierChooser.choose`) is per peer. A tier's encoder bitrate (`tier_bitrate`) is 85 %
of the lowest estimate among the peers watching it (the rest is overhead and retransmissions),
clamped to the tier's range: one encode serves them all, and the slowest peer of a tier sets its
quality (it moves down a tier once below the floor). While any of them is `limited`, the tier's
encoder bounds each frame to one frame interval of its bitrate (`TierEncoder.set_tight`).
Design notes with measured REMB traces: docs/webrtc-adaptation.md.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scopelink.webrtc.encoder import Tier

#: Multiplicative increase per second without a congestion signal (GCC's own pace). Measured
#: faster (1.2 after 5 quiet seconds): behind a 750 kbit/s cap the estimate overshot by half
#: within seconds, the picture froze and the page reconnected.
RAMP_PER_S = 1.08
#: A tier's encoder gets this share of its peers' estimate: the rest is for RTP/SRTP/UDP
#: overhead and retransmissions (at most `peer.RTX_SHARE` of the estimate).
MEDIA_SHARE = 0.85
#: A REMB this far below what we send, and not rising, is congestion (with queueing evidence).
OVERUSE_MARGIN = 0.95
#: Round-trip time this far above the lowest of the last `RTT_WINDOW_S` means a queue is
#: building on the path; twice in a row, it is congestion on its own: the estimate drops to
#: `DELAY_BACKOFF` × what we sent (or the REMB, if lower), and by `PERSISTENT_BACKOFF` more for
#: every further interval the queue stays (we send far more than the link carries).
QUEUE_MS = 40.0
RTT_WINDOW_S = 30.0
#: An RTT above this is a queue whatever the recent lowest: a viewer behind a slow link from the
#: first second never shows a low RTT to compare with (measured behind 800 kbit/s: 330–343 ms
#: from the first report). No path this app serves has such a round trip without a queue.
QUEUE_ABSOLUTE_MS = 300.0
SEVERE_BACKOFF = 0.5
DELAY_BACKOFF = 0.85
PERSISTENT_BACKOFF = 0.6
#: Loss above which the estimate is cut, and below which it may grow.
LOSS_HIGH = 0.10
LOSS_LOW = 0.02
#: Probing may take the estimate at most this far above the browser's REMB. Unbounded, behind a
#: 750 kbit/s cap the estimate climbed 8 % a second past a REMB that stayed at 590 until a queue
#: built: every ten seconds the picture froze for up to 1.7 s. Chromium's REMB itself rises to
#: 1.5 × what it receives when the link allows, so the bound lifts as the link does.
REMB_HEADROOM = 1.15
#: The bound widens while the link stays quiet: after `QUIET_S` seconds without a congestion
#: signal, by `HEADROOM_GROWTH_PER_S` a second up to `MAX_REMB_HEADROOM`. An encoder that sends
#: less than it may keeps the browser's REMB rising slowly (about 12 kbit/s a second measured
#: after a cap lifted); sending a little above the REMB is what lets it climb faster.
QUIET_S = 5.0
HEADROOM_GROWTH_PER_S = 0.05
MAX_REMB_HEADROOM = 1.5
#: A REMB below this share of what we send, with no queue or loss to confirm it, is not taken as
#: the link's rate (Chromium's can sit at tens of kbit/s long after a cap has gone).
PLAUSIBLE_REMB = 0.5
#: Receiver-report jitter (RFC 3550) above this shows a link that spreads each frame's packets
#: out: a bottleneck slower than our bursts, which marks the link limited without any cut.
#: Measured (full tier, 10 fps): 2–12 ms uncapped, 23–43 ms behind 8 Mbit/s, 48–84 ms behind
#: 4 Mbit/s, where quarter-second keyframes kept each frame ~200 ms late and a session could
#: go 27 s without a congestion signal.
SPREAD_JITTER_MS = 20.0
#: A tier is tried only when the estimate exceeds its floor by this factor.
UP_HEADROOM = 1.25


@dataclass(frozen=True, slots=True)
class Feedback:
    """One sampling interval of a peer: what we sent and what its receiver said."""

    now: float
    #: Bits per second sent to the peer over the interval, retransmissions included.
    sent_bps: int
    #: The newest REMB, and whether it arrived during this interval.
    remb_bps: int | None = None
    remb_fresh: bool = False
    #: Fraction lost from the newest receiver report (0–1).
    fraction_lost: float | None = None
    #: The share of the interval's packets the receiver NACKed (0–1): loss before any
    #: retransmission. Chromium counts a packet recovered by retransmission as received, so its
    #: receiver reports showed ~0 loss while a full-tier start behind a 1.5 Mbit/s cap lost most
    #: of every keyframe (measured: thousands of NACKs a second, no frame shown for 8 s).
    nack_loss: float | None = None
    #: The newest round-trip time measured (unsmoothed), if one was measured in the interval.
    rtt_ms: float | None = None
    #: Interarrival jitter from the newest receiver report, ms.
    jitter_ms: float | None = None


@dataclass(slots=True)
class RateController:
    """One peer's estimated available bitrate (bits per second), from its `Feedback`."""

    start_bps: int
    min_bps: int
    max_bps: int
    estimate: float = field(init=False)
    #: Why the estimate last changed: "start", "ramp", "remb", "delay", "loss", "hold"; "bound"
    #: when it would ramp but the REMB bounds it.
    reason: str = field(default="start", init=False)
    _last_remb: int | None = field(default=None, init=False)
    _last_now: float | None = field(default=None, init=False)
    _recent_sent: list[int] = field(default_factory=list, init=False)
    _rtts: deque[tuple[float, float]] = field(default_factory=deque, init=False)
    _queueing_before: bool = field(default=False, init=False)
    _delay_cut_before: bool = field(default=False, init=False)
    #: Where probing has got to: the estimate without the REMB bound (never below it). Tier
    #: choice goes by this: an encoder that sends less than it may (the sky compresses well)
    #: cannot raise the browser's REMB much, so only a move up a tier, with its own backoff
    #: (`TierChooser`), tests whether a link has room again.
    probe: float = field(init=False)
    #: Whether the link has shown its limit in this session: a congestion signal (a cut or a
    #: hold), or jitter over `SPREAD_JITTER_MS`. The REMB bound applies, and the tier's encoder
    #: bounds each frame to one frame interval.
    limited: bool = False
    #: When the last congestion signal (a cut or a hold) came.
    _signal_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.estimate = float(min(max(self.start_bps, self.min_bps), self.max_bps))
        self.probe = self.estimate

    def update(self, fb: Feedback) -> int:
        """Take one interval's feedback; the new estimate."""
        elapsed = 1.0 if self._last_now is None else max(fb.now - self._last_now, 0.0)
        self._last_now = fb.now
        self._recent_sent = [*self._recent_sent[-1:], fb.sent_bps]
        # REMB describes what arrived a little earlier: compare with the larger of two intervals.
        sent = max(self._recent_sent)
        loss = max(fb.fraction_lost or 0.0, fb.nack_loss or 0.0)
        if fb.jitter_ms is not None and fb.jitter_ms > SPREAD_JITTER_MS:
            self.limited = True
        queueing = self._queueing(fb)
        # Not rising: equal counts, since a receiver behind a cap may report the same low value
        # again and again (its first report has nothing to compare with, and starts low anyway).
        stalled = (
            fb.remb_fresh
            and fb.remb_bps is not None
            and self._last_remb is not None
            and fb.remb_bps <= self._last_remb
        )
        if fb.remb_fresh and fb.remb_bps is not None:
            self._last_remb = fb.remb_bps
        # A round trip over `QUEUE_ABSOLUTE_MS` is a long queue: act on the first report, and
        # harder (a page behind a link far slower than the start gives up within seconds).
        severe = fb.rtt_ms is not None and fb.rtt_ms > QUEUE_ABSOLUTE_MS
        delayed = queueing and (self._queueing_before or severe)
        self._queueing_before = queueing
        delay_cut_before, self._delay_cut_before = self._delay_cut_before, False
        # Every congestion rule that applies proposes a cut; the deepest wins. (Loss first
        # pre-empted the others: behind a 750 kbit/s cap heavy NACK loss cut only to 0.7 × sent
        # each second, where the REMB said 593 kbit/s and the RTT 340 ms; the picture froze.)
        cuts: list[tuple[float, str]] = []
        if loss > LOSS_HIGH and sent > 0:
            cuts.append((sent * (1.0 - loss / 2), "loss"))
        if (
            stalled
            and fb.remb_bps is not None
            and fb.remb_bps < OVERUSE_MARGIN * sent
            and (queueing or loss > LOSS_LOW)
        ):
            cuts.append((fb.remb_bps, "remb"))
        if delayed and sent > 0:
            target = (SEVERE_BACKOFF if severe else DELAY_BACKOFF) * sent
            if fb.remb_bps is not None and fb.remb_bps < target:
                target = fb.remb_bps
            if delay_cut_before:
                target = min(target, self.estimate * PERSISTENT_BACKOFF)
            cuts.append((target, "delay"))
            self._delay_cut_before = True
        if cuts:
            value, reason = cuts[0]
            for other, why in cuts[1:]:
                if other < value:
                    value, reason = other, why
            self._cut(value, reason, fb.now)
        elif loss > LOSS_LOW or queueing:
            self._signal_at = fb.now
            self.limited = True
            self.reason = "hold"
        else:
            step = RAMP_PER_S ** min(elapsed, 2.0)
            self.probe = min(self.probe * step, self.max_bps)
            target = min(self.estimate * step, self.probe)
            bound = self._ramp_bound(sent, fb.now)
            if target > bound:
                target = max(self.estimate, bound)
            if target > self.estimate:
                self._set(target, "ramp")
            elif self.estimate < self.max_bps:
                self.reason = "bound"
        return round(self.estimate)

    def _ramp_bound(self, sent: float, now: float) -> float:
        """How far probing may take the estimate: a headroom × the newest REMB once the link
        has shown a limit (a cut), if that REMB describes the link (not while it sits implausibly
        far below what arrives without a queue). A session's first REMBs are only the browser's
        own start-up ramp. The headroom is `REMB_HEADROOM` after a congestion signal and widens
        to `MAX_REMB_HEADROOM` while the link stays quiet."""
        remb = self._last_remb
        if not self.limited or remb is None or remb < PLAUSIBLE_REMB * sent:
            return float("inf")
        quiet = max(now - self._signal_at - QUIET_S, 0.0)
        return min(REMB_HEADROOM + HEADROOM_GROWTH_PER_S * quiet, MAX_REMB_HEADROOM) * remb

    def _queueing(self, fb: Feedback) -> bool:
        """Whether this interval's RTT stands well above the path's recent lowest."""
        if fb.rtt_ms is None:
            return False
        self._rtts.append((fb.now, fb.rtt_ms))
        while self._rtts and fb.now - self._rtts[0][0] > RTT_WINDOW_S:
            self._rtts.popleft()
        lowest = min(rtt for _, rtt in self._rtts)
        return fb.rtt_ms - lowest > QUEUE_MS or fb.rtt_ms > QUEUE_ABSOLUTE_MS

    def _cut(self, value: float, reason: str, now: float) -> None:
        self.limited = True
        self._signal_at = now
        self._set(min(self.estimate, value), reason)
        self.probe = self.estimate

    def _set(self, value: float, reason: str) -> None:
        self.estimate = min(max(value, self.min_bps), self.max_bps)
        self.reason = reason


@dataclass(slots=True)
class TierChooser:
    """Which tier a peer watches, from its estimate: down at once, up after a hold.

    `tiers` go from the lowest to the highest. A peer moves down when its estimate falls below
    its tier's floor, and up when the estimate has exceeded the next tier's floor × headroom
    for `hold_s`. Going back down soon after going up doubles the hold (a failed probe).
    """

    tiers: Sequence[Tier]
    up_hold_s: float = 3.0
    max_hold_s: float = 48.0
    #: After this long on a tier without falling back, the hold returns to `up_hold_s`.
    settle_s: float = 30.0
    hold_s: float = field(init=False)
    _above_since: float | None = field(default=None, init=False)
    _moved_up_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.hold_s = self.up_hold_s

    def choose(self, current: Tier, estimate: float, now: float) -> Tier:
        index = self._index(current)
        if index > 0 and estimate < current.min_bitrate:
            self._above_since = None
            if self._moved_up_at is not None and now - self._moved_up_at < self.settle_s:
                self.hold_s = min(self.hold_s * 2, self.max_hold_s)
            self._moved_up_at = None
            lower = index - 1
            while lower > 0 and estimate < self.tiers[lower].min_bitrate:
                lower -= 1
            return self.tiers[lower]
        if self._moved_up_at is not None and now - self._moved_up_at >= self.settle_s:
            self._moved_up_at = None
            self.hold_s = self.up_hold_s
        if index + 1 < len(self.tiers):
            higher = self.tiers[index + 1]
            if estimate >= higher.min_bitrate * UP_HEADROOM:
                if self._above_since is None:
                    self._above_since = now
                if now - self._above_since >= self.hold_s:
                    self._above_since = None
                    self._moved_up_at = now
                    return higher
            else:
                self._above_since = None
        return current

    def _index(self, tier: Tier) -> int:
        for i, candidate in enumerate(self.tiers):
            if candidate.name == tier.name:
                return i
        raise ValueError(f"tier {tier.name!r} is not one of this chooser's tiers")


def tier_bitrate(tier: Tier, estimates: Iterable[float]) -> int:
    """The bitrate a tier's shared encoder should use for the peers watching it: its share of
    the lowest estimate, within the tier's range (no estimates: the tier's start)."""
    lowest = min((e * MEDIA_SHARE for e in estimates), default=float(tier.bitrate))
    return round(min(max(lowest, tier.min_bitrate), tier.max_bitrate))


@dataclass(slots=True)
class Adaptation:
    """What moves one peer: its rate estimate and its tier choice (see webrtc/adapt.py)."""

    rate: RateController
    chooser: TierChooser

    @classmethod
    def over(
        cls, tiers: Sequence[Tier], start: Tier, start_bps: int | None = None, limited: bool = False
    ) -> Adaptation:
        """Adaptation across `tiers` (lowest first), starting at `start_bps` (default: the
        starting bitrate of the tier `start`); `limited`: the link is known to have a limit (a
        returning client's last session had a congestion signal)."""
        return cls(
            RateController(
                start_bps=start.bitrate if start_bps is None else start_bps,
                min_bps=min(t.min_bitrate for t in tiers),
                max_bps=max(t.max_bitrate for t in tiers),
                limited=limited,
            ),
            TierChooser(tiers),
        )
