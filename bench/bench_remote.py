"""Click → first frame through the broker, in Chromium across home NATs: direct and relayed.

The issue's figure: a person on the broker's page clicks Connect; how long until the telescope's
picture is on their screen, when the media goes peer to peer and when it goes through TURN.
Target: direct p50 ≤ 500 ms, relayed p50 ≤ 1 s (a public robot-to-browser platform reports a
median of 761 ms).

Everything runs as real processes in network namespaces (tests/nat/topology.py,
tests/nat/browser.py): `scopelink broker` and coturn in `public`, `scopelink simulate` and
`scopelink proxy` behind one home router, Debian's Chromium behind the other, on the broker's
page. The page signs up and pairs the proxy by its code once; then, alternately for each path,
the page clicks Connect, waits for the first frame, watches 1.5 s more, reads which path the page
says (its status line: the candidate pair the video arrives on) and where the media went (the
public namespace's counters), clicks Disconnect and waits a second.

The two paths share one topology, one stack and one browser, and alternate session by session
(ABBA): between sessions both home routers' NAT rules are swapped (`NatTopology.set_nat`),
cone/cone for the direct path, symmetric/symmetric for the relayed one. Established flows (the
page's and the proxy's TCP connections to the broker) keep their conntrack entries; each new
peer connection's UDP flows meet the new rules. So both paths see the same machine load, and two
full stacks never compete for the two cores.

Times are on the page's clock (`performance.now()`): from the click event's `timeStamp` to the
first frame with a readable stamp (its `requestVideoFrameCallback` expected display time), with
the steps between from the page's own services (tests/nat/browser.py `MARKS`). Where the media
went is read twice from the public counters: until the page names a path (how the first frames
came), and over the next 1.5 s (the session's path, held against the page's status line then).

Run (as root): .venv/bin/python bench/bench_remote.py
    --runs N         independent runs (fresh topology, processes and browser each; default 2)
    --sessions N     sessions per path and run (default 20)
    --diagnostic N   also N sessions per path in a second Chromium whose host candidates are not
                     hidden behind mDNS names (default 10; 0: none)
    --asleep N       then N direct sessions per run that each find the proxy asleep
                     (5 s after the last; default 10)
    --fps F          the simulator's preview rate (default 10)
    --no-write       print only; leave docs/benchmarks.md alone
    --save FILE      also keep every session's figures (JSON); --load FILE reports them again
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.async_api import expect
from tests.nat.browser import (
    BROKER_URL,
    MARKS,
    PASSWORD,
    BrokerPage,
    RemoteStack,
    broker_page,
    chromium,
    remote_stack,
    signed_in_and_paired,
)
from tests.nat.topology import NatMode, NatTopology, Traffic, available

from bench.report import cpu_model, mark, percentile, write_section

TARGET_MS = {"direct": 500.0, "relayed": 1000.0}
MODES: dict[str, NatMode] = {"direct": "cone", "relayed": "symmetric"}
#: Between a Disconnect and the next Connect.
PAUSE_S = 1.0
#: How long the video is watched once the page names its path: where the media goes then is the
#: session's path (the first frames may come another way, before the browser's last nomination).
STEADY_S = 1.5
#: The pause before a session that finds the proxy asleep: longer than the frame pipeline's
#: linger (`FramePipeline(linger_s=2.0)`), after which the proxy stops the telescope's stream.
ASLEEP_PAUSE_S = 5.0
#: The steps of a connection, in order: (mark, what it is).
STEPS = [
    ("signaling:open", "signaling socket open (broker reached)"),
    ("signaling:hello", "the proxy's hello"),
    ("ws:out:offer", "offer sent"),
    ("ws:in:answer", "answer"),
    ("connector:connected", "ICE + DTLS connected"),
    ("remote:connected", "data channel's welcome"),
    ("frame", "first frame shown"),
]
UNHIDE = "--disable-features=WebRtcHideLocalIpsWithMdns"
#: What this benchmark measured before, kept for comparison.
EARLIER = [
    "**The same code, two earlier sessions.** 2026-12-05 05:51 and 05:55 UTC (commit "
    "5d0f564, without the asleep sessions): direct p50 219 / 201 ms (p90 258 / 242 ms), "
    "relayed 256 / 265 ms (p90 298 / 300 ms), 20 of 20 sessions each way in every run; the "
    "page named the media's path in all 80 sessions; 8 began relayed and moved to the direct "
    "pair; each run's first session (a fresh proxy and simulator waking) 1810 / 1243 ms.",
    "2026-12-05 04:51 and 04:55 UTC (the changes committed as fb184d6 to 0dc0ded, without "
    "the asleep sessions): direct p50 204 / 207 ms (p90 217 / 276 ms), relayed 243 / 233 ms "
    "(p90 283 / 293 ms), 20 of 20 sessions each way in every run; answer → connected ~70 ms "
    "direct, ~130 ms relayed; the page named the media's path in all 80 sessions; 9 sessions "
    "began relayed and moved to the direct pair.",
    "**Earlier** (2026-12-05 04:01 and 04:04 UTC, commit a65e234, the same options, before "
    "webrtc/aioice_patches.py): direct p50 703 / 702 ms (9 and 15 of 20 sessions direct), "
    "relayed 261 / 254 ms, answer → connected ~545 ms direct: the proxy completed a direct "
    "pair only at its 500 ms STUN retransmission. In 16 of 80 sessions the page said direct "
    "while the video went through the relay: the proxy kept the relay pair Chromium "
    "nominated first. That run read the page's path from Chromium's selected pair, and "
    "where the media went over the whole session.",
    "**Before that** (2026-12-05 03:29 UTC, commit 9515af9, the same options, before commit "
    'a65e234 "An mDNS candidate no longer holds up the candidates trickled after it"): '
    "direct p50 1259 / 1282 ms, relayed p50 1282 / 1264 ms (two runs, 20 sessions each), "
    "answer → connected ~1.08 s on both paths; the proxy logged an unresolved mDNS "
    "candidate in 80 of 80 sessions. With host candidates unhidden (the diagnostic): direct "
    "729 / 749 ms, relayed 303 / 354 ms. That run read the path from the page only, not from "
    "the counters.",
]


@dataclass
class Session:
    path: str
    took: str  # "direct" or "relayed": where the video went once the page named a path
    said: str  # "direct" or "relayed": what the page's status line said then
    marks: dict[str, float]  # ms after the click
    mdns_waits: int  # "could not be resolved" lines the proxy logged for this session
    began: str = ""  # "direct" or "relayed": where the video went until the page named a path

    @property
    def first_frame_ms(self) -> float:
        return self.marks["frame"]

    def __str__(self) -> str:
        m = self.marks
        ice = m.get("connector:connected", 0) - m.get("ws:in:answer", 0)
        return (
            f"{self.path:7}: first frame {self.first_frame_ms:6.0f} ms, media {self.began} "
            f"then {self.took}, page said {self.said}, "
            f"answer → connected {ice:5.0f} ms, proxy mDNS waits {self.mdns_waits}"
        )


@dataclass
class Series:
    path: str
    browser: str  # "default" or "unhidden"
    sessions: list[Session] = field(default_factory=list)

    def times(self) -> list[float]:
        return [s.first_frame_ms for s in self.sessions]

    def stats(self) -> dict[str, float]:
        values = self.times()
        return {
            "p50": percentile(values, 50),
            "p90": percentile(values, 90),
            "min": min(values, default=float("nan")),
            "max": max(values, default=float("nan")),
        }

    def that_way(self) -> list[float]:
        """First-frame times of the sessions whose media went the path's way."""
        return [s.first_frame_ms for s in self.sessions if s.took == self.path]

    def took_expected(self) -> int:
        return sum(1 for s in self.sessions if s.took == self.path)

    def said_expected(self) -> int:
        return sum(1 for s in self.sessions if s.said == self.path)

    def step_median(self, key: str) -> float:
        """The median time of step `key`, over the sessions whose media went the path's way."""
        values = [s.marks[key] for s in self.sessions if key in s.marks and s.took == self.path]
        return statistics.median(values) if values else float("nan")


