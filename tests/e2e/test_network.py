"""The live view under bad network conditions, with Chromium in its own network namespace.

The browser reaches the app only across a veth link (tests/e2e/netns.py), where the tests cap the
rate (tbf), drop UDP at random or entirely (nftables) and delay datagrams (a user-space relay in
front of coturn, with the browser forced to relay-only ICE). The promises: WebRTC degrades by
quality, not by delay, and comes back when the network does; when UDP cannot pass at all MJPEG
shows instead; IPv4 and IPv6 both carry the media.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from scopelink.settings import ServeSettings
from tests.e2e.conftest import UI, ui_in_netns
from tests.e2e.netns import BrowserNetns, UdpDelayRelay
from tests.e2e.test_turn import (  # noqa: F401
    KEEP_PEER_CONNECTIONS,
    SELECTED_PAIR,
    TURNSERVER,
    Turn,
    turn,
)
from tests.e2e.test_webrtc import NEWER_FRAME, SHOWN_FRAME, playing, stamps_advance

#: Stamps shown over the next `ms` milliseconds: [frame, capture→display latency in ms].
LATENCIES = """(ms) => new Promise((resolve) => {
  const seen = [];
  const on = (event) => {
    const {stamp, shownAt} = event.detail;
    if (stamp) seen.push([stamp.frame, performance.timeOrigin + shownAt - stamp.emitMs]);
  };
  window.scopelink.transport.addEventListener('frame', on);
  setTimeout(() => {
    window.scopelink.transport.removeEventListener('frame', on);
    resolve(seen);
  }, ms);
})"""

#: Record every frame shown as [stamp's frame, RTP timestamp], for a failure's message.
WATCH_FRAMES = """() => {
  window.__frames = [];
  window.scopelink.transport.addEventListener('frame', (event) => {
    const {stamp, rtpTimestamp} = event.detail;
    window.__frames.push([stamp?.frame ?? null, rtpTimestamp]);
  });
}"""
LAST_FRAMES = "() => window.__frames.slice(-40)"

KIND = "() => window.scopelink.transport.kind"
#: Record each change of the active transport, with the stamp shown then.
WATCH_KINDS = """() => {
  window.__kinds = [window.scopelink.transport.kind];
  window.scopelink.transport.addEventListener('switch', (event) => {
    window.__kinds.push([event.detail.kind, event.detail.reason,
                         window.scopelink.readFrameStamp()?.frame ?? null]);
  });
  return window.__kinds;
}"""
FPS = 5.0


async def latencies(ui: UI, seconds: float) -> list[tuple[int, float]]:
    """The stamps shown over the next `seconds`, as (frame, latency ms)."""
    seen = await ui.page.evaluate(LATENCIES, int(seconds * 1000))
    return [(int(frame), float(ms)) for frame, ms in seen]


def median_ms(seen: list[tuple[int, float]]) -> float:
    return statistics.median(ms for _, ms in seen)


async def webrtc_peers(ui: UI) -> list[dict[str, Any]]:
    """The server's per-peer figures (GET …/webrtc/peers)."""
    async with httpx.AsyncClient(base_url=ui.app.base_url, timeout=10) as http:
        answer = await http.get("/api/telescopes/simulator/webrtc/peers")
        answer.raise_for_status()
        return answer.json()["peers"]


async def until_peer(
    ui: UI, condition: Callable[[dict[str, Any]], bool], timeout: float, log: list[str]
) -> dict[str, Any]:
    """Poll the peers API until the (single) peer meets `condition`; `log` keeps what was seen."""
    deadline = time.monotonic() + timeout
    while True:
        peers = await webrtc_peers(ui)
        log.append(" ".join(_figures(p) for p in peers))
        for peer in peers:
            if condition(peer):
                return peer
        assert time.monotonic() < deadline, "timed out; peers seen:\n" + "\n".join(log[-60:])
        await asyncio.sleep(1.0)


def _figures(peer: dict[str, Any]) -> str:
    remb = peer["remb_bps"]
    return (
        f"[{peer['tier']} {peer['bitrate_bps'] / 1000:.0f} kbit/s"
        f" remb={remb and round(remb / 1000)} lost={peer['fraction_lost']}"
        f" fps={peer['fps']:.1f} kf_req={peer['keyframe_requests']}"
        f" estimate={(peer.get('estimate_bps') or 0) // 1000}k/{peer.get('estimate_reason')}"
        f" tier_bitrate={(peer.get('tier_bitrate_bps') or 0) // 1000}k]"
    )


