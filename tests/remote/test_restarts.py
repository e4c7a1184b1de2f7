"""What the broker sees of a session, and what happens when a part restarts: the broker carries
signaling and keepalives only; a connected session does not notice the broker going away; the
proxy's link comes back by itself after either restarts."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

from scopelink.proxy.identity import ProxyIdentity
from scopelink.proxy.link import LinkState
from scopelink.simulator.simulator import Simulator
from tests.remote.conftest import (
    broker_settings,
    connect_and_detach,
    exchange_over,
    pair_proxy,
    remote_stack,
    running_broker,
    running_proxy,
    sign_up,
)
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message


def tcp_bytes(port: int) -> dict[str, int]:
    """Bytes sent plus received so far on each established TCP connection of local `port`, by
    its peer's address (the kernel's own counts, from `ss`)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts: dict[str, int] = {}
    peer = ""
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and ":" in fields[-1] and not line.startswith((" ", "\t")):
            peer = fields[-1]
            continue
        sent = re.search(r"bytes_sent:(\d+)", line)
        received = re.search(r"bytes_received:(\d+)", line)
        counts[peer] = int(sent[1] if sent else 0) + int(received[1] if received else 0)
    return counts


async def packets_received(client: DcClient) -> int:
    stats = await client.pc.getStats()
    return sum(getattr(s, "packetsReceived", 0) for s in stats.values() if s.type == "inbound-rtp")


async def test_after_set_up_the_broker_carries_only_keepalives_while_video_and_commands_flow(
    tmp_path: Path, simulator: Simulator
) -> None:
    async with remote_stack(tmp_path, simulator, heartbeat_s=0.5) as remote:
        broker = remote.broker
        ws = await remote.owner.signaling(remote.telescope_id, broker.ws_url)
        client = DcClient(remote.proxy.base_url)
        try:
            await connect_and_detach(ws, client)
            await asyncio.sleep(0.3)
            port = broker.running.port
            traffic = broker.broker.hub.traffic
            before_tcp, before = tcp_bytes(port), (traffic.signaling_bytes)
            before_packets = await packets_received(client)
            for gain in range(60, 90, 3):
                ack, result = await client.run("set_gain", {"gain": gain})
                assert ack["accepted"] and result["ok"]
            await asyncio.sleep(3.0)
            media = await packets_received(client) - before_packets
            after_tcp = tcp_bytes(port)
            # Connections that lasted the whole time (the proxy's link among them).
            carried = sum(after_tcp[p] - before_tcp[p] for p in after_tcp if p in before_tcp)
            assert media > 30, "video should have flowed peer to peer meanwhile"
            assert traffic.signaling_bytes == before, "no signaling after set-up"
            # Heartbeats every 0.5 s for ~3.5 s: a ping and a pong of < 100 bytes each.
            assert 0 < carried < 2_000, carried
        finally:
            await client.close()
            await ws.close()


async def test_a_connected_session_outlives_a_broker_restart_and_the_link_comes_back(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = await broker_settings(tmp_path)
    identity = ProxyIdentity(tmp_path / "proxy")
    async with running_broker(settings) as broker:
        port = broker.running.port
        owner = await sign_up(broker, "ada")
        pairing = await pair_proxy(broker, identity, owner)
        await owner.http.aclose()
    proxy_ctx = None
    client = DcClient("")
    try:
        async with running_broker(settings, port=port) as broker:
            proxy_ctx = running_proxy(simulator, identity, pairing)
            _, link = await proxy_ctx.__aenter__()
            ws = await _signaling(broker.ws_url, pairing.telescope_id, settings, tmp_path)
            await connect_and_detach(ws, client)
        # The broker is gone: the session is not.
        await link.wait_for(LinkState.CONNECTING, 5)
        ack, result = await client.run("set_gain", {"gain": 70})
        assert ack["accepted"] and result["ok"]
        async with running_broker(settings, port=port) as broker:
            await link.wait_for(LinkState.ONLINE, 10)
            ack, result = await client.run("set_gain", {"gain": 71})
            assert ack["accepted"] and result["ok"]
            ws = await _signaling(broker.ws_url, pairing.telescope_id, settings, tmp_path)
            assert (await next_message(ws, "hello"))["type"] == "hello"
            await ws.close()
            assert link.links == 2
    finally:
        await client.close()
        if proxy_ctx is not None:
            await proxy_ctx.__aexit__(None, None, None)


async def _signaling(ws_url: str, telescope_id: str, settings: object, tmp: Path):  # type: ignore[no-untyped-def]
    """Signal as ada again (her API token is in the same database across restarts)."""
    import httpx

    from tests.remote.conftest import PASSWORD

    http_url = ws_url.replace("ws://", "http://", 1)
    async with httpx.AsyncClient(base_url=http_url) as http:
        r = await http.post("/api/login", json={"name": "ada", "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = (await http.post("/api/tokens", json={"label": "t"})).json()["token"]
    from websockets.asyncio.client import connect

    return await connect(f"{ws_url}/api/telescopes/{telescope_id}/signaling?token={token}")


async def test_when_the_proxy_restarts_browsers_see_it_offline_then_connect_again(
    tmp_path: Path, simulator: Simulator
) -> None:
    settings = await broker_settings(tmp_path)
    async with running_broker(settings) as broker:
        owner = await sign_up(broker, "ada")
        identity = ProxyIdentity(tmp_path / "proxy")
        pairing = await pair_proxy(broker, identity, owner)
        async with running_proxy(simulator, identity, pairing):
            me = (await owner.http.get("/api/me")).json()
            assert me["telescopes"][0]["online"] is True
        ws = await owner.signaling(pairing.telescope_id, broker.ws_url)
        error = await next_message(ws, "error")
        assert error["problem"]["title"] == "Telescope offline"
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4503
        me = (await owner.http.get("/api/me")).json()
        assert me["telescopes"][0]["online"] is False
        async with running_proxy(simulator, identity, pairing) as (proxy, _):
            ws = await owner.signaling(pairing.telescope_id, broker.ws_url)
            client = DcClient(proxy.base_url)
            try:
                await next_message(ws, "hello")
                await client.connect(exchange=exchange_over(ws))
                ack, result = await client.run("set_gain", {"gain": 75})
                assert ack["accepted"] and result["ok"]
            finally:
                await client.close()
                await ws.close()
        await owner.http.aclose()