async def one_session(ui: BrokerPage, stack: RemoteStack, net: NatTopology, path: str) -> Session:
    """Set both routers for `path`, click Connect, wait for the first frame and the path, then
    Disconnect."""
    for site in ("a", "b"):
        net.set_nat(site, MODES[path])  # type: ignore[arg-type]
    proxy = stack.outputs["proxy"]
    logged = len(proxy.lines)
    before = net.traffic()
    await ui.clear_marks()
    await ui.telescope().get_by_test_id("remote-connect").click()
    await ui.wait_first_frame(timeout_ms=60_000)
    # The path, once the page has read it from getStats (once a second).
    known = "() => ['direct', 'relay'].includes(window.scopelink.transport.path)"
    await ui.page.wait_for_function(known, timeout=10_000)
    opening = net.traffic()
    await asyncio.sleep(STEADY_S)
    steady = net.traffic() - opening
    said = await ui.page.evaluate("() => window.scopelink.transport.path")
    raw = await ui.marks()
    await ui.disconnect()
    click = raw["click:remote-connect"]
    marks = {key: t - click for key, t in raw.items() if not key.startswith("click:")}
    waits = sum("could not be resolved" in line for line in proxy.lines[logged:])
    await asyncio.sleep(PAUSE_S)
    return Session(
        path,
        way(steady),
        "relayed" if said == "relay" else "direct",
        marks,
        waits,
        began=way(opening - before),
    )