async def flowing_without_growing_delay(ui: UI, seconds: float, margin_ms: float) -> list[float]:
    """Frames keep coming with rising stamps for `seconds` (at least half the source's), and the
    latency of the last third of them is not above the first third's plus `margin_ms` (thirds by
    count, so one short stall of a busy machine does not decide). Returns the thirds' medians."""
    seen = await latencies(ui, seconds)
    frames = [frame for frame, _ in seen]
    assert len(seen) >= seconds * FPS * 0.5, f"too few frames shown in {seconds} s: {seen}"
    assert frames == sorted(frames), f"stamps went back: {frames}"
    third = len(seen) // 3
    medians = [median_ms(part) for part in (seen[:third], seen[third:-third], seen[-third:])]
    assert medians[2] <= medians[0] + margin_ms, f"the delay grows: medians {medians}, {seen}"
    return medians


async def selected_pair(ui: UI) -> dict[str, Any]:
    """The selected pair once the browser has one (getStats may lag the first frame a little)."""
    deadline = time.monotonic() + 5
    while (pair := await ui.page.evaluate(SELECTED_PAIR)) is None:
        assert time.monotonic() < deadline, "no connected peer connection with a selected pair"
        await asyncio.sleep(0.1)
    return pair


async def open_webrtc(ui: UI, query: str = "") -> None:
    await ui.page.add_init_script(KEEP_PEER_CONNECTIONS)
    await ui.open(query=query)
    await playing(ui, "WebRTC")
    await stamps_advance(ui)


async def test_with_udp_blocked_mjpeg_shows_and_webrtc_returns_when_udp_is_allowed(
    netns: BrowserNetns, netns_ui: UI
) -> None:
    ui = netns_ui
    netns.block_udp()  # ICE cannot pass; the page and MJPEG (HTTP over TCP) still load
    await ui.open()
    await expect(ui.by("live-state")).to_contain_text("MJPEG", timeout=15_000)
    await playing(ui, "MJPEG")
    assert await ui.page.evaluate("() => window.scopelink.transport.fellBack")
    shown = await ui.page.evaluate(SHOWN_FRAME)
    await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)

    netns.unblock_udp()
    # The page tries WebRTC again by itself (backoff of seconds, up to 30 s between tries).
    await ui.page.wait_for_function(f"{KIND} === 'webrtc'", timeout=45_000)
    await playing(ui, "WebRTC")
    await stamps_advance(ui)
    assert [p["state"] for p in await webrtc_peers(ui)] == ["connected"]


async def test_under_a_rate_cap_the_tier_drops_the_picture_flows_and_it_recovers(
    netns: BrowserNetns, netns_ui: UI
) -> None:
    ui = netns_ui
    cap_kbit = 750
    await open_webrtc(ui)
    log: list[str] = []
    # The cap comes during a session: after the browser's first REMB (~5 s in), as on a link
    # that gets busy, so the controller sees the estimate fall.
    before = await until_peer(ui, lambda p: p["remb_bps"] is not None, 15, log)
    assert before["tier"] == "full", before

    netns.rate_cap(cap_kbit)  # server → browser
    await until_peer(
        ui,
        lambda p: p["tier"] == "reduced" or (p["tier_bitrate_bps"] or 1e9) < cap_kbit * 1000,
        timeout=15,
        log=log,
    )
    # After a moment to settle on the lower rate, the picture keeps flowing over WebRTC and the
    # delay does not build up behind the cap.
    await latencies(ui, 3)
    medians = await flowing_without_growing_delay(ui, 9, margin_ms=250)
    assert max(medians) < 1000, f"latency under the cap: {medians}; peers:\n" + "\n".join(log)
    assert await ui.page.evaluate(KIND) == "webrtc"

    netns.lift_rate_cap()
    after = await until_peer(
        ui,
        lambda p: p["tier"] == "full" and p["bitrate_bps"] > cap_kbit * 1000,
        timeout=30,
        log=log,
    )
    assert after["id"] == before["id"], "the peer was replaced instead of recovering"
    await stamps_advance(ui)


