"""Connect time and round trip of two aiortc peers per NAT scenario, as medians over runs.

    sudo .venv/bin/python -m tests.nat.measure [--runs 5] [scenario ...]

The proxy's peer connects twice per run, alternately: with scopelink's corrections to aioice
(`webrtc/aioice_patches.py`, as `scopelink proxy` runs) and with aioice as it is, so the two
connect times are compared side by side on the same machine load.

Prints a Markdown table (docs/network.md quotes it). Needs what the tests need (root, iproute2,
nftables, coturn).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
from pathlib import Path

from tests.nat.pairs import SCENARIOS, run_scenario
from tests.nat.topology import NatTopology, cleanup_stale


async def measure(name: str, runs: int, directory: Path, signal_delay_ms: float) -> str:
    scenario = SCENARIOS[name]
    connects: dict[bool, list[float]] = {False: [], True: []}
    rtts, paths = [], []
    for run in range(runs):
        # Alternate which goes first, so neither always meets a fresher machine.
        for stock in (False, True) if run % 2 == 0 else (True, False):
            with NatTopology(scenario.mode_a, scenario.mode_b, family=scenario.family) as net:
                turn = net.start_turn(directory / f"turn-{name}-{run}-{stock}")
                result = await run_scenario(
                    net,
                    turn,
                    directory,
                    scenario,
                    signal_delay_ms=signal_delay_ms,
                    stock_aioice=stock,
                )
            if not result.connected:
                paths.append("failed")
                continue
            connects[stock].append(result.connect_s or 0.0)
            if not stock:
                rtts.append(result.rtt_ms or 0.0)
            paths.append("relay" if result.relayed else "direct")
    expected = sum(path == scenario.expect for path in paths)
    rtt = f"{statistics.median(rtts):.2f}" if rtts else "-"
    types = f"{scenario.mode_a} / {scenario.mode_b} ({scenario.family})"
    return (
        f"| {name} | {types} | {scenario.browser_transport} | {expected}/{2 * runs} "
        f"{scenario.expect} | {_connect(connects[False])} | {_connect(connects[True])} | {rtt} |"
    )


def _connect(values: list[float]) -> str:
    """Median (min–max) in ms."""
    if not values:
        return "-"
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} ({min(ms):.0f}–{max(ms):.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--signal-delay-ms", type=float, default=50.0, help="how long the answer is held"
    )
    args = parser.parse_args()
    cleanup_stale()
    print(f"machine: {platform.node()} {platform.machine()} python {platform.python_version()}")
    print(
        "| scenario | proxy / browser home | browser TURN | path | connect ms, scopelink's "
        "proxy | connect ms, stock aioice | RTT ms |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for name in args.scenarios:
            row = await measure(name, args.runs, Path(directory), args.signal_delay_ms)
            print(row, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
