"""The NAT topologies of the remote-access tests, and the path two real peers find through them.

First the homes' routers are checked to behave as named (STUN mapping per destination, whether a
stranger gets in), then two aiortc peers, the proxy's in `proxy_host` and the browser's in
`browser_host`, each configured with coturn's STUN and TURN, connect a data channel across each
topology; the candidate pair they send on and the public network's counters must both show the
expected path. coturn runs with the production `denied-peer-ip` list throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.nat import topology as harness
from tests.nat.conftest import MakeTopology, run_probe
from tests.nat.pairs import SCENARIOS, PairResult, run_scenario
from tests.nat.topology import (
    BROKER_V4,
    BROKER_V6,
    HOMES,
    TURN_HOST,
    TURN_V4,
    NatTopology,
    Site,
    Turn,
)

#: The pings' payload one way: 20 x 1000 bytes (echoed back), so data stands out from ICE.
PAYLOAD = 20 * 1000
STUN_PORT, STUN_ALT_PORT = 3478, 3479


async def map_and_knock(
    net: NatTopology, site: Site, server: str, stranger: str
) -> tuple[dict[str, Any], Any]:
    """STUN mappings of one socket in `site`'s host towards a STUN responder on `server` (in
    `public`), ports 3478 and 3479, then a datagram from `stranger`:<another port> (a source
    the host never talked to) to the first mapping; returns the mappings and who, if anyone,
    got through to the socket."""
    probe = ("-m", "tests.nat.probe")
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.PIPE}
    responder = await net.spawn_python(
        net.public, *probe, "stun-server", server, str(STUN_PORT), str(STUN_ALT_PORT), **pipes
    )
    assert responder.stdout is not None
    await asyncio.wait_for(responder.stdout.readline(), 15)
    process = await net.spawn_python(
        net.host(site),
        *probe,
        *("map", server, str(STUN_PORT), str(STUN_ALT_PORT), "--timeout", "0.6"),
        **pipes,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        assert line, (await process.communicate())[1].decode()
        mapping = json.loads(line)
        first = mapping["mapped"][0]
        if first is not None:
            await run_probe(net, net.public, "send", first[0], str(first[1]), "--from", stranger)
        knocked = json.loads(await asyncio.wait_for(process.stdout.readline(), 15))
    finally:
        for running in (process, responder):
            if running.returncode is None:
                running.kill()
            await running.wait()
    return mapping, knocked["unsolicited"]


# -- the routers behave as their names say ---------------------------------------------------------


async def test_a_cone_nat_keeps_one_mapping_and_lets_in_only_whom_it_talked_to(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    net = make_topology("cone", "cone")
    mapping, stranger = await map_and_knock(net, "a", BROKER_V4, BROKER_V4)
    # Endpoint-independent mapping: the same public address and port for both destinations,
    # and Linux kept the host's own port.
    wan = HOMES["a"].wan_v4
    assert mapping["mapped"] == [[wan, mapping["local"]], [wan, mapping["local"]]], mapping
    # Address-and-port-dependent filtering: the stranger's datagram was dropped at the router.
    assert stranger is None
    assert net.router_counters("a")["dropped_in"] > 0, net.describe()


async def test_a_full_cone_nat_lets_anyone_in_on_a_mapped_port(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    net = make_topology("full_cone", "cone")
    mapping, stranger = await map_and_knock(net, "a", BROKER_V4, BROKER_V4)
    wan = HOMES["a"].wan_v4
    assert mapping["mapped"] == [[wan, mapping["local"]], [wan, mapping["local"]]], mapping
    assert stranger is not None and stranger[0] == BROKER_V4, net.describe()


async def test_a_symmetric_nat_maps_each_destination_to_a_new_port(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    net = make_topology("symmetric", "cone")
    mapping, stranger = await map_and_knock(net, "a", BROKER_V4, BROKER_V4)
    first, second = mapping["mapped"]
    assert first[0] == second[0] == HOMES["a"].wan_v4, mapping
    assert first[1] != second[1], mapping  # what STUN saw is not what a peer would get
    assert stranger is None


async def test_a_udp_blocked_home_gets_no_stun_answer(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    net = make_topology("cone", "udp_blocked")
    mapping, _ = await map_and_knock(net, "b", BROKER_V4, BROKER_V4)
    assert mapping["mapped"] == [None, None], mapping
    assert net.router_counters("b")["blocked_udp"] > 0, net.describe()


async def test_an_ipv6_home_is_routed_but_lets_in_only_replies(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    net = make_topology("cone", "cone", family="ipv6")
    mapping, stranger = await map_and_knock(net, "a", BROKER_V6, BROKER_V6)
    # No translation: STUN sees the host's own address and port; its reply got in.
    host = HOMES["a"].lan_v6_host
    assert mapping["mapped"] == [[host, mapping["local"]], [host, mapping["local"]]], mapping
    # An unsolicited inbound datagram does not.
    assert stranger is None
    assert net.router_counters("a")["dropped_forward"] > 0, net.describe()


async def test_coturn_refuses_to_relay_to_private_and_loopback_peers(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    """The production denied-peer-ip list: the relay is no way into anyone's network, yet a
    home's public address is allowed without any allowed-peer-ip."""
    net = make_topology("cone", "cone")
    turn = start_turn(net)
    username, password = turn.credentials("probe")
    denied = [
        f"{HOMES['b'].lan_v4_host}:9",  # the other home's LAN
        "127.0.0.1:9",  # coturn's own host
        "169.254.169.254:80",  # cloud metadata
        "192.168.1.1:80",
        "172.16.0.1:80",
        "100.64.0.1:9",
    ]
    allowed = [f"{HOMES['b'].wan_v4}:9"]
    lines = await run_probe(
        net, net.proxy_host, "turn-peers", TURN_V4, "3478", username, password, *denied, *allowed
    )
    results = {line["peer"]: line["error"] for line in lines if "peer" in line}
    assert results == {**dict.fromkeys(denied, 403), **dict.fromkeys(allowed, None)}, lines
    # And credentials minted with another secret get no allocation at all.
    bad = turn.credentials("probe", secret="not-the-secret")
    lines = await run_probe(net, net.proxy_host, "turn-peers", TURN_V4, "3478", *bad)
    assert lines == [{"allocation_error": 401}], lines