async def test_with_random_loss_frames_keep_flowing_and_decoding(
    netns: BrowserNetns, netns_ui: UI
) -> None:
    ui = netns_ui
    await open_webrtc(ui)
    netns.loss(5)  # % of UDP datagrams, each way
    await ui.page.evaluate(WATCH_KINDS)
    await ui.page.evaluate(WATCH_FRAMES)
    seen = await latencies(ui, 8)
    frames = [frame for frame, _ in seen]
    # NACK retransmissions and keyframe requests (PLI) keep most frames decodable.
    assert len(frames) >= 8 * FPS * 0.5, f"{len(frames)} frames decoded in 8 s: {frames}"
    kinds = await ui.page.evaluate("() => window.__kinds")
    # Within one transport the stamps never go back. (Seen once in CI: 26 then 24. If the page
    # switched transports meanwhile, the new one's first frame may be older than the old one's
    # last; the switches are in the message.)
    # [frame, RTP timestamp] of the last frames shown: whether the server sent an older
    # picture (its RTP time goes back too) or the page showed one again.
    shown = await ui.page.evaluate(LAST_FRAMES)
    assert frames == sorted(frames), f"stamps went back: {frames}; transports: {kinds}; {shown}"
    assert max(ms for _, ms in seen) < 2000, seen
    try:
        await stamps_advance(ui)  # and it keeps going
    except AssertionError as exc:
        shown = await ui.page.evaluate(LAST_FRAMES)
        raise AssertionError(f"{exc}; last frames shown: {shown}") from exc
    [peer] = await webrtc_peers(ui)
    assert peer["state"] == "connected"
    assert await ui.page.evaluate(KIND) == "webrtc"


@pytest.mark.parametrize("blocked, used", [("ipv4", "ipv6"), ("ipv6", "ipv4")])
async def test_webrtc_plays_over_ipv4_and_over_ipv6(
    netns: BrowserNetns, netns_ui: UI, blocked: str, used: str
) -> None:
    ui = netns_ui
    netns.block_udp(blocked)
    await open_webrtc(ui)
    pair = await selected_pair(ui)
    # The server offers candidates of both families on the link; the other family is blocked.
    assert {netns.root_v4, netns.root_v6} <= set(pair["offered"]), pair
    expected = (netns.ns_v6, netns.root_v6) if used == "ipv6" else (netns.ns_v4, netns.root_v4)
    assert (pair["localAddress"], pair["remoteAddress"]) == expected, pair
    assert pair["bytesReceived"] > 10_000, pair
    assert not await ui.page.evaluate("() => window.scopelink.transport.fellBack")


@pytest.mark.skipif(not Path(TURNSERVER).exists(), reason="no coturn: apt-get install coturn")
async def test_with_added_delay_the_latency_rises_by_it_and_does_not_grow(
    netns: BrowserNetns,
    chromium: str,
    tmp_path: Path,
    turn: Turn,  # noqa: F811
) -> None:
    delay_ms = 100
    # Browser ⇄ relay (holds each datagram, both ways) ⇄ coturn ⇄ aiortc: with relay-only ICE in
    # the browser every media packet takes the relay.
    with UdpDelayRelay(netns.root_v4, ("127.0.0.1", turn.port)) as relay:
        settings = ServeSettings(
            simulator_fps=FPS,
            turn_urls=[f"turn:{netns.root_v4}:{relay.port}?transport=udp"],
            turn_secret=turn.secret,
        )
        async with ui_in_netns(netns, chromium, tmp_path, settings) as ui:
            await open_webrtc(ui, "?transport=webrtc&ice=relay")
            pair = await selected_pair(ui)
            assert pair["local"] == "relay", pair
            await latencies(ui, 2)  # past the start (first keyframes, jitter buffer)
            baseline = median_ms(await latencies(ui, 4))

            relay.delay_ms = delay_ms
            await latencies(ui, 2)  # the jitter buffer settles
            medians = await flowing_without_growing_delay(ui, 9, margin_ms=100)
            # Every frame now takes the relay's delay on its way, so none can be shown sooner
            # than that; and the delay adds no more than a few times itself. (Not "the median
            # rises by about the delay": Chromium's jitter buffer may shrink by as much as the
            # path's delay grows, seen once: 150 ms before, 150 ms after.)
            assert min(medians) >= delay_ms, (baseline, medians)
            assert statistics.median(medians) - baseline <= 3 * delay_ms, (baseline, medians)
            assert relay.forwarded > 1000 and not await ui.page.evaluate(
                "() => window.scopelink.transport.fellBack"
            )