def way(traffic: Traffic) -> str:
    """Where the media went by the public counters: more through coturn, or home to home."""
    relayed = traffic.between("a", "turn") + traffic.between("b", "turn") > traffic.direct()
    return "relayed" if relayed else "direct"


@contextlib.asynccontextmanager
async def page_in(
    net: NatTopology, tmp: Path, stack: RemoteStack, extra: list[str], *, new_account: bool
) -> AsyncIterator[tuple[BrokerPage, str]]:
    """A Chromium in the browser's home on the broker's page, signed in (and the proxy paired,
    with `new_account`); and its version."""
    async with chromium(net, tmp, stack.spki, extra_args=extra) as browser:
        url = BROKER_URL + "/" + ("#pair" if new_account else "")
        async with broker_page(browser, url) as ui:
            if new_account:
                await signed_in_and_paired(ui, stack)
            else:
                await sign_in(ui)
            yield ui, browser.version


async def sign_in(ui: BrokerPage) -> None:
    """Sign in to the account the first page made; the telescope is listed online."""
    await ui.by("signin-name").fill("ada")
    await ui.by("signin-password").fill(PASSWORD)
    await ui.by("sign-in").click()
    facts = ui.telescope().get_by_test_id("remote-telescope-facts")
    await expect(facts).to_have_text("owner · online", timeout=30_000)
    await ui.page.evaluate(MARKS)


