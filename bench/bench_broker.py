"""The broker under load: 1,000 simulated proxies holding their links, then 100 connection
set-ups a second, on one instance; its CPU and memory (the issue's figure).

One broker instance runs in a process of its own (`bench/broker_load.py broker`): the embedded
default store (SQLite in a temporary state directory), plain HTTP on loopback, `heartbeat_s`
15 s (the default), uvicorn's defaults as `scopelink broker` has them (a WebSocket ping every
20 s per connection, no per-message compression), and the rate limits raised so that the load is not
refused (every set-up is one account from one address). Its CPU time (utime + stime of all its
threads) and memory (VmRSS, VmHWM) are read from /proc/<pid>.

The store is seeded directly before the broker starts: one owner with an API token, and one
telescope per simulated proxy, each bound to its own Ed25519 key (`pair_telescope`).

This process is the load generator: the simulated proxies and browsers, on one event loop
(`bench/broker_load.py`). By default the broker is pinned to CPU 0 and the load generator to
CPU 1, so that the two do not compete on a 2-core machine (other processes still may: the
rest of the machine's CPU use is measured beside them, from /proc/stat).

1. **Links up.** Every proxy dials `/api/proxy/link` (at most `--dial-concurrency` handshakes
   at once), signs the challenge with its key and registers: the time from the first dial to
   the last `registered`, and the broker's RSS before and with the links held.
2. **Idle.** The links are held for `--idle` seconds, each proxy sending a `ping` every
   `heartbeat_s` as the real proxy does: the broker's CPU over that window.
3. **Set-ups.** `--rate` browser set-ups a second for `--seconds`, started on schedule
   whatever the earlier ones are doing (open loop), spread over the telescopes (shuffled, in
   turn): the browser's signaling WebSocket `/api/telescopes/{id}/signaling?token=…` opened,
   the broker checks the token and the role, signs a grant, records the connection and sends
   `open` over the proxy's link; the proxy checks the grant (`GrantVerifier`, as the real
   proxy does) and relays the signaling `hello`; the browser receives it and closes its
   socket; the broker records the end and tells the proxy (`end`), which held the
   conversation until then. Latency: the browser starting to open its socket → the `hello`
   received. Then the broker's `connections` rows are counted.

Run: .venv/bin/python bench/bench_broker.py [--runs 2] [--proxies 1000] [--idle 60]
         [--rate 100] [--seconds 20] [--dial-concurrency 100] [--no-pin] [--no-write]
Not written to docs/benchmarks.md: --profile (cProfile in the broker during the set-ups, its
time by package and its top functions printed), and the experiments --deflate (proxies
offering permessage-deflate) and --gc-freeze (`gc.freeze()` in the broker once it serves).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broker_load import (
    ProxyFleet,
    SetUp,
    cpu_seconds,
    machine_cpu,
    memory_kib,
    seed,
    set_up,
    store_counts,
)
from bench.report import cpu_model, percentile, write_section

HERE = Path(__file__).resolve().parent
#: The issue's figure.
TARGET_PROXIES = 1000
TARGET_RATE = 100.0
#: Seconds after the links are up before the idle window (the last links' first exchanges).
SETTLE_S = 5.0


def _self_cpu() -> float:
    times = os.times()
    return times.user + times.system


class Broker:
    """The broker's process."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.port = port
        self.log = log

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return memory_kib(self.pid)["VmRSS"] / 1024

    def hwm_mib(self) -> float:
        return memory_kib(self.pid)["VmHWM"] / 1024


