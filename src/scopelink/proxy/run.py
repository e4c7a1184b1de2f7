"""`scopelink proxy`: pair once if need be, then serve the telescope's app on the LAN and hold
the link to the broker beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.lan import LanAdvertiser, lan_addresses
from scopelink.proxy.link import BrokerLink, LinkRefusedError

log = logging.getLogger(__name__)


def broker_link(
    identity: ProxyIdentity, pairing: Pairing, **link_options: object
) -> Callable[[FastAPI], AbstractAsyncContextManager[BrokerLink]]:
    """The broker link, run beside the app (`create_app(..., beside=[...])`) for the app's one
    telescope; kept on `app.state.broker_link`."""

    @contextlib.asynccontextmanager
    async def beside(app: FastAPI) -> AsyncIterator[BrokerLink]:
        registry = app.state.registry
        telescopes = list(registry)
        if len(telescopes) != 1:
            raise RuntimeError(f"a proxy serves one telescope; {len(telescopes)} are configured")
        link = BrokerLink(
            identity,
            pairing,
            telescopes[0],
            app.state.peer_host,
            grants=app.state.policy.grants,
            lan_url=getattr(app.state, "lan_url", None),
            **link_options,  # type: ignore[arg-type]
        )
        app.state.broker_link = link
        task = asyncio.create_task(_run(link), name="broker-link")
        try:
            yield link
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return beside


def lan_presence(
    telescope_id: str, port: int, bind: str
) -> Callable[[FastAPI], AbstractAsyncContextManager[LanAdvertiser | None]]:
    """The page announced by mDNS/DNS-SD while the app runs (nothing when it listens on
    loopback only); its URL is on `app.state.lan_url` for the broker link to report."""

    @contextlib.asynccontextmanager
    async def beside(app: FastAPI) -> AsyncIterator[LanAdvertiser | None]:
        addresses = lan_addresses(bind)
        if not addresses:
            app.state.lan_url = None
            yield None
            return
        advertiser = LanAdvertiser(telescope_id, port, addresses)
        await advertiser.start()
        app.state.lan_url = advertiser.url
        try:
            yield advertiser
        finally:
            await advertiser.stop()

    return beside


async def _run(link: BrokerLink) -> None:
    try:
        await link.run()
    except LinkRefusedError:
        pass  # logged by the link; the LAN page still works