async def one_run(
    number: int, sessions: int, diagnostic: int, fps: float, asleep: int
) -> tuple[list[Series], dict[str, Any]]:
    """One run: a fresh topology, processes and browser(s); ABBA order over the paths; then
    `asleep` direct sessions that each find the proxy asleep (kept in `info["asleep"]`)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-remote-{number}-"))
    for browser in ("default", "unhidden"):
        (tmp / browser).mkdir()
    series = {
        (path, browser): Series(path, browser)
        for browser in ("default", "unhidden")
        for path in ("direct", "relayed")
    }
    info: dict[str, Any] = {"load_before": os.getloadavg(), "asleep": []}
    started = time.monotonic()
    try:
        async with NatTopology("cone", "cone") as net, remote_stack(net, tmp, fps=fps) as stack:
            async with contextlib.AsyncExitStack() as pages:
                default, info["chromium"] = await pages.enter_async_context(
                    page_in(net, tmp / "default", stack, [], new_account=True)
                )
                unhidden = None
                if diagnostic:
                    unhidden, _ = await pages.enter_async_context(
                        page_in(net, tmp / "unhidden", stack, [UNHIDE], new_account=False)
                    )
                rounds = max(sessions, diagnostic)
                for n in range(rounds):
                    order = ("direct", "relayed") if n % 2 == 0 else ("relayed", "direct")
                    for path in order:
                        for browser, ui, count in (
                            ("default", default, sessions),
                            ("unhidden", unhidden, diagnostic),
                        ):
                            if ui is None or n >= count:
                                continue
                            session = await one_session(ui, stack, net, path)
                            series[(path, browser)].sessions.append(session)
                            print(f"run {number} {browser:8} #{n + 1:2} {session}", flush=True)
                for n in range(asleep):
                    await asyncio.sleep(ASLEEP_PAUSE_S - PAUSE_S)
                    session = await one_session(default, stack, net, "direct")
                    info["asleep"].append(dataclasses.asdict(session))
                    print(f"run {number} asleep   #{n + 1:2} {session}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = os.getloadavg()
    info["seconds"] = time.monotonic() - started
    info["when"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    info["code"] = code_state()
    return [s for s in series.values() if s.sessions], info


def code_state() -> str:
    """The commit measured, and any uncommitted change to the product (src/) beside it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    return f"commit {commit}" + (
        f" with uncommitted changes to {', '.join(changed)}" if changed else ""
    )


def fmt(ms: float) -> str:
    return f"{ms:.0f}"


def gap(sessions: list[Session], start: str, end: str) -> float:
    """The median time from mark `start` to mark `end` over `sessions`."""
    values = [
        x.marks[end] - x.marks[start] for x in sessions if start in x.marks and end in x.marks
    ]
    return statistics.median(values) if values else float("nan")


def result_rows(runs: list[tuple[list[Series], dict[str, Any]]], browser: str) -> list[str]:
    rows = []
    for number, (series, info) in enumerate(runs, 1):
        for s in series:
            if s.browser != browser:
                continue
            st = s.stats()
            target = TARGET_MS[s.path]
            way = s.that_way()
            way_sessions = [x for x in s.sessions if x.took == s.path]
            p50_way = percentile(way, 50)
            verdict = (
                f"≤ {target:.0f} ms | {mark(p50_way <= target)} | " if browser == "default" else ""
            )
            rows.append(
                f"| {number} | {s.path} | {len(s.sessions)} ({s.took_expected()}; "
                f"{s.said_expected()}) | {fmt(st['p50'])} | {fmt(st['p90'])} | "
                f"{fmt(st['min'])} | {fmt(st['max'])} | **{fmt(p50_way)}** "
                f"({len(way)}) | {fmt(percentile(way, 90))} | {verdict}"
                f"{fmt(gap(way_sessions, 'ws:in:answer', 'connector:connected'))} | "
                f"{info['load_before'][0]:.2f} → {info['load_after'][0]:.2f} |"
            )
    return rows