class Meter:
    """CPU over a window, in share of one core: the broker's, this load generator's, and the
    rest of the machine's (other processes, interrupts); and the hypervisor's steal."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.began = time.perf_counter()
        self.wall = time.time()
        self.cpu = (broker.cpu(), _self_cpu(), *machine_cpu())

    def read(self) -> dict[str, float]:
        seconds = time.perf_counter() - self.began
        broker, me, busy, steal = (
            b - a
            for a, b in zip(self.cpu, (self.broker.cpu(), _self_cpu(), *machine_cpu()), strict=True)
        )
        return {
            "s": seconds,
            "broker": broker / seconds,
            "self": me / seconds,
            "rest": max(0.0, busy - broker - me) / seconds,
            "steal": steal / seconds,
            "from": self.wall,
            "to": time.time(),
        }


def gc_in(passes: list[list[float]], window: dict[str, float]) -> dict[str, Any]:
    """The broker's collector in a window: full (generation 2) passes, the longest of any
    generation (wall clock and CPU time)."""
    inside = [p for p in passes if window["from"] <= p[0] <= window["to"]]
    longest = max(inside, key=lambda p: p[2], default=None)
    return {
        "full": sum(1 for p in inside if p[1] == 2),
        "longest_wall": longest[2] if longest else 0.0,
        "longest_cpu": longest[3] if longest else 0.0,
        "longest_gen": longest[1] if longest else None,
        "longest_collected": longest[4] if longest else 0,
    }


async def start_broker(
    state: Path, args: argparse.Namespace, profile: Path | None, log: Path, gc_log: Path
) -> Broker:
    command = [sys.executable, str(HERE / "broker_load.py"), "broker", "--state", str(state)]
    command += ["--gc-log", str(gc_log)]
    if args.pin:
        command += ["--core", "0"]
    if profile is not None:
        command += ["--profile", str(profile)]
    if args.gc_freeze:
        command += ["--gc-freeze"]
    with log.open("wb") as errors:
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=errors
        )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    if not line.startswith("READY "):
        raise RuntimeError(f"the broker did not start: {line!r}; see {log}")
    return Broker(proc, int(line.split()[1]), log)


async def stop_broker(broker: Broker) -> None:
    if broker.proc.returncode is None:
        broker.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(broker.proc.wait(), 30)
        except TimeoutError:
            broker.proc.kill()
            await broker.proc.wait()


def log_problems(log: Path) -> collections.Counter[str]:
    """The broker's warnings, errors and tracebacks, by first line (numbers blanked)."""
    found: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        if any(word in line for word in ("WARNING", "ERROR", "Traceback", "Exception")):
            found["".join("#" if c.isdigit() else c for c in line)[:140]] += 1
    return found


async def drive(
    broker: Broker, targets: list[str], token: str, rate: float, seconds: float
) -> tuple[list[SetUp], float, float]:
    """`rate` set-ups a second for `seconds`, on schedule; their results, the window's start
    and end (perf_counter)."""
    count = round(rate * seconds)
    start = time.perf_counter() + 0.1
    tasks: list[asyncio.Task[SetUp]] = []
    for n in range(count):
        at = start + n / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        telescope = targets[n % len(targets)]
        url = f"{broker.ws}/api/telescopes/{telescope}/signaling?token={token}"
        tasks.append(asyncio.create_task(set_up(url, at)))
    results = list(await asyncio.gather(*tasks))
    return results, start, time.perf_counter()


async def sample_rss(broker: Broker, into: list[float], every_s: float = 0.5) -> None:
    while True:
        into.append(broker.rss_mib())
        await asyncio.sleep(every_s)


