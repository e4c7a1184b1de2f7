"""Adaptive bitrate: the rate estimate, the tier choice, and shared tiers set by their peers."""

from __future__ import annotations

import asyncio

from aiortc import RTCPeerConnection, RTCSessionDescription, rtcrtpsender
from aiortc.mediastreams import MediaStreamTrack

from scopelink.webrtc.adapt import Feedback, RateController, TierChooser, tier_bitrate
from scopelink.webrtc.encoder import FULL, REDUCED, TIERS, Codec, TierEncoder
from scopelink.webrtc.peer import Peer
from scopelink.webrtc.sessions import PeerManager
from tests.webrtc.conftest import Source, Telescope, viewer_offer, wait_until

M = 1_000_000


def controller(start: int = 4 * M) -> RateController:
    return RateController(start_bps=start, min_bps=150_000, max_bps=6 * M)


def test_without_feedback_the_estimate_probes_upwards_to_the_ceiling() -> None:
    rate = controller(start=1 * M)
    estimates = [rate.update(Feedback(now=float(t), sent_bps=900_000)) for t in range(1, 40)]
    assert estimates[0] > 1 * M and estimates == sorted(estimates)
    assert estimates[-1] == 6 * M and rate.reason == "ramp"


def test_a_rising_remb_below_the_send_rate_is_a_ramp_not_congestion() -> None:
    # Every browser session starts like this: REMB climbs from well below what it receives.
    rate = controller()
    for t, remb in enumerate([900_000, 1_000_000, 1_100_000, 1_200_000], start=1):
        rate.update(Feedback(float(t), sent_bps=2 * M, remb_bps=remb, remb_fresh=True))
    assert rate.estimate > 4 * M


def test_a_falling_remb_with_a_queue_on_the_path_cuts_the_estimate_to_it() -> None:
    rate = controller()
    rate.update(Feedback(1.0, 1 * M, remb_bps=3_500_000, remb_fresh=True, rtt_ms=2.0))
    queue = Feedback(2.0, 1 * M, remb_bps=700_000, remb_fresh=True, rtt_ms=150.0)
    assert rate.update(queue) == 700_000
    assert rate.reason == "remb"
    # The same REMB again (not fresh) is no new signal; a queue seen twice is, but 0.85 × sent
    # (850 kbit/s) is not below the estimate already cut to.
    assert rate.update(Feedback(3.0, 700_000, remb_bps=700_000, rtt_ms=150.0)) == 700_000
    assert rate.reason == "delay"
    assert rate.update(Feedback(4.0, 700_000, remb_bps=700_000, rtt_ms=3.0)) > 700_000


def test_a_falling_remb_without_a_queue_or_loss_is_not_congestion() -> None:
    # Chromium's REMB can sit far below what arrives long after a cap has gone.
    rate = controller()
    rate.update(Feedback(1.0, 1 * M, remb_bps=60_000, remb_fresh=True, rtt_ms=2.0))
    rate.update(Feedback(2.0, 1 * M, remb_bps=34_000, remb_fresh=True, rtt_ms=3.0))
    assert rate.estimate > 4 * M and rate.reason == "ramp"