def explain(pooled: dict[tuple[str, str], list[Session]]) -> list[str]:
    """Where the time goes, in words, from the figures."""
    shipped = [x for (browser, _), xs in pooled.items() if browser == "default" for x in xs]
    ways = {
        path: [x for x in pooled.get(("default", path), []) if x.took == path]
        for path in ("direct", "relayed")
    }
    ice = {path: gap(xs, "ws:in:answer", "connector:connected") for path, xs in ways.items()}
    answer = statistics.median(x.marks["ws:in:answer"] for x in shipped)
    logged = sum(1 for x in shipped if x.mdns_waits)
    said = [
        f"**Where the time goes.** Up to the answer the path is quick ({fmt(answer)} ms, "
        "median: the signaling socket's TLS, the broker's checks, the conversation opened on "
        "the proxy's link, the grant checked, the proxy's peer made and its answer). Then ICE: "
        f"answer → connected {fmt(ice['direct'])} ms in the sessions whose media went direct, "
        f"{fmt(ice['relayed'])} ms relayed (medians). After connected, "
        f"{fmt(gap(shipped, 'connector:connected', 'frame'))} ms (median) to the first frame: "
        "the data channels' welcome, the simulator's next frame, the proxy's encoder, "
        "Chromium's decoder and display.",
        "Chromium names its host candidates `<uuid>.local` (mDNS) unless the page has camera "
        "or microphone access, which this page never asks for, and the proxy cannot resolve "
        "such a name from another network (aioice gives up after 1 s"
        + (
            f"; the proxy logged that in {logged} of the {len(shipped)} sessions while they "
            "were measured)."
            if logged
            else ")."
        ),
    ]
    if ice["relayed"] > 700:
        said.append(
            "Here the proxy added the browser's trickled candidates one at a time, in order "
            "(`SignalingConversation._trickle` in `src/scopelink/webrtc/signaling.py` awaited "
            "each lookup): the browser's server-reflexive and relay candidates, trickled right "
            "after its host candidate, reached the proxy's ICE a second late, on either path."
        )
    else:
        said.append(
            "The proxy looks such a name up beside the browser's other candidates, so the "
            "lookup holds nothing up."
        )
    if ice["direct"] > 300:
        said.append(
            "The direct path's half second is the proxy's STUN retransmission: each home "
            "router drops the other side's first check when nothing has gone out to that "
            "address yet, and the proxy's aioice (the controlled agent) completes the pair "
            "only when it sends its check again after the 500 ms RTO; docs/network.md, "
            '"Why these connect times".'
        )
    else:
        said.append(
            "Each home router drops the other side's first check, as nothing has gone out to "
            "that address yet; the browser's check then opens the way, and the proxy answers "
            "it by sending its own check again at once (RFC 8445 section 7.3.1.4; aioice "
            "waited for its 500 ms retransmission, `webrtc/aioice_patches.py`), so the dropped "
            "check costs a round trip, not half a second."
        )
    moved = collections.Counter((x.began, x.took) for x in shipped if x.began and x.began != x.took)
    if moved:
        kinds = ", ".join(f"{n} {a} then {b}" for (a, b), n in moved.items())
        said.append(
            f"In {sum(moved.values())} of the {len(shipped)} sessions the first frames came "
            f"another way than the video went afterwards ({kinds}): Chromium, the controlling "
            "agent, may nominate its relay pair first (it answers at once) and the direct pair "
            "once that pair's check succeeds, and the proxy follows the later nomination "
            "(`webrtc/aioice_patches.py`). A session counts by where its video went after the "
            "page named a path."
        )
    wrong = [x for x in shipped if x.said != x.took]
    if wrong:
        kinds = ", ".join(
            f"{n} said {said_} while the media went {took}"
            for (said_, took), n in collections.Counter((x.said, x.took) for x in wrong).items()
        )
        said.append(
            f"**The page's path was not the media's** in {len(wrong)} of the {len(shipped)} "
            f"sessions ({kinds}), {STEADY_S:g} s after the page first named a path."
        )
    else:
        said.append(
            f"The page's status line named the media's path in all {len(shipped)} sessions."
        )
    return [" ".join(said)]


def unhidden_verdicts(pooled: dict[tuple[str, str], list[Session]]) -> list[str]:
    """What the diagnostic says, from its figures."""
    said = []
    for path in ("direct", "relayed"):
        sessions = pooled.get(("unhidden", path))
        if not sessions:
            continue
        p50 = percentile([x.first_frame_ms for x in sessions], 50)
        ice = gap(sessions, "ws:in:answer", "connector:connected")
        meets = "meets" if p50 <= TARGET_MS[path] else "misses"
        said.append(
            f"With host candidates unhidden the {path} path {meets} its target (p50 {fmt(p50)} "
            f"ms over the runs' {len(sessions)} sessions; answer → connected {fmt(ice)} ms)."
        )
    return [" ".join(said)] if said else []