async def one_run(args: argparse.Namespace, number: int) -> dict[str, Any]:
    out: dict[str, Any] = {"run": number}
    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp:
        state = Path(tmp) / "broker"
        state.mkdir(mode=0o700)
        began = time.perf_counter()
        seeded = await seed(state, args.proxies)
        out["seed_s"] = time.perf_counter() - began
        print(
            f"run {number}: seeded {args.proxies} telescopes in {out['seed_s']:.1f} s", flush=True
        )
        profile = Path(tmp) / "broker.prof" if args.profile else None
        log = Path(tmp) / "broker.log"
        gc_log = Path(tmp) / "gc.json"
        broker = await start_broker(state, args, profile, log, gc_log)
        fleet: ProxyFleet | None = None
        try:
            async with httpx.AsyncClient(base_url=broker.http, timeout=10) as http:
                broker_key = (await http.get("/api/broker")).json()["public_key"]
            await asyncio.sleep(1.0)
            out["rss_start"] = broker.rss_mib()
            print(f"run {number}: broker pid {broker.pid}, RSS {out['rss_start']:.1f} MiB")

            # 1. links up
            fleet = ProxyFleet(
                f"{broker.ws}/api/proxy/link",
                seeded.telescopes,
                broker_key,
                args.dial_concurrency,
                deflate=args.deflate,
            )
            meter = Meter(broker)
            fleet.start()
            await fleet.all_up(180)
            up = out["up"] = meter.read()
            out["up_s"] = up["s"]
            out["up_rate"] = args.proxies / out["up_s"]
            out["up_cpu"] = up["broker"]
            out["up_self_cpu"] = up["self"]
            out["reg_p50"] = statistics.median(fleet.stats.registrations) * 1000
            out["reg_p95"] = percentile(fleet.stats.registrations, 95) * 1000
            out["dial_failures"] = dict(fleet.stats.dial_failures)
            print(
                f"run {number}: {args.proxies} links up in {out['up_s']:.2f} s "
                f"({out['up_rate']:.0f}/s; each p50 {out['reg_p50']:.0f} ms, p95 "
                f"{out['reg_p95']:.0f} ms), broker CPU {out['up_cpu']:.0%}, load generator "
                f"{out['up_self_cpu']:.0%}, dial failures {out['dial_failures'] or 0}",
                flush=True,
            )
            await asyncio.sleep(SETTLE_S)
            broker.proc.send_signal(signal.SIGHUP)  # the broker counts its objects
            await asyncio.sleep(0.5)
            out["rss_links"] = broker.rss_mib()
            out["per_link_kib"] = (out["rss_links"] - out["rss_start"]) * 1024 / args.proxies
            print(
                f"run {number}: RSS with {args.proxies} links {out['rss_links']:.1f} MiB "
                f"({out['per_link_kib']:.0f} KiB a link)",
                flush=True,
            )

            # 2. idle
            stats = fleet.stats
            meter = Meter(broker)
            pings0, pongs0 = stats.pings, stats.pongs
            await asyncio.sleep(args.idle)
            idle = out["idle"] = meter.read()
            window = out["idle_s"] = idle["s"]
            out["idle_cpu"] = idle["broker"]
            out["idle_self_cpu"] = idle["self"]
            out["idle_pings"] = stats.pings - pings0
            out["idle_pongs"] = stats.pongs - pongs0
            out["rss_idle"] = broker.rss_mib()
            out["links_after_idle"] = fleet.up
            print(
                f"run {number}: idle {window:.0f} s with {fleet.up} links: broker CPU "
                f"{out['idle_cpu']:.2%} of a core, {out['idle_pings']} pings / "
                f"{out['idle_pongs']} pongs, RSS {out['rss_idle']:.1f} MiB; load generator "
                f"{out['idle_self_cpu']:.2%}, rest of the machine {idle['rest']:.0%}",
                flush=True,
            )

            # 3. set-ups
            targets = [telescope_id for telescope_id, _ in seeded.telescopes]
            random.Random(number).shuffle(targets)
            rss: list[float] = []
            sampler = asyncio.create_task(sample_rss(broker, rss))
            if profile is not None:
                broker.proc.send_signal(signal.SIGUSR1)
            meter = Meter(broker)
            opens0, ends0 = stats.opens, stats.ends
            results, start, end = await drive(
                broker, targets, seeded.token, args.rate, args.seconds
            )
            setups = out["setups_meter"] = meter.read()
            if profile is not None:
                broker.proc.send_signal(signal.SIGUSR2)
            sampler.cancel()
            # The proxies hear of each browser leaving (`end`) just after it closed.
            deadline = time.perf_counter() + 5
            ok = [r for r in results if r.hello is not None]
            while stats.ends - ends0 < len(ok) and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
            window = end - start
            hellos = [r.hello * 1000 for r in ok if r.hello is not None]
            last_hello = max((r.started + (r.hello or 0.0) for r in ok), default=end)
            failures = collections.Counter(r.failure for r in results if r.failure)
            out.update(
                setups=len(results),
                ok=len(ok),
                failures=dict(failures),
                window_s=window,
                achieved=len(ok) / (last_hello - start) if ok else 0.0,
                p50=percentile(hellos, 50),
                p95=percentile(hellos, 95),
                p99=percentile(hellos, 99),
                max=max(hellos, default=float("nan")),
                open_p50=percentile([r.opened * 1000 for r in ok if r.opened is not None], 50),
                close_p50=percentile(
                    [(r.closed - r.hello) * 1000 for r in ok if r.closed and r.hello], 50
                ),
                lag_max=max((r.lag for r in results), default=0.0) * 1000,
                setup_cpu=setups["broker"],
                setup_self_cpu=setups["self"],
                rss_setups_max=max(rss, default=float("nan")),
                rss_setups_end=broker.rss_mib(),
                hwm=broker.hwm_mib(),
                opens=stats.opens - opens0,
                ends=stats.ends - ends0,
                refused_grants=dict(stats.refused_grants),
                links_after=fleet.up,
                drops=dict(stats.drops),
            )
            # The broker's CPU a set-up costs, over what holding the links costs anyway.
            extra = out["setup_cpu"] - out["idle_cpu"]
            out["cpu_ms_per_setup"] = extra * window / max(1, len(results)) * 1000
            out["store"] = store_counts(state)
            print(
                f"run {number}: {len(results)} set-ups offered at {args.rate:g}/s over "
                f"{window:.1f} s: {len(ok)} ok ({out['achieved']:.1f}/s), latency p50 "
                f"{out['p50']:.1f} ms p95 {out['p95']:.1f} p99 {out['p99']:.1f} max "
                f"{out['max']:.1f} (socket open p50 {out['open_p50']:.1f} ms), failures "
                f"{out['failures'] or 0}; broker CPU {out['setup_cpu']:.1%} "
                f"({out['cpu_ms_per_setup']:.2f} ms a set-up), RSS max "
                f"{out['rss_setups_max']:.1f} MiB (peak {out['hwm']:.1f}); load generator "
                f"{out['setup_self_cpu']:.1%}, start lag max {out['lag_max']:.1f} ms; rest of "
                f"the machine {setups['rest']:.0%}",
                flush=True,
            )
            print(
                f"run {number}: proxies got {out['opens']} opens and {out['ends']} ends, "
                f"refused grants {out['refused_grants'] or 0}; links up {fleet.up}, dropped "
                f"{out['drops'] or 0}; store: {out['store']}",
                flush=True,
            )
        finally:
            if fleet is not None:
                await fleet.stop()
            await stop_broker(broker)
        out["log_problems"] = dict(log_problems(log))
        if gc_log.exists():
            collected = json.loads(gc_log.read_text())
            out["tracked"] = collected["tracked"].get("ready", 0)
            out["tracked_links"] = collected["tracked"].get("hup", 0)
            for phase in ("up", "idle", "setups_meter"):
                if phase in out:
                    out[f"gc_{phase}"] = gc_in(collected["passes"], out[phase])
            print(
                f"run {number}: broker GC: objects tracked {out['tracked']} when ready, "
                f"{out['tracked_links']} with the links; "
                + ", ".join(
                    f"{phase}: {g['full']} full passes, longest {g['longest_wall']:.0f} ms "
                    f"({g['longest_cpu']:.0f} ms CPU, generation {g['longest_gen']}, "
                    f"{g['longest_collected']} objects freed)"
                    for phase in ("up", "idle", "setups_meter")
                    if (g := out.get(f"gc_{phase}"))
                ),
                flush=True,
            )
        if out["log_problems"]:
            print(f"run {number}: broker log: {out['log_problems']}")
        if profile is not None and profile.exists():
            print_profile(profile)
    return out