def test_after_a_cut_probing_stays_within_reach_of_the_remb() -> None:
    # Behind a 750 kbit/s cap the browser's REMB settles near 590 kbit/s. Ramping 8 % a second
    # past it until a queue builds froze the picture every ten seconds; the ramp stops at
    # 1.15 x the REMB instead, widening to 1.5 x while the link stays quiet.
    rate = controller()
    rate.update(Feedback(1.0, 4 * M, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
    rate.update(Feedback(2.0, 4 * M, remb_bps=590_000, remb_fresh=True, rtt_ms=250.0))
    assert rate.estimate == 590_000 and rate.reason == "remb"

    def quiet(t: int, remb: int = 590_000) -> int:
        return rate.update(
            Feedback(float(t), 500_000, remb_bps=remb, remb_fresh=t % 3 == 0, rtt_ms=2.0)
        )

    assert [quiet(t) for t in range(3, 8)][-1] == round(1.15 * 590_000)
    assert rate.reason == "bound"
    assert max(quiet(t) for t in range(8, 40)) == round(1.5 * 590_000)
    # Probing (what the tier choice goes by) ramps on unbounded: only a move up a tier can
    # show whether the link has room again when the encoder sends less than it may.
    assert rate.probe > 4 * M
    # A queue (twice) cuts; the bound is back to 1.15 x the REMB after it.
    rate.update(Feedback(40.0, 700_000, remb_bps=590_000, rtt_ms=120.0))
    assert rate.update(Feedback(41.0, 700_000, remb_bps=590_000, rtt_ms=120.0)) == 590_000
    assert rate.probe == 590_000
    assert max(quiet(t) for t in range(42, 47)) == round(1.15 * 590_000)
    # The cap lifts: Chromium's REMB climbs, and the estimate with it.
    remb = [*range(700_000, 2_000_001, 100_000), *[2 * M] * 10]
    for t, value in enumerate(remb, start=47):
        quiet(t, value)
    assert rate.estimate == round(1.5 * 2 * M) and rate.reason == "bound"


def test_a_bounded_estimate_follows_the_remb_up_after_probing_reached_the_ceiling() -> None:
    rate = controller()
    rate.update(Feedback(1.0, 4 * M, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
    rate.update(Feedback(2.0, 4 * M, remb_bps=590_000, remb_fresh=True, rtt_ms=250.0))
    for t in range(3, 60):  # a long quiet spell behind the cap: probing reaches the ceiling
        rate.update(Feedback(float(t), 500_000, remb_bps=590_000, rtt_ms=2.0))
    assert rate.probe == 6 * M and rate.estimate == round(1.5 * 590_000)
    for t in range(60, 90):  # the cap lifts and the REMB climbs: the estimate goes with it
        rate.update(Feedback(float(t), 1 * M, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
    assert rate.estimate == 4.5 * M


def test_a_remb_far_below_what_arrives_does_not_bound_probing() -> None:
    # Chromium's REMB can stay at tens of kbit/s after a cap while a megabit arrives unqueued.
    rate = controller(start=600_000)
    rate.update(Feedback(0.0, 1 * M, fraction_lost=0.2))
    for t in range(1, 6):
        rate.update(Feedback(float(t), 1 * M, remb_bps=40_000, remb_fresh=True, rtt_ms=2.0))
    assert rate.estimate > 600_000 * 1.08**4 and rate.reason == "ramp"


def test_a_queue_that_stays_cuts_harder_every_second() -> None:
    # Sending six times what the link carries: 0.85 × sent a second would take many seconds.
    rate = controller()
    rate.update(Feedback(1.0, 4_500_000, rtt_ms=2.0))
    rate.update(Feedback(2.0, 4_500_000, rtt_ms=200.0))
    first = rate.update(Feedback(3.0, 4_500_000, rtt_ms=230.0))
    assert first == round(0.85 * 4_500_000)
    second = rate.update(Feedback(4.0, 4_500_000, rtt_ms=240.0))
    assert second == round(first * 0.6) and rate.reason == "delay"
    # With a REMB below what 0.85 × sent would give, the REMB is the better figure.
    rate = controller()
    rate.update(Feedback(1.0, 4_500_000, remb_bps=7 * M, remb_fresh=True, rtt_ms=2.0))
    rate.update(Feedback(2.0, 4_500_000, remb_bps=7 * M, rtt_ms=200.0))
    assert rate.update(Feedback(3.0, 4_500_000, remb_bps=590_000, rtt_ms=200.0)) == 590_000


def test_a_remb_stuck_below_the_send_rate_cuts_the_estimate() -> None:
    # A cap from the start: the first report is low (ignored, like every first one) and the
    # next ones repeat it while the queue shows.
    rate = controller()
    rate.update(Feedback(1.0, 1 * M, remb_bps=550_000, remb_fresh=True, rtt_ms=2.0))
    assert rate.estimate > 4 * M
    stuck = Feedback(2.0, 1 * M, remb_bps=550_000, remb_fresh=True, rtt_ms=80.0)
    assert rate.update(stuck) == 550_000


def test_a_queue_seen_twice_is_congestion_without_any_remb() -> None:
    rate = controller()
    rate.update(Feedback(1.0, 2 * M, rtt_ms=2.0))
    assert rate.update(Feedback(2.0, 2 * M, rtt_ms=200.0)) > 4 * M  # once: hold
    assert rate.reason == "hold"
    assert rate.update(Feedback(3.0, 2 * M, rtt_ms=220.0)) == 1_700_000  # 0.85 × sent
    assert rate.reason == "delay"


def test_any_congestion_signal_marks_the_link_limited() -> None:
    """A hold (a queue or moderate loss) shows the link's limit as much as a cut does: a 4 Mbit/s
    cap that only ever queues keyframes gives no cut (measured), and those keyframes are what
    the tight frame bound is for."""
    rate = controller()
    rate.update(Feedback(now=1.0, sent_bps=3 * M, rtt_ms=2.0))
    assert not rate.limited
    rate.update(Feedback(now=2.0, sent_bps=3 * M, rtt_ms=60.0))  # a queue, once: a hold
    assert rate.reason == "hold" and rate.limited
    lossy = controller()
    lossy.update(Feedback(now=1.0, sent_bps=3 * M, fraction_lost=0.05))
    assert lossy.reason == "hold" and lossy.limited


def test_loss_the_receiver_nacked_counts_though_its_reports_show_none() -> None:
    """Chromium counts a packet recovered by retransmission as received: behind a 1.5 Mbit/s cap
    a full-tier start lost most of every keyframe while its receiver reports said ~0 %."""
    rate = controller()
    rate.update(Feedback(now=1.0, sent_bps=3 * M, fraction_lost=0.0, nack_loss=0.6))
    assert rate.reason == "loss" and rate.estimate == 3 * M * 0.7
    held = controller()
    held.update(Feedback(now=1.0, sent_bps=3 * M, fraction_lost=0.0, nack_loss=0.05))
    assert held.reason == "hold" and held.estimate == 4 * M


def test_when_several_rules_call_for_a_cut_the_deepest_wins() -> None:
    """Heavy loss alone cuts to 0.7 × sent; with the REMB at a fifth of what was sent and the RTT
    at 340 ms the same second, the cut goes to the REMB (measured behind 750 kbit/s: cutting by
    loss alone left the picture frozen for five seconds)."""
    rate = controller()
    rate.update(Feedback(now=1.0, sent_bps=3 * M, remb_bps=4 * M, remb_fresh=True, rtt_ms=2.0))
    rate.update(
        Feedback(
            now=2.0,
            sent_bps=3 * M,
            remb_bps=600_000,
            remb_fresh=True,
            nack_loss=0.6,
            rtt_ms=340.0,
        )
    )
    assert rate.reason == "remb" and rate.estimate == 600_000


def test_a_packet_nacked_again_counts_once_as_lost(source: Source) -> None:
    session = Peer(TierEncoder(REDUCED, source.frames), telescope_id="t")
    for seq in (7, 8, 7, 9, 8, 7):  # the receiver asks again until the packet comes
        session._may_retransmit(seq, 1200)
    assert session._nacked_new == 3


def test_a_link_that_spreads_frames_out_is_limited_without_any_congestion_signal() -> None:
    """Behind 4 Mbit/s one session went 27 s without a cut or a hold while quarter-second
    keyframes kept every frame ~200 ms late; its receiver reports' jitter was 48–84 ms from the
    second report on (2–12 ms uncapped)."""
    rate = controller()
    rate.update(Feedback(now=1.0, sent_bps=3 * M, jitter_ms=12.0))
    assert not rate.limited and rate.reason == "ramp"
    rate.update(Feedback(now=2.0, sent_bps=3 * M, jitter_ms=48.0))
    assert rate.limited and rate.reason == "ramp"  # no cut, no hold: only the frame bound


def test_heavy_loss_cuts_moderate_loss_holds() -> None:
    rate = controller()
    assert rate.update(Feedback(1.0, sent_bps=2 * M, fraction_lost=0.2)) == 1_800_000
    assert rate.update(Feedback(2.0, sent_bps=1_800_000, fraction_lost=0.05)) == 1_800_000
    assert rate.reason == "hold"
    assert rate.update(Feedback(3.0, sent_bps=1_800_000, fraction_lost=0.0)) > 1_800_000


def test_the_estimate_stays_within_its_bounds() -> None:
    rate = controller()
    rate.update(Feedback(1.0, sent_bps=200_000, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
    rate.update(Feedback(2.0, 200_000, remb_bps=10_000, remb_fresh=True, rtt_ms=90.0))
    assert rate.estimate == 150_000


def test_tiers_go_down_at_once_and_up_only_after_a_hold_with_headroom() -> None:
    chooser = TierChooser(TIERS, up_hold_s=3.0)
    assert chooser.choose(FULL, 1_300_000, 0.0) is FULL  # within the overlap: stay
    assert chooser.choose(FULL, 1_100_000, 1.0) is REDUCED  # below full's floor
    assert chooser.choose(REDUCED, 1_400_000, 2.0) is REDUCED  # no headroom over 1.2 Mbit/s
    assert chooser.choose(REDUCED, 1_600_000, 3.0) is REDUCED  # headroom, hold starts
    assert chooser.choose(REDUCED, 1_600_000, 5.9) is REDUCED
    assert chooser.choose(REDUCED, 1_600_000, 6.0) is FULL


def test_a_failed_probe_doubles_the_hold_and_settling_resets_it() -> None:
    chooser = TierChooser(TIERS, up_hold_s=3.0, settle_s=30.0)
    chooser.choose(REDUCED, 2 * M, 0.0)
    assert chooser.choose(REDUCED, 2 * M, 3.0) is FULL
    assert chooser.choose(FULL, 800_000, 5.0) is REDUCED  # the link could not carry it
    assert chooser.hold_s == 6.0
    chooser.choose(REDUCED, 2 * M, 10.0)
    assert chooser.choose(REDUCED, 2 * M, 13.0) is REDUCED  # 3 s is no longer enough
    assert chooser.choose(REDUCED, 2 * M, 16.0) is FULL
    assert chooser.choose(FULL, 2 * M, 46.0) is FULL  # 30 s on full: the probe succeeded
    assert chooser.hold_s == 3.0


def test_a_shared_tier_runs_at_its_slowest_peers_estimate_within_its_range() -> None:
    # 85 % of the lowest estimate: the rest is packet overhead and retransmissions.
    assert tier_bitrate(FULL, [5 * M, 2 * M]) == 1_700_000
    assert tier_bitrate(FULL, [500_000]) == FULL.min_bitrate
    assert tier_bitrate(REDUCED, [9 * M]) == REDUCED.max_bitrate
    assert tier_bitrate(REDUCED, []) == REDUCED.bitrate


async def test_a_congested_peer_moves_down_alone_and_sets_its_new_tiers_bitrate(
    source: Source,
) -> None:
    """Two real aiortc viewers on the full tier; one reports congestion (a falling REMB)."""
    manager = PeerManager(max_peers=4)
    telescope = Telescope(source)
    clients: list[RTCPeerConnection] = []
    player = asyncio.create_task(source.play(1000, fps=20))
    try:
        sessions = []
        for _ in range(2):
            client, offer = await viewer_offer()
            tracks: list[MediaStreamTrack] = []
            client.on("track", tracks.append)
            session, answer = await manager.create("t", telescope, offer, tier=FULL)
            await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            clients.append(client)
            sessions.append(session)
        for session in sessions:
            await asyncio.wait_for(session.connected.wait(), 10)
        slow, fast = sessions
        # aiortc's own receiver sends REMB: the feedback path is real.
        await wait_until(lambda: all(s.stats().remb_bps for s in sessions), timeout=10)

        slow.adapt(Feedback(100.0, 1 * M, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
        slow.adapt(Feedback(101.0, 1 * M, remb_bps=600_000, remb_fresh=True, rtt_ms=150.0))

        assert slow.target_tier is REDUCED and fast.target_tier is FULL
        await wait_until(lambda: slow.stats().tier == "reduced", timeout=5)
        encoders = manager.encoders("t")
        # 85 % of 600 kbit/s, or a little more if the once-a-second step has ramped it
        # meanwhile; not the tier's 1 Mbit/s start.
        assert 510_000 <= encoders["reduced"].bitrate < 800_000
        assert encoders["full"].bitrate >= FULL.min_bitrate  # not dragged down by the slow one
        assert slow.stats().estimate_reason == "remb"
        assert fast.stats().tier == "full"
        # Behind a link that has shown its limit, frames are bounded to one frame interval;
        # the full tier's viewer has shown none.
        assert slow.stats().limited and not fast.stats().limited
        assert encoders["reduced"].tight and not encoders["full"].tight
    finally:
        player.cancel()
        for client in clients:
            await client.close()
        await manager.close_all()


async def test_a_client_that_comes_back_starts_at_its_last_estimate(source: Source) -> None:
    """A page that reconnects over a slow link must not start at the full tier's rate again."""
    manager = PeerManager(max_peers=4)
    telescope = Telescope(source)
    player = asyncio.create_task(source.play(1000, fps=20))

    async def connect(client_id: str) -> tuple[RTCPeerConnection, Peer]:
        client, offer = await viewer_offer()
        session, answer = await manager.create("t", telescope, offer, client=client_id, tier=FULL)
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        await asyncio.wait_for(session.connected.wait(), 10)
        return client, session

    try:
        client, first = await connect("page-1")
        await wait_until(lambda: first.stats().frames_sent > 0, timeout=10)
        first.adapt(Feedback(100.0, 1 * M, remb_bps=3 * M, remb_fresh=True, rtt_ms=2.0))
        first.adapt(Feedback(101.0, 1 * M, remb_bps=700_000, remb_fresh=True, rtt_ms=150.0))
        await first.close()
        await client.close()

        client, again = await connect("page-1")
        assert again.target_tier is REDUCED
        assert again.estimate_bps is not None and again.estimate_bps <= 800_000
        assert again.limited  # its link's limit is remembered too
        await client.close()
        # Another client knows nothing of it.
        other_client, other = await connect("page-2")
        assert other.target_tier is FULL and other.estimate_bps == FULL.bitrate
        assert not other.limited
        await other_client.close()
    finally:
        player.cancel()
        await manager.close_all()


def test_small_changes_are_skipped_and_vp8_waits_for_a_larger_one(source: Source) -> None:
    """Each VP8 bitrate change re-opens libvpx with a keyframe: it must not follow a ramp."""
    h264 = TierEncoder(FULL, source.frames)
    vp8 = TierEncoder(FULL, source.frames, codec=Codec.VP8)
    # Below the rate x264 was opened at, changes are in place: 5 % is worth it.
    assert not h264.worth_changing_to(round(FULL.bitrate * 0.97))
    assert h264.worth_changing_to(round(FULL.bitrate * 0.92))
    # Above it, a change re-opens the encoder (a keyframe), as every VP8 change does: 30 %.
    assert not h264.worth_changing_to(round(FULL.bitrate * 1.2))
    assert h264.worth_changing_to(round(FULL.bitrate * 1.35))
    assert not vp8.worth_changing_to(round(FULL.bitrate * 0.8))
    assert vp8.worth_changing_to(round(FULL.bitrate * 0.6))


def test_retransmissions_get_a_share_of_the_estimate_and_no_more(source: Source) -> None:
    """Under a cap, unlimited NACK retransmissions filled the link and starved new frames."""
    session = Peer(TierEncoder(REDUCED, source.frames), telescope_id="t")
    # No estimate yet: the budget follows the tier's bitrate, 15 % of 1 Mbit/s = 150 kbit/s,
    # and the bucket holds a quarter second of it (4 687 bytes).
    session._rtx.tokens = 0.0
    session._rtx.stamp -= 1.0  # a second ago: the bucket has filled up to its depth
    allowed = sum(session._may_retransmit(seq, 1200) for seq in range(20))
    assert allowed == 3  # 3 × 1 200 ≤ 4 687 < 4 × 1 200
    assert not session._may_retransmit(20, None)  # no longer kept: nothing to resend
    stats = session.stats()
    assert stats.retransmitted_packets == 3 and stats.retransmitted_bytes == 3600
    assert stats.retransmissions_refused == 18
    assert rtcrtpsender.RTP_HISTORY_SIZE == 1024  # a full-tier keyframe fits in the history


async def test_the_tier_a_viewer_asked_for_is_its_ceiling(source: Source) -> None:
    """A viewer that chose the reduced tier (a phone, a metered link) is never moved up."""
    manager = PeerManager(max_peers=4)
    client, offer = await viewer_offer()
    player = asyncio.create_task(source.play(1000, fps=20))
    try:
        session, answer = await manager.create("t", Telescope(source), offer, tier=REDUCED)
        await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        for t in range(30):  # a fast, clean link for half a minute
            session.adapt(Feedback(1000.0 + t, 1 * M, rtt_ms=2.0))
        # The estimate stops at the reduced tier's maximum, and so does the encoder.
        assert session.estimate_bps == REDUCED.max_bitrate
        assert session.target_tier is REDUCED and "full" not in manager.encoders("t")
        assert manager.encoders("t")["reduced"].bitrate <= REDUCED.max_bitrate
    finally:
        player.cancel()
        await client.close()
        await manager.close_all()


def test_a_round_trip_above_300_ms_is_a_queue_even_with_nothing_lower_to_compare() -> None:
    """Behind a slow link from the start, the very first RTT is already queued."""
    rate = controller()
    # Acted on at once, and harder: half of what was sent, then 0.6 × that a second.
    assert rate.update(Feedback(1.0, 3 * M, rtt_ms=340.0)) == 1_500_000
    assert rate.reason == "delay"
    assert rate.update(Feedback(2.0, 3 * M, rtt_ms=345.0)) == 900_000


async def test_a_session_that_never_heard_an_estimate_makes_the_next_start_at_half(
    source: Source,
) -> None:
    """A page behind a link far slower than the start retries lower each time."""
    manager = PeerManager(max_peers=4)
    player = asyncio.create_task(source.play(1000, fps=20))
    try:
        starts = []
        for _ in range(3):
            client, offer = await viewer_offer()
            session, answer = await manager.create(
                "t", Telescope(source), offer, client="slow", tier=FULL
            )
            starts.append((session.target_tier.name, session.start_bps))
            await client.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await wait_until(lambda s=session: s.stats().frames_sent > 0, timeout=10)
            # Closed before aiortc's receiver sends its first REMB: nothing heard back.
            session._stats.remb_bps = None
            await session.close()
            await client.close()
        assert starts == [("full", 4 * M), ("full", 2 * M), ("reduced", 1 * M)]
    finally:
        player.cancel()
        await manager.close_all()