def asleep_paragraph(runs: list[tuple[list[Series], dict[str, Any]]]) -> list[str]:
    """The sessions that found the proxy asleep, in words (none: nothing)."""
    per_run = [[Session(**x) for x in info.get("asleep", [])] for _, info in runs]
    pooled = [x for xs in per_run for x in xs]
    if not pooled:
        return []
    times = [x.first_frame_ms for x in pooled]
    p50s = " / ".join(fmt(percentile([x.first_frame_ms for x in xs], 50)) for xs in per_run)
    firsts = " / ".join(
        fmt(s.sessions[0].first_frame_ms)
        for series, _ in runs
        for s in series
        if s.browser == "default" and s.path == "direct" and s.sessions
    )
    return [
        "",
        "**The proxy asleep.** The proxy sleeps while nobody watches (no telescope stream, no "
        "encoder); its stream stops 2 s after the last viewer leaves, so the sessions above, "
        f"1 s apart, find it awake. Then {len(per_run[0])} more direct sessions per run, each "
        f"{ASLEEP_PAUSE_S:g} s after the last: first frame p50 {p50s} ms (pooled p50 "
        f"{fmt(percentile(times, 50))}, p90 {fmt(percentile(times, 90))} ms), ICE + DTLS "
        f"connected {fmt(statistics.median(x.marks['connector:connected'] for x in pooled))} "
        "ms after the click and "
        f"the first frame {fmt(gap(pooled, 'connector:connected', 'frame'))} ms later "
        "(medians): the proxy opens the telescope's image stream, the simulator sends its next "
        "picture, the encoder makes its first key frame. A run's first session above is the "
        f"first wake of a fresh proxy and simulator: {firsts} ms.",
    ]