def print_profile(path: Path, top: int = 25) -> None:
    """The broker's main thread during the set-ups: its time by package, then the top
    functions (cProfile roughly doubles the CPU; the SQLite worker thread is not in it)."""
    import io
    import pstats

    saved = Path(tempfile.gettempdir()) / "bench-broker.prof"
    saved.write_bytes(path.read_bytes())
    stats = pstats.Stats(str(path))
    groups: collections.Counter[str] = collections.Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        groups[_package(filename, function)] += tottime
    total = sum(groups.values())
    print(f"--- broker profile during the set-ups ({saved}), time by package ---")
    for name, seconds in groups.most_common(20):
        print(f"{seconds:8.3f} s {seconds / total:6.1%}  {name}")
    text = io.StringIO()
    stats.stream = text  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(text.getvalue())


def _package(filename: str, function: str) -> str:
    if filename == "~":  # a built-in: name it by what it is
        if "epoll" in function:
            return "waiting in epoll (idle)"
        return "built-in " + function.split(" of ")[-1].strip("{}'> ").split(".")[0]
    parts = Path(filename).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if "scopelink" in parts:
        return "scopelink/" + "/".join(parts[parts.index("scopelink") + 1 :])
    return "stdlib " + Path(filename).stem


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _failures(run: dict[str, Any]) -> str:
    failures = run["failures"]
    if not failures:
        return "0"
    return "; ".join(f"{n}× {why}" for why, n in sorted(failures.items(), key=lambda x: -x[1]))


