"""A broker, a simulated telescope and its proxy for the browser tests of broker mode
(tests/e2e/test_broker_ui.py): the same real pieces tests/remote/conftest.py starts, but the
proxy is paired by whoever types its code (the page, in a test) and is started and stopped at
will, to see the page follow it online and offline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.link import BrokerLink
from scopelink.proxy.pairing import pair
from scopelink.schema.link import PairCode
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from scopelink.web.server import RunningApp
from tests.remote.conftest import (
    BrokerUnderTest,
    Person,
    broker_settings,
    pair_proxy,
    running_broker,
    running_proxy,
    sign_up,
)


@dataclass
class PairingInProgress:
    """A proxy asking to be paired: the code it shows, and the pairing once someone types it."""

    code: str
    done: asyncio.Task[Pairing]


@dataclass
class RemoteSite:
    """A broker and a simulated telescope whose proxy can be paired, started and stopped."""

    broker: BrokerUnderTest
    simulator: Simulator
    identity: ProxyIdentity
    pairing: Pairing | None = None
    proxy: RunningApp | None = None
    link: BrokerLink | None = None
    people: list[Person] = field(default_factory=list)
    _proxy: contextlib.AsyncExitStack | None = None

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def telescope_id(self) -> str:
        assert self.pairing is not None, "pair the proxy first"
        return self.pairing.telescope_id

    async def start_pairing(self) -> PairingInProgress:
        """The proxy asks the broker for a code, as `scopelink proxy` does on its first run."""
        codes: asyncio.Queue[PairCode] = asyncio.Queue()
        done = asyncio.create_task(pair(self.broker.url, self.identity, codes.put_nowait))
        code = await asyncio.wait_for(codes.get(), 10)
        return PairingInProgress(code.user_code, done)

    async def paired(self, pairing: PairingInProgress) -> None:
        """Wait for the code to be claimed (by the page)."""
        self.pairing = await asyncio.wait_for(pairing.done, 15)

    async def pair_to(self, owner: Person, name: str = "Backyard") -> None:
        """Pair the proxy to `owner`'s account over the API (for tests that start from there)."""
        self.pairing = await pair_proxy(self.broker, self.identity, owner, name)

    async def sign_up(self, name: str) -> Person:
        person = await sign_up(self.broker, name)
        self.people.append(person)
        return person

    async def start_proxy(self) -> None:
        """Serve the telescope's app and link it to the broker (online once this returns)."""
        assert self.pairing is not None and self._proxy is None
        stack = contextlib.AsyncExitStack()
        self.proxy, self.link = await stack.enter_async_context(
            running_proxy(self.simulator, self.identity, self.pairing)
        )
        self._proxy = stack

    async def stop_proxy(self) -> None:
        """Stop the proxy: its peers close and its link to the broker drops."""
        if self._proxy is not None:
            stack, self._proxy = self._proxy, None
            await stack.aclose()
        self.proxy = self.link = None


@contextlib.asynccontextmanager
async def remote_site(tmp: Path) -> AsyncIterator[RemoteSite]:
    """A broker on loopback and a simulator at 5 fps with a fast mount; the proxy is up to the
    test. Everything is stopped afterwards."""
    simulator = Simulator(SimulatorConfig.ephemeral(fps=5.0))
    await simulator.start()
    simulator.telescope.mount.slew_rate_deg_s = 120.0
    try:
        async with running_broker(await broker_settings(tmp)) as broker:
            site = RemoteSite(broker, simulator, ProxyIdentity(tmp / "proxy"))
            try:
                yield site
            finally:
                await site.stop_proxy()
                for person in site.people:
                    await person.http.aclose()
    finally:
        await simulator.stop()
