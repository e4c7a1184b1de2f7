"""A broker, a simulated telescope and a proxy paired to it, all real, on loopback: what the
remote-access tests start from. The network topologies with NATs are in tests/nat."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from scopelink.auth import GrantBook
from scopelink.broker.app import create_broker_app
from scopelink.embedded import simulator_target
from scopelink.grants import GrantVerifier
from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.link import BrokerLink, LinkState
from scopelink.proxy.pairing import pair
from scopelink.proxy.run import broker_link
from scopelink.schema.link import PairCode
from scopelink.settings import Backoff, BrokerSettings, ProxySettings
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from scopelink.web.app import create_app
from scopelink.web.server import RunningApp, serving_app
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message

PASSWORD = "correct horse battery"
LAN_TOKEN = "lan-page-operator-token"


@dataclass
class BrokerUnderTest:
    running: RunningApp
    settings: BrokerSettings

    @property
    def url(self) -> str:
        return self.running.base_url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    @property
    def broker(self) -> Any:
        return self.running.app.state.broker


@dataclass
class Person:
    """A signed-in account: its HTTP client (with the session cookie) and an API token."""

    name: str
    http: httpx.AsyncClient
    token: str
    account_id: str

    async def signaling(self, telescope_id: str, ws_url: str) -> ClientConnection:
        return await connect(
            f"{ws_url}/api/telescopes/{telescope_id}/signaling?token={self.token}",
            open_timeout=10,
        )


@dataclass
class Remote:
    """A broker, a proxy paired to `owner`'s account and linked, its simulator."""

    broker: BrokerUnderTest
    proxy: RunningApp
    link: BrokerLink
    telescope_id: str
    owner: Person
    simulator: Simulator
    identity: ProxyIdentity
    people: list[Person] = field(default_factory=list)


async def broker_settings(tmp: Path, **overrides: Any) -> BrokerSettings:
    return BrokerSettings(
        state_dir=str(tmp / "broker"), insecure_http=True, instance="a", **overrides
    )


@contextlib.asynccontextmanager
async def running_broker(settings: BrokerSettings, port: int = 0) -> AsyncIterator[BrokerUnderTest]:
    async with serving_app(create_broker_app(settings), port=port) as running:
        yield BrokerUnderTest(running, settings)


async def sign_up(broker: BrokerUnderTest, name: str) -> Person:
    http = httpx.AsyncClient(base_url=broker.url, timeout=20)
    r = await http.post("/api/accounts", json={"name": name, "password": PASSWORD})
    assert r.status_code == 201, r.text
    account_id = r.json()["account"]["id"]
    r = await http.post("/api/tokens", json={"label": "tests"})
    assert r.status_code == 201, r.text
    return Person(name, http, r.json()["token"], account_id)


async def pair_proxy(
    broker: BrokerUnderTest, identity: ProxyIdentity, owner: Person, name: str = "Backyard"
) -> Pairing:
    codes: asyncio.Queue[PairCode] = asyncio.Queue()
    pairing = asyncio.create_task(pair(broker.url, identity, codes.put_nowait))
    code = await asyncio.wait_for(codes.get(), 10)
    r = await owner.http.post("/api/pairings/claim", json={"code": code.user_code, "name": name})
    assert r.status_code == 201, r.text
    return await asyncio.wait_for(pairing, 10)


FAST = Backoff(initial_s=0.1, maximum_s=0.5)


@contextlib.asynccontextmanager
async def running_proxy(
    simulator: Simulator, identity: ProxyIdentity, pairing: Pairing, **settings: Any
) -> AsyncIterator[tuple[RunningApp, BrokerLink]]:
    # As on a LAN: the proxy's own page needs a token, or a session made from a grant.
    settings.setdefault("tokens", {LAN_TOKEN: "operator"})
    proxy_settings = ProxySettings(
        telescopes=[simulator_target(simulator)], broker_url=pairing.broker_url, **settings
    )
    beside = broker_link(identity, pairing, backoff=FAST)
    grants = GrantBook(GrantVerifier(pairing.broker_key, pairing.telescope_id))
    app = create_app(proxy_settings, beside=[beside], grants=grants)
    async with serving_app(app) as proxy:
        link: BrokerLink = proxy.app.state.broker_link
        await link.wait_for(LinkState.ONLINE, 10)
        yield proxy, link


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    sim = Simulator(SimulatorConfig.ephemeral(fps=5.0))
    await sim.start()
    sim.telescope.mount.slew_rate_deg_s = 120.0
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def remote(tmp_path: Path, simulator: Simulator) -> AsyncIterator[Remote]:
    async with remote_stack(tmp_path, simulator) as stack:
        yield stack


@contextlib.asynccontextmanager
async def remote_stack(tmp: Path, simulator: Simulator, **broker: Any) -> AsyncIterator[Remote]:
    """A broker (with `broker` settings), ada's account, and a proxy paired to it and linked."""
    async with running_broker(await broker_settings(tmp, **broker)) as running:
        owner = await sign_up(running, "ada")
        identity = ProxyIdentity(tmp / "proxy")
        pairing = await pair_proxy(running, identity, owner)
        try:
            async with running_proxy(simulator, identity, pairing) as (proxy, link):
                remote = Remote(
                    running, proxy, link, pairing.telescope_id, owner, simulator, identity
                )
                try:
                    yield remote
                finally:
                    for person in remote.people:
                        await person.http.aclose()
        finally:
            await owner.http.aclose()


async def connect_and_detach(ws: ClientConnection, client: DcClient) -> None:
    """After the proxy's hello on a signaling socket, connect `client` over it, then detach the
    socket: the peer and its data channels carry on without it."""
    await next_message(ws, "hello")
    await client.connect(exchange=exchange_over(ws))
    await ws.send(json.dumps({"type": "detach"}))
    await next_message(ws, "detached")


def exchange_over(ws: ClientConnection) -> Callable[[str], Awaitable[str]]:
    """An offer sent over a signaling socket; its answer."""

    async def exchange(offer: str) -> str:
        await ws.send(json.dumps({"type": "offer", "sdp": offer}))
        return str((await next_message(ws, "answer"))["sdp"])

    return exchange
