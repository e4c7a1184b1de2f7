"""Two broker instances on one PostgreSQL database, signaling relayed between them by
LISTEN/NOTIFY: a browser on one instance reaches a telescope whose proxy is linked to the
other, and each sees the same accounts and telescopes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.link import BrokerLink, LinkState
from scopelink.simulator.simulator import Simulator
from tests.broker.postgres_server import PostgresServer
from tests.remote.conftest import (
    broker_settings,
    connect_and_detach,
    exchange_over,
    pair_proxy,
    running_broker,
    running_proxy,
    sign_up,
)
from tests.remote.front import nginx_front
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message


async def test_a_browser_on_one_instance_reaches_a_proxy_linked_to_the_other(
    tmp_path: Path, simulator: Simulator, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.create_database()
    key = str(tmp_path / "shared-signing-key.pem")
    shared = {"store_url": dsn, "relay": "postgres", "signing_key": key}
    a_settings = await broker_settings(tmp_path / "a", **shared)
    b_settings = await broker_settings(tmp_path / "b", **shared)
    b_settings.instance = "b"
    async with running_broker(a_settings) as a, running_broker(b_settings) as b:
        owner = await sign_up(a, "ada")
        identity = ProxyIdentity(tmp_path / "proxy")
        # The proxy pairs with, and links to, instance b; the owner uses instance a.
        pairing = await pair_proxy(b, identity, owner)
        async with running_proxy(simulator, identity, pairing) as (proxy, _):
            assert b.broker.hub.links and not a.broker.hub.links
            me = (await owner.http.get("/api/me")).json()
            assert me["telescopes"][0]["online"] is True
            ws = await owner.signaling(pairing.telescope_id, a.ws_url)
            client = DcClient(proxy.base_url)
            try:
                await next_message(ws, "hello")
                await client.connect(exchange=exchange_over(ws))
                ack, result = await client.run("set_gain", {"gain": 66})
                assert ack["accepted"] and result["ok"]
                await ws.send(json.dumps({"type": "detach"}))
                await next_message(ws, "detached")
            finally:
                await client.close()
                await ws.close()
            # The browser's messages entered at a, the proxy's at b.
            assert a.broker.hub.traffic.signaling_messages >= 2
            assert b.broker.hub.traffic.signaling_messages > 2
        await owner.http.aclose()


async def test_when_an_instance_dies_its_proxy_and_new_browsers_move_to_the_other(
    tmp_path: Path, simulator: Simulator, postgres_server: PostgresServer
) -> None:
    dsn = postgres_server.create_database()
    shared = {"store_url": dsn, "relay": "postgres", "signing_key": str(tmp_path / "key.pem")}
    a_settings = await broker_settings(tmp_path / "a", **shared)
    b_settings = await broker_settings(tmp_path / "b", **shared)
    b_settings.instance = "b"
    async with running_broker(b_settings) as b:
        a_ctx = running_broker(a_settings)
        a = await a_ctx.__aenter__()
        a_alive = True
        try:
            with nginx_front([a.running.port, b.running.port], tmp_path / "nginx") as front:
                owner = await sign_up(a, "ada")
                identity = ProxyIdentity(tmp_path / "proxy")
                pairing = await pair_proxy(a, identity, owner)
                pairing = Pairing(front, pairing.telescope_id, pairing.broker_key)
                async with running_proxy(simulator, identity, pairing) as (proxy, link):
                    # Wherever the front sent the link, make it instance a's, then kill a.
                    while not a.broker.hub.links:
                        await link_moves(link)
                    ws_url = front.replace("http://", "ws://", 1)
                    ws = await owner.signaling(pairing.telescope_id, ws_url)
                    client = DcClient(proxy.base_url)
                    try:
                        await connect_and_detach(ws, client)
                        links_before = link.links
                        await a_ctx.__aexit__(None, None, None)
                        a_alive = False
                        # The proxy finds instance b through the same address, by itself.
                        async with asyncio.timeout(15):
                            while link.links == links_before or link.state is not LinkState.ONLINE:
                                await asyncio.sleep(0.05)
                        assert link.links == links_before + 1 and b.broker.hub.links
                        # The live session never noticed; a new browser connects through b.
                        ack, result = await client.run("set_gain", {"gain": 77})
                        assert ack["accepted"] and result["ok"]
                        ws2 = await owner.signaling(pairing.telescope_id, ws_url)
                        assert (await next_message(ws2, "hello"))["type"] == "hello"
                        await ws2.close()
                    finally:
                        await client.close()
                        await ws.close()
                await owner.http.aclose()
        finally:
            if a_alive:
                await a_ctx.__aexit__(None, None, None)


async def link_moves(link: BrokerLink) -> None:
    """Drop the proxy's link so that it dials again (through the front, to the next upstream)."""
    ws = link._ws
    assert ws is not None
    await ws.close()
    await link.wait_for(LinkState.CONNECTING, 5)
    await link.wait_for(LinkState.ONLINE, 10)