# -- two aiortc peers find the expected path ------------------------------------------------------


async def connect(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path, name: str
) -> tuple[NatTopology, PairResult, Turn]:
    scenario = SCENARIOS[name]
    net = make_topology(scenario.mode_a, scenario.mode_b, family=scenario.family)
    turn = start_turn(net)
    result = await run_scenario(net, turn, tmp_path, scenario)
    assert result.connected, f"{net.describe()}\n{result.describe()}"
    # Both ways: every ping echoed, every greeting received.
    assert len(result.browser["rtt_ms"]) == 20, result.describe()
    assert len(result.browser["received"]) == 3, result.describe()
    # No media ever goes to the broker's address (there is no broker here; the counters work).
    assert result.traffic.between("a", "broker") == result.traffic.between("b", "broker") == 0
    return net, result, turn


def assert_direct(net: NatTopology, result: PairResult) -> None:
    why = f"{net.describe()}\n{result.describe()}"
    assert result.direct, why
    assert result.traffic.direct("udp") > 2 * PAYLOAD, why
    turn_bytes = result.traffic.between("a", "turn") + result.traffic.between("b", "turn")
    assert turn_bytes < PAYLOAD / 2, why  # STUN, allocations and checks; no data


def assert_relayed(net: NatTopology, result: PairResult) -> None:
    why = f"{net.describe()}\n{result.describe()}"
    assert result.relayed, why
    # Every payload byte went into coturn from one home and out of it to the other.
    assert result.traffic.between("a", "turn") > 2 * PAYLOAD, why
    assert result.traffic.between("b", "turn") > 2 * PAYLOAD, why
    assert result.traffic.direct() < 2_000, why  # only the direct checks that failed


async def test_cone_to_cone_connects_directly(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "cone-cone")
    assert_direct(net, result)
    # Each side sends from its host address to the other home's public (srflx) address.
    browser, proxy = result.browser["pair"], result.proxy["pair"]
    assert browser["remote"]["address"] == HOMES["a"].wan_v4, result.describe()
    assert proxy["remote"]["address"] == HOMES["b"].wan_v4, result.describe()
    # The homes' links to the public network carried it (`ip -s link` at the public end).
    for site in ("a", "b"):
        received, sent = net.link_bytes(site)
        assert received > PAYLOAD and sent > PAYLOAD, (site, received, sent)


async def test_full_cone_to_symmetric_connects_directly(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    """A full cone lets the symmetric side's new mapping in: the proxy learns it as a
    peer-reflexive candidate and the path stays direct."""
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "full_cone-symmetric")
    assert_direct(net, result)


async def test_cone_to_symmetric_goes_through_the_relay(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "cone-symmetric")
    assert_relayed(net, result)


