"""Running the app under uvicorn: the listening socket, and a shutdown that ends live streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from fastapi import FastAPI

from scopelink.services.registry import TelescopeRegistry
from scopelink.settings import HostSettings
from scopelink.simulator.simulator import Simulator
from scopelink.web.app import Beside, create_app
from scopelink.web.listen import make_server


@dataclass
class RunningApp:
    """An app serving on a real port (see `serving`)."""

    app: FastAPI
    base_url: str
    port: int

    @property
    def registry(self) -> TelescopeRegistry:
        return self.app.state.registry

    @property
    def simulator(self) -> Simulator:
        simulator = self.app.state.simulator
        assert simulator is not None, "the app runs no built-in simulator"
        return simulator


@contextlib.asynccontextmanager
async def serving(
    settings: HostSettings, host: str = "127.0.0.1", beside: Sequence[Beside] = ()
) -> AsyncIterator[RunningApp]:
    """Serve the app on a free port of `host` in this event loop (tests, benchmarks)."""
    async with serving_app(create_app(settings, beside), host) as running:
        yield running


@contextlib.asynccontextmanager
async def serving_app(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningApp]:
    """Serve any of our ASGI apps (the app, the broker) on `port` of `host` (0: a free one)."""
    server, sock = make_server(app, host, port)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = sock.getsockname()[1]
        yield RunningApp(app, f"http://{host}:{port}", port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def run(settings: HostSettings) -> None:
    """Serve until interrupted."""
    server, sock = make_server(create_app(settings), settings.host, settings.port, "info")
    asyncio.run(server.serve(sockets=[sock]))