def section(args: argparse.Namespace, runs: list[dict[str, Any]], command: str) -> list[str]:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    placement = (
        "the broker pinned to CPU 0, the load generator (the benchmark's process: every "
        "proxy and browser) to CPU 1"
        if args.pin
        else "neither process pinned"
    )
    hold_rows = [
        f"| {r['run']} | {r['up_s']:.2f} s ({r['up_rate']:.0f}/s) | "
        f"{r['reg_p50']:.0f} / {r['reg_p95']:.0f} ms | {r['up_cpu']:.0%} | "
        f"{r['rss_start']:.1f} MiB | {r['rss_links']:.1f} MiB | {r['per_link_kib']:.0f} KiB | "
        f"{r['idle_cpu']:.2%} ({r['idle_s']:.0f} s, {r['idle_pings']} pings) | "
        f"{r['idle_self_cpu']:.2%} | {r['idle']['rest']:.0%} |"
        for r in runs
    ]
    setup_rows = [
        f"| {r['run']} | {r['ok']} / {r['setups']} | {r['achieved']:.1f}/s | {_ms(r['p50'])} | "
        f"{_ms(r['p95'])} | {_ms(r['p99'])} | {_ms(r['max'])} | {_failures(r)} | "
        f"{r['setup_cpu']:.1%} | {r['cpu_ms_per_setup']:.2f} ms | "
        f"{r['rss_setups_max']:.1f} MiB | {_gc(r.get('gc_setups_meter'))} | "
        f"{r['setup_self_cpu']:.1%} | {r['lag_max']:.0f} ms | {r['setups_meter']['rest']:.0%} |"
        for r in runs
    ]

    def sustained(r: dict[str, Any]) -> bool:
        return r["ok"] == r["setups"] and r["achieved"] >= 0.98 * args.rate and r["p99"] < 1000

    ceilings = [1000.0 / r["cpu_ms_per_setup"] for r in runs if r["cpu_ms_per_setup"] > 0]
    checks = []
    for r in runs:
        store = r["store"]["connections"]
        checks.append(
            f"run {r['run']}: {r['opens']} opens and {r['ends']} ends at the proxies, "
            f"{r['links_after']} links still up, dropped {r['drops'] or 'none'}, "
            f"grants refused {r['refused_grants'] or 'none'}, `connections` rows "
            + ", ".join(f"{outcome} {n}" for outcome, n in sorted(store.items()))
            + f", broker log warnings {sum(r['log_problems'].values())}"
        )
    proxies, rate = f"{args.proxies:,}", f"{args.rate:g}"
    return [
        f"## Broker: {proxies} proxies holding their links, {rate} connection set-ups a second",
        "",
        f"Reproduce: `{command}`  ",
        f"Run: {now} on {cpu_model()}, Python {platform.python_version()}, websockets "
        f"{websockets.__version__}; {placement}. {len(runs)} runs, a fresh broker each. The "
        "machine is shared: the rest of its CPU use (other processes, interrupts) is in the "
        "tables, in share of one core (of 2).",
        "",
        "One broker instance in its own process: the embedded default store (SQLite in a "
        "temporary state directory), plain HTTP on loopback, `heartbeat_s` 15 s, uvicorn's "
        "defaults as `scopelink broker` has them (a WebSocket ping every 20 s per connection, "
        "no per-message compression), the rate limits raised so the load is not refused. "
        "Its CPU is "
        "utime + stime of all its threads from /proc, in share of one core; RSS is VmRSS. The "
        "store is seeded directly (not through the rate-limited pairing API): one owner with "
        f"an API token and {proxies} telescopes, each bound to its own Ed25519 proxy key "
        "(`pair_telescope`). The simulated proxies speak the real link protocol: the challenge "
        "signed with their key, `register`, a `ping` every 15 s, each `open` answered as the "
        "real proxy does (the grant checked with the broker's key, the signaling `hello` "
        "relayed), the conversation held until the broker says the browser left. At most "
        f"{args.dial_concurrency} link handshakes at a time.",
        "",
        f"**Holding {proxies} links.** Links up: first dial → last `registered`; each link's "
        "dial → `registered` p50 / p95. RSS before the links (the broker started) and "
        f"{SETTLE_S:.0f} s after the last came up. Idle: the links held, heartbeats and "
        "uvicorn's pings included.",
        "",
        "| Run | Links up in | Each link p50 / p95 | Broker CPU bringing them up | RSS before | "
        "RSS with the links | Per link | Broker CPU holding them idle | Load generator, idle "
        "| Rest of the machine, idle |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *hold_rows,
        "",
        f"**{rate} set-ups a second for {args.seconds:g} s**, started on schedule (open loop) "
        "over the telescopes in turn (shuffled): a browser's signaling WebSocket "
        "`/api/telescopes/{id}/signaling?token=…` opened (the broker checks the token and the "
        "role, signs a grant, writes the `connections` row, sends `open` on the proxy's link), "
        "the proxy's `hello` received, the socket closed (the broker records the end and tells "
        "the proxy). Latency: the browser starting to open its socket → `hello` received. "
        "Achieved: set-ups done a second from the first start to the last `hello`. Broker CPU "
        "per set-up: its CPU during the set-ups less its idle CPU, per set-up. Full GC passes: "
        "the broker's collector walking its whole heap (each blocks its event loop), the "
        "longest in CPU time. Start lag: how late the load generator started a set-up against "
        "its schedule (its own stalls).",
        "",
        "| Run | Done | Achieved | p50 | p95 | p99 | Max | Failures | Broker CPU | "
        "Broker CPU per set-up | Broker RSS (max) | Broker full GC passes (longest) | "
        "Load generator | Start lag (max) | Rest of the machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *setup_rows,
        "",
        f"- {rate} set-ups a second on one instance (every one done, ≥ 98 % of the rate, p99 "
        "under 1 s): "
        + ", ".join(
            f"run {r['run']} {'sustained' if sustained(r) else 'not sustained'}" for r in runs
        )
        + "; the broker at "
        + " / ".join(f"{r['setup_cpu']:.0%}" for r in runs)
        + " of one core. Its CPU per set-up would allow about "
        + " / ".join(f"{c:.0f}" for c in ceilings)
        + " a second on one core if nothing else limited it (an estimate, not measured).",
        "- Of the latency, the socket's opening (TCP and the WebSocket upgrade) p50: "
        + " / ".join(_ms(r["open_p50"]) for r in runs)
        + "; a slow tail comes with stalls of an event loop, the broker's or the load "
        "generator's: compare the start lag, the full GC passes and the rest of the machine's "
        "load.",
        "- The broker's collector tracked "
        + " / ".join(f"{r.get('tracked', 0):,}" for r in runs)
        + " objects once started, "
        + " / ".join(f"{r.get('tracked_links', 0):,}" for r in runs)
        + f" with the {proxies} links: a full pass walks all of them.",
        *(f"- Checks, {check}." for check in checks),
    ]


