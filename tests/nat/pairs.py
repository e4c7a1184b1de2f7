"""Two aiortc peers across a `NatTopology`: the proxy's in `proxy_host`, the browser's in
`browser_host` (each a `tests.nat.peer` process), and what they and the public network saw."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tests.nat.topology import TURN_HOST, Family, NatMode, NatTopology, Traffic, Turn


@dataclass
class PairResult:
    browser: dict[str, Any]  # the offerer's report (tests/nat/peer.py)
    proxy: dict[str, Any]  # the answerer's report
    traffic: Traffic  # public counters during the run
    browser_log: str
    proxy_log: str

    @property
    def connected(self) -> bool:
        return "error" not in self.browser and "error" not in self.proxy and self.pair_types != ()

    @property
    def pair_types(self) -> tuple[str, ...]:
        """(browser local, browser remote, proxy local, proxy remote) candidate types."""
        if not self.browser.get("pair") or not self.proxy.get("pair"):
            return ()
        b, p = self.browser["pair"], self.proxy["pair"]
        return (b["local"]["type"], b["remote"]["type"], p["local"]["type"], p["remote"]["type"])

    @property
    def relayed(self) -> bool:
        """Data goes through coturn: a relay candidate at either end of either side's pair (a
        host candidate sending to the other side's relay address is relayed too)."""
        return "relay" in self.pair_types

    @property
    def direct(self) -> bool:
        """Data goes straight between the homes: no relay candidate anywhere in the pairs."""
        return bool(self.pair_types) and "relay" not in self.pair_types

    @property
    def rtt_ms(self) -> float | None:
        return self.browser.get("rtt_median_ms")

    @property
    def connect_s(self) -> float | None:
        return self.browser.get("connect_s")

    def describe(self) -> str:
        def side(report: dict[str, Any]) -> str:
            keys = ("pair", "connect_s", "rtt_median_ms", "error", "ice_state", "received")
            return json.dumps({k: report.get(k) for k in keys})

        return (
            f"browser: {side(self.browser)}\nproxy: {side(self.proxy)}\n"
            f"browser candidates: {self.browser.get('local_candidates')}\n"
            f"proxy candidates: {self.proxy.get('local_candidates')}\n"
            f"public traffic: {self.traffic.summary()}\n"
            f"browser stderr: {self.browser_log[-2000:]}\nproxy stderr: {self.proxy_log[-2000:]}"
        )


def _fresh_path(directory: Path, name: str) -> Path:
    """`directory / name`, the directory made and nothing at that path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.unlink(missing_ok=True)
    return path


async def _last_json(process: asyncio.subprocess.Process) -> tuple[dict[str, Any], str]:
    """The last JSON line the process printed, and its stderr."""
    stdout, stderr = await process.communicate()
    report: dict[str, Any] = {"error": f"no report (exit {process.returncode})"}
    for line in stdout.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            parsed = json.loads(line)
            if isinstance(parsed, dict) and "listening" not in parsed:
                report = parsed
    return report, stderr.decode(errors="replace")


async def connect_pair(
    net: NatTopology,
    directory: Path,
    *,
    proxy_ice: list[dict[str, Any]],
    browser_ice: list[dict[str, Any]],
    env: dict[str, str] | None = None,
    pings: int = 20,
    payload_bytes: int = 1000,
    signal_delay_ms: float = 50.0,
    timeout_s: float = 40.0,
    stock_aioice: bool = False,
) -> PairResult:
    """Connect a data channel between the two hosts, ping over it, and report. The proxy's
    peer has scopelink's corrections to aioice (`webrtc/aioice_patches.py`), as the real proxy
    does, unless `stock_aioice`."""
    signal_path = _fresh_path(directory, f"signal-{os.getpid()}-{net.tag}.sock")
    process_env = {**os.environ, **(env or {})}
    common = ["-m", "tests.nat.peer", "--signal", str(signal_path), "--timeout", str(timeout_s)]
    if os.environ.get("SCOPELINK_NAT_LOG"):
        common.append("--log")
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
    before = net.traffic()
    proxy = await net.spawn_python(
        net.proxy_host,
        *common,
        "--role",
        "answer",
        *(["--stock-aioice"] if stock_aioice else []),
        "--ice",
        json.dumps(proxy_ice),
        env=process_env,
        **pipes,
    )
    assert proxy.stdout is not None
    # The answerer listens first, so the offerer's description never waits on a missing socket.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proxy.stdout.readline(), 15)
    browser = await net.spawn_python(
        net.browser_host,
        *common,
        "--role",
        "offer",
        "--pings",
        str(pings),
        "--payload-bytes",
        str(payload_bytes),
        "--signal-delay-ms",
        str(signal_delay_ms),
        "--ice",
        json.dumps(browser_ice),
        env=process_env,
        **pipes,
    )
    try:
        async with asyncio.timeout(timeout_s + 15):
            (browser_report, browser_log), (proxy_report, proxy_log) = await asyncio.gather(
                _last_json(browser), _last_json(proxy)
            )
    finally:
        for process in (browser, proxy):
            if process.returncode is None:
                process.kill()
        _fresh_path(directory, signal_path.name)
    return PairResult(browser_report, proxy_report, net.traffic() - before, browser_log, proxy_log)


@dataclass(frozen=True)
class Scenario:
    """A topology and the ICE servers each side is given."""

    name: str
    mode_a: NatMode  # the proxy's home
    mode_b: NatMode  # the browser's home
    family: Family = "ipv4"
    #: TURN transport of the browser's side (the proxy's is UDP).
    browser_transport: Literal["udp", "tcp", "tls"] = "udp"
    expect: Literal["direct", "relay"] = "direct"


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("cone-cone", "cone", "cone"),
        Scenario("full_cone-symmetric", "full_cone", "symmetric"),
        Scenario("cone-symmetric", "cone", "symmetric", expect="relay"),
        Scenario("symmetric-symmetric", "symmetric", "symmetric", expect="relay"),
        Scenario("udp_blocked-tcp", "cone", "udp_blocked", browser_transport="tcp", expect="relay"),
        Scenario("udp_blocked-tls", "cone", "udp_blocked", browser_transport="tls", expect="relay"),
        Scenario("ipv6", "cone", "cone", family="ipv6"),
        Scenario("dual-cgnat", "symmetric", "symmetric", family="dual"),
    )
}


async def run_scenario(
    net: NatTopology, turn: Turn, directory: Path, scenario: Scenario, **kwargs: Any
) -> PairResult:
    """`connect_pair` with coturn's STUN and one TURN URL per side, by name (`TURN_HOST`, as a
    deployment would; the TLS certificate is checked against it): UDP for the proxy,
    `scenario.browser_transport` for the browser."""
    return await connect_pair(
        net,
        directory,
        proxy_ice=turn.ice_servers("udp", host=TURN_HOST),
        browser_ice=turn.ice_servers(scenario.browser_transport, host=TURN_HOST),
        env={"SSL_CERT_FILE": str(turn.cert)},
        **kwargs,
    )
