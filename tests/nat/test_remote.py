"""The whole remote path across home NATs: the broker and coturn in the public namespace, the
simulated telescope and `scopelink proxy` behind one home router, the browser (an aiortc peer,
`tests.nat.viewer`) behind another. In each topology the video plays, a command works, the
path is the one expected, and the broker carried no media: only its processes' own commands
(`scopelink broker`, `scopelink simulate`, `scopelink proxy`), real HTTPS and WSS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.nat.conftest import MakeTopology
from tests.nat.topology import BROKER_HOST, TURN_HOST, NatMode, NatTopology, Turn

BROKER_PORT = 8443


async def _line(process: Any, pattern: str, seen: list[str], timeout_s: float = 30) -> str:
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await process.stdout.readline()).decode(errors="replace")
            assert line, f"exited before {pattern!r}:\n{''.join(seen)}"
            seen.append(line)
            if match := re.search(pattern, line):
                return match[1]


async def remote_session(
    net: NatTopology,
    turn: Turn,
    tmp: Path,
    *,
    turn_transport: str = "udp",
    relay_only: bool = False,
) -> dict[str, Any]:
    """Start broker, telescope and proxy; pair and connect from the browser's home; the
    viewer's report with the public network's byte counts during the media phase."""
    started: list[Any] = []
    try:
        return await _session(net, turn, tmp, started, turn_transport, relay_only)
    finally:
        for process in reversed(started):  # ended here, while the event loop runs
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)


async def _session(
    net: NatTopology,
    turn: Turn,
    tmp: Path,
    started: list[Any],
    turn_transport: str,
    relay_only: bool,
) -> dict[str, Any]:
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.STDOUT}
    seen: list[str] = []
    turn_url = {
        "udp": f"turn:{TURN_HOST}:3478?transport=udp",
        "tcp": f"turn:{TURN_HOST}:3478?transport=tcp",
    }[turn_transport]
    broker = await _started(started, net.spawn_python(
        net.public, "-m", "scopelink.cli", "broker",
        "--host", net.broker_address, "--port", str(BROKER_PORT), "--name", BROKER_HOST,
        "--state-dir", str(tmp / "broker"), "--instance", "pub",
        "--stun", f"stun:{TURN_HOST}:3478", "--turn", turn_url, "--turn-secret", turn.secret,
        **pipes,
    ))  # fmt: skip
    cert = await _line(broker, r"self-signed\): (\S+)", seen)
    await _line(broker, r"(scopelink broker on)", seen)
    telescope = await _started(
        started,
        net.spawn_python(
            net.proxy_host,
            "-m",
            "scopelink.cli",
            "simulate",
            "--fps",
            "5",
            "--no-discovery",
            **pipes,
        ),
    )
    await _line(telescope, r"(Simulated Seestar)", seen)
    url = f"https://{BROKER_HOST}:{BROKER_PORT}"
    proxy = await _started(started, net.spawn_python(
        net.proxy_host, "-m", "scopelink.cli", "proxy",
        "--broker", url, "--broker-ca", cert, "--telescope", "127.0.0.1",
        "--state-dir", str(tmp / "proxy"), "--host", "0.0.0.0", "--port", "8000",
        **pipes,
    ))  # fmt: skip
    code = await _line(proxy, r"type the code\s+(\w{4}-\w{4})", seen)
    args = ["--broker", url, "--ca", cert, "--code", code]
    viewer = await _started(started, net.spawn_python(
        net.browser_host, "-m", "tests.nat.viewer", *args,
        *(["--relay-only"] if relay_only else []), **pipes,
    ))  # fmt: skip
    try:
        await _line(viewer, r'("media": "start")', seen, timeout_s=60)
    except AssertionError:
        for process in (broker, proxy):
            with contextlib.suppress(TimeoutError):
                out = await asyncio.wait_for(process.stdout.read(20_000), 1)
                seen.append(out.decode(errors="replace"))
        raise AssertionError("".join(seen)[-8000:]) from None
    before = net.traffic()
    report = json.loads(await _line(viewer, r"^(\{.*\})\s*$", seen, timeout_s=30))
    report["traffic"] = net.traffic() - before
    report["log"] = "".join(seen)[-4000:]
    return report


async def _started(started: list[Any], spawning: Any) -> Any:
    process = await spawning
    started.append(process)
    return process


def check_plays(report: dict[str, Any]) -> None:
    assert "error" not in report, report
    assert report["frames"] >= 5, report  # it plays (5 fps for 3 s, on a busy machine fewer)
    assert report["command"] is True, report


def pair_types(report: dict[str, Any]) -> tuple[str, str]:
    pair = report["pair"]
    return pair["local"]["type"], pair["remote"]["type"]


def broker_media(report: dict[str, Any]) -> int:
    """Bytes between either home and the broker while the video played: heartbeats only."""
    traffic = report["traffic"]
    return traffic.between("a", "broker") + traffic.between("b", "broker")


@pytest.mark.parametrize(("mode_a", "mode_b"), [("cone", "cone")])
async def test_behind_two_cone_nats_the_video_goes_direct_and_the_broker_sees_none(
    make_topology: MakeTopology, start_turn: Callable[..., Turn], tmp_path: Path,
    mode_a: NatMode, mode_b: NatMode,
) -> None:  # fmt: skip
    net = make_topology(mode_a, mode_b)
    report = await remote_session(net, start_turn(net), tmp_path)
    check_plays(report)
    assert "relay" not in pair_types(report), report
    # Its page on its own network, announced by mDNS, is offered to members.
    assert report["lan_url"] == f"http://scopelink-{report['telescope'][4:12]}.local:8000/"
    traffic = report["traffic"]
    assert traffic.direct("udp") > 100_000, traffic.summary()
    assert traffic.between("b", "turn", "udp") < 2_000, traffic.summary()
    assert broker_media(report) < 3_000, traffic.summary()


async def test_behind_symmetric_nats_the_video_goes_through_the_relay(
    make_topology: MakeTopology, start_turn: Callable[..., Turn], tmp_path: Path
) -> None:
    net = make_topology("symmetric", "symmetric")
    report = await remote_session(net, start_turn(net), tmp_path)
    check_plays(report)
    assert "relay" in pair_types(report), report
    traffic = report["traffic"]
    assert traffic.between("a", "turn", "udp") > 100_000, traffic.summary()
    assert traffic.direct("udp") < 2_000, traffic.summary()
    assert broker_media(report) < 3_000, traffic.summary()


async def test_a_browser_whose_network_blocks_udp_is_relayed_over_tcp(
    make_topology: MakeTopology, start_turn: Callable[..., Turn], tmp_path: Path
) -> None:
    net = make_topology("cone", "udp_blocked")
    report = await remote_session(net, start_turn(net), tmp_path, turn_transport="tcp")
    check_plays(report)
    assert pair_types(report)[0] == "relay", report
    traffic = report["traffic"]
    assert traffic.between("b", "turn", "tcp") > 100_000, traffic.summary()
    assert traffic.between("b", "turn", "udp") == 0, traffic.summary()
    assert broker_media(report) < 3_000, traffic.summary()


async def test_over_ipv6_the_video_goes_direct_through_both_home_firewalls(
    make_topology: MakeTopology, start_turn: Callable[..., Turn], tmp_path: Path
) -> None:
    net = make_topology("cone", "cone", family="ipv6")
    report = await remote_session(net, start_turn(net), tmp_path)
    check_plays(report)
    assert "relay" not in pair_types(report), report
    assert ":" in report["pair"]["remote"]["address"], report  # an IPv6 address
    traffic = report["traffic"]
    assert traffic.direct("udp") > 100_000, traffic.summary()
    assert broker_media(report) < 3_000, traffic.summary()
