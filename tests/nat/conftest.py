"""Fixtures for the NAT topology tests: they need root, iproute2, nftables and coturn.

Where namespaces cannot be built the tests FAIL with the reason, unless SCOPELINK_SKIP_NETNS=1
says to skip them (a developer's machine without root); they never skip silently.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nat import topology as harness
from tests.nat.topology import Family, NatMode, NatTopology, Turn


def _unavailable(why: str) -> None:
    if harness.skip_requested():
        pytest.skip(f"{why} ({harness.SKIP_ENV}=1)")
    pytest.fail(
        f"{why}: the NAT tests build network namespaces (root, iproute2, nftables, coturn); "
        f"set {harness.SKIP_ENV}=1 to skip them",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def netns_ready() -> None:
    why = harness.available()
    if why is None and not Path(harness.TURNSERVER).exists():
        why = "no coturn: apt-get install coturn (it provides /usr/bin/turnserver)"
    if why:
        _unavailable(why)
    harness.cleanup_stale()


MakeTopology = Callable[..., NatTopology]


@pytest.fixture
def make_topology(netns_ready: None) -> Iterator[MakeTopology]:
    """`make_topology(mode_a, mode_b, family=...)`: a built topology, torn down after the test
    whatever happened."""
    made: list[NatTopology] = []

    def make(
        mode_a: NatMode = "cone", mode_b: NatMode = "cone", *, family: Family = "ipv4"
    ) -> NatTopology:
        net = NatTopology(mode_a, mode_b, family=family)
        made.append(net)
        net.create()
        return net

    try:
        yield make
    finally:
        for net in made:
            net.close()


@pytest.fixture
def start_turn(tmp_path: Path) -> Callable[..., Turn]:
    """`start_turn(net, **kwargs)`: coturn in `net`'s public namespace (stopped with `net`)."""

    def start(net: NatTopology, **kwargs: Any) -> Turn:
        return net.start_turn(tmp_path / f"turn-{net.tag}", **kwargs)

    return start


async def run_probe(
    net: NatTopology, namespace: harness.Namespace, *args: str, timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    """Run `python -m tests.nat.probe ARGS` in `namespace`; its JSON lines."""
    process = await net.spawn_python(
        namespace,
        "-m",
        "tests.nat.probe",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode == 0, stderr.decode(errors="replace")
    return [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