def report(runs: list[tuple[list[Series], dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    import aioice
    import aiortc

    command = (
        "sudo .venv/bin/python bench/bench_remote.py"
        f" --runs {args.runs} --sessions {args.sessions} --diagnostic {args.diagnostic}"
        f" --asleep {args.asleep} --fps {args.fps:g}"
    )
    when = " and ".join(dict.fromkeys(info["when"] for _, info in runs))
    code = " / ".join(dict.fromkeys(info["code"] for _, info in runs))
    pooled: dict[tuple[str, str], list[Session]] = {}
    for series, _ in runs:
        for s in series:
            pooled.setdefault((s.browser, s.path), []).extend(s.sessions)
    lines = [
        "## Click → first frame through the broker, in Chromium across home NATs",
        "",
        f"Reproduce (as root): `{command}`  ",
        f"Runs: {when}, {code}, on {cpu_model()}, Linux {platform.release()}, Python "
        f"{platform.python_version()}, Chromium {runs[0][1].get('chromium', '?')} (Debian, "
        f"headless), aiortc {aiortc.__version__}, aioice {aioice.__version__}, coturn "
        "(Debian). Every process on this one machine, in network namespaces: the links have "
        "no delay, so these are the software's times, not a network's. The load average is "
        "the machine's (other work may have run beside).",
        "",
        "Chromium on the broker's page in the browser's home, `scopelink proxy` and "
        f"`scopelink simulate --fps {args.fps:g}` behind the other home router, `scopelink "
        "broker` and coturn (UDP, TCP and TLS URLs) in the public namespace "
        "(tests/nat/browser.py). Signed in once, then for each path: click Connect, wait for "
        "the first frame and for the page to name its path, watch "
        f"{STEADY_S:g} s more, read the path the page says then (the candidate pair the video "
        "arrives on) and where the media went (the public namespace's counters: until the "
        f"page named a path, and over the {STEADY_S:g} s, the session's path), click "
        "Disconnect, wait "
        f"{PAUSE_S:g} s. The time is the page's clock from the click event to the first frame "
        "with a stamp on screen (`requestVideoFrameCallback`'s expected display time). "
        "Direct: both home routers cone NATs; relayed: both symmetric, so only TURN (coturn) "
        "joins them. The two paths alternate session by session (ABBA) on one topology, one "
        "stack and one browser: the routers' NAT rules are swapped between sessions, so both "
        "paths see the same machine load and no two stacks compete for the two cores. Each "
        "run is a fresh topology, processes and browser.",
        "",
        'p50, p90, min and max are over every session of the topology; "media that way" '
        "only over those whose video went the path's way by the counters once the page named "
        "a path (a direct session can end up relayed), which the target is held to.",
        "",
        "| Run | Path | Sessions (media that way; page said so) | p50 ms | p90 ms | min ms | "
        "max ms | p50 ms, media that way (n) | p90 ms, media that way | Target p50 | Met | "
        "answer → connected, median ms, media that way | Load avg before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *result_rows(runs, "default"),
        "",
        "The steps, from the page's own services (the connector's signaling reports and state, "
        "the remote link's state, the transport's frames) and, for the offer and the answer, "
        "a wrapper of the page's WebSocket; medians over the sessions whose media went the "
        "path's way, ms after the click:",
        "",
        "| Run | Path | " + " | ".join(label for _, label in STEPS) + " |",
        "|---|---|" + "---|" * len(STEPS),
    ]
    for number, (series, _) in enumerate(runs, 1):
        for s in series:
            if s.browser == "default":
                cells = " | ".join(fmt(s.step_median(key)) for key, _ in STEPS)
                lines.append(f"| {number} | {s.path} | {cells} |")
    lines += ["", *explain(pooled), *asleep_paragraph(runs)]
    if any(browser == "unhidden" for browser, _ in pooled):
        lines += [
            "",
            "A diagnostic (not what users get): the same sessions in a "
            f"second Chromium started with `{UNHIDE}` (its host candidates as plain private "
            "addresses, as after a camera permission; the proxy checks them in vain, without "
            "waiting on them), alternating with those above in the same runs:",
            "",
            "| Run | Path | Sessions (media that way; page said so) | p50 ms | p90 ms | min ms | "
            "max ms | p50 ms, media that way (n) | p90 ms, media that way | "
            "answer → connected, median ms, media that way | Load avg before → after |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *result_rows(runs, "unhidden"),
            "",
            *unhidden_verdicts(pooled),
        ]
    for earlier in EARLIER:
        lines += ["", earlier]
    return lines


def dump(run: tuple[list[Series], dict[str, Any]]) -> dict[str, Any]:
    series, info = run
    return {"series": [dataclasses.asdict(s) for s in series], "info": info}


def load(saved: dict[str, Any]) -> tuple[list[Series], dict[str, Any]]:
    series = [
        Series(s["path"], s["browser"], [Session(**x) for x in s["sessions"]])
        for s in saved["series"]
    ]
    return series, saved["info"]


async def measure(args: argparse.Namespace) -> list[tuple[list[Series], dict[str, Any]]]:
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(await one_run(number, args.sessions, args.diagnostic, args.fps, args.asleep))
        series, info = runs[-1]
        for s in series:
            st = s.stats()
            print(
                f"run {number}: {s.browser} {s.path}: p50 {st['p50']:.0f} ms, p90 "
                f"{st['p90']:.0f} ms, min {st['min']:.0f}, max {st['max']:.0f} "
                f"(media {s.took_expected()}/{len(s.sessions)} that way, the page said so "
                f"{s.said_expected()}/{len(s.sessions)})",
                flush=True,
            )
        print(f"run {number} took {info['seconds']:.0f} s", flush=True)
    return runs


def main(args: argparse.Namespace) -> None:
    if args.load:
        runs = [load(run) for run in json.loads(Path(args.load).read_text())]
    else:
        why = available()
        if why:
            raise SystemExit(f"bench_remote: {why}")
        runs = asyncio.run(measure(args))
        if args.save:
            Path(args.save).write_text(json.dumps([dump(run) for run in runs], indent=1))
    lines = report(runs, args)
    print("\n".join(lines))
    if not args.no_write:
        write_section("remote", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--diagnostic", type=int, default=10)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--asleep", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--save", help="also write the sessions' figures to this JSON file")
    parser.add_argument(
        "--load", help="no measuring: the report of a --save file (give the same options)"
    )
    main(parser.parse_args())