async def test_symmetric_to_symmetric_goes_through_the_relay(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "symmetric-symmetric")
    assert_relayed(net, result)
    # Each side sends to the other's relay address on coturn.
    for side in (result.browser, result.proxy):
        assert "relay" in (side["pair"]["local"]["type"], side["pair"]["remote"]["type"])
        assert TURN_V4 in (side["pair"]["local"]["address"], side["pair"]["remote"]["address"])


@pytest.mark.parametrize("transport", ["tcp", "tls"])
async def test_a_udp_blocked_browser_relays_over_turn_tcp(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path, transport: str
) -> None:
    net, result, turn = await connect(
        make_topology, start_turn, tmp_path, f"udp_blocked-{transport}"
    )
    assert_relayed(net, result)
    why = f"{net.describe()}\n{result.describe()}"
    # The browser's own end is its relay candidate, reached over TCP only.
    assert result.browser["pair"]["local"]["type"] == "relay", why
    assert result.traffic.between("b", "turn", "udp") == 0, why
    assert result.traffic.between("b", "turn", "tcp") > 2 * PAYLOAD, why
    assert net.router_counters("b")["blocked_udp"] > 0, why
    # coturn's log names the listener the browser's allocation came in on.
    port = {"tcp": 3478, "tls": 5349}[transport]
    client = f"local {TURN_V4}:{port}, remote {HOMES['b'].wan_v4}:"
    assert client in turn.log_text(), turn.log_text()[-3000:]
    if transport == "tls":
        assert "method=TLSv1." in turn.log_text()


async def test_turns_checks_the_relay_certificate(
    make_topology: MakeTopology, start_turn: Any
) -> None:
    """aiortc verifies the `turns:` server's certificate and name: with coturn's self-signed
    certificate trusted (SSL_CERT_FILE) it gets a relay candidate, without it none."""
    net = make_topology("cone", "cone")
    turn = start_turn(net)
    ice = json.dumps(turn.ice_servers("tls", host=TURN_HOST, stun=False))
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}

    async def gather(trusted: bool) -> list[str]:
        extra = {"SSL_CERT_FILE": str(turn.cert)} if trusted else {}
        process = await net.spawn_python(
            net.browser_host,
            *("-m", "tests.nat.peer", "--role", "gather", "--ice", ice, "--timeout", "15"),
            env={**env, **extra},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, _ = await asyncio.wait_for(process.communicate(), 20)
        report = json.loads(stdout.decode().splitlines()[-1])
        return [c["type"] for c in report["local_candidates"]]

    trusted, untrusted = await asyncio.gather(gather(True), gather(False))
    assert trusted == ["host", "relay"], trusted
    assert untrusted == ["host"], untrusted


async def test_ipv6_homes_connect_directly_over_ipv6(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "ipv6")
    assert_direct(net, result)
    assert result.browser["pair"]["local"]["address"] == HOMES["b"].lan_v6_host
    assert result.browser["pair"]["remote"]["address"] == HOMES["a"].lan_v6_host


async def test_dual_stack_behind_symmetric_ipv4_nats_connects_directly_over_ipv6(
    make_topology: MakeTopology, start_turn: Any, tmp_path: Path
) -> None:
    """Mobile and CGNAT homes: IPv4 would need the relay, IPv6 does not."""
    net, result, _ = await connect(make_topology, start_turn, tmp_path, "dual-cgnat")
    assert_direct(net, result)
    assert ":" in result.browser["pair"]["local"]["address"], result.describe()


# -- the harness cleans up -------------------------------------------------------------------------


def _netns_names() -> set[str]:
    return set(harness._namespaces())


def test_a_failing_test_leaves_no_namespace_process_or_file(netns_ready: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), NatTopology() as net:
        names = {namespace.name for namespace in net.namespaces.values()}
        assert names <= _netns_names()
        sleeper = net.popen(net.proxy_host, "sleep", "60")
        raise RuntimeError("boom")
    assert not names & _netns_names()
    assert sleeper.poll() is not None
    assert not any((harness.NETNS_ETC / name).exists() for name in names)


def test_cleanup_stale_removes_what_a_killed_run_left(netns_ready: None) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert gone.pid != os.getpid()
    name = f"{harness.PREFIX}-{gone.pid}-dead00-pub"
    harness.run("ip", "netns", "add", name)
    (harness.NETNS_ETC / name).mkdir(parents=True, exist_ok=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"])
    try:
        assert name in harness.cleanup_stale()
        assert name not in _netns_names()
        assert not (harness.NETNS_ETC / name).exists()
        assert orphan.wait(5) != 0  # killed
    finally:
        if orphan.poll() is None:
            orphan.kill()
        harness._delete_namespace(name)