def _gc(found: dict[str, Any] | None) -> str:
    if not found:
        return "–"
    return f"{found['full']} ({found['longest_cpu']:.0f} ms)"


async def main(args: argparse.Namespace, command: str) -> None:
    if args.pin:
        os.sched_setaffinity(0, {1})
    runs = []
    for number in range(1, args.runs + 1):
        runs.append(await one_run(args, number))
        await asyncio.sleep(2.0)
    lines = section(args, runs, command)
    print("\n".join(lines))
    if args.profile or args.gc_freeze or args.deflate:
        print("(profiled or an experiment: nothing written to docs/benchmarks.md)")
    elif args.write:
        write_section("broker", lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--proxies", type=int, default=TARGET_PROXIES)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds holding idle links")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="set-ups a second")
    parser.add_argument("--seconds", type=float, default=20.0, help="of set-ups")
    parser.add_argument("--dial-concurrency", type=int, default=100)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the broker during the set-ups"
    )
    parser.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="experiment: the proxies offer permessage-deflate (nothing written)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in the broker once it serves (nothing written)",
    )
    parsed = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        parsed.pin = False  # one CPU: nothing to keep apart
    shown = " ".join(
        arg
        for arg in (
            ".venv/bin/python bench/bench_broker.py",
            f"--runs {parsed.runs}" if parsed.runs != 2 else "",
            f"--proxies {parsed.proxies}" if parsed.proxies != TARGET_PROXIES else "",
            f"--idle {parsed.idle:g}" if parsed.idle != 60 else "",
            f"--rate {parsed.rate:g}" if parsed.rate != TARGET_RATE else "",
            f"--seconds {parsed.seconds:g}" if parsed.seconds != 20 else "",
            f"--dial-concurrency {parsed.dial_concurrency}"
            if parsed.dial_concurrency != 100
            else "",
            "" if parsed.pin else "--no-pin",
        )
        if arg
    )
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(parsed, shown))
    print(f"done in {time.monotonic() - started:.0f} s")
