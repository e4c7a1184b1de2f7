"""The real app on a real port, with its embedded simulator, and an HTTP client for it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from scopelink.settings import AppSettings
from scopelink.web.app import create_app
from scopelink.web.server import make_server


@dataclass
class RunningApp:
    app: FastAPI
    base_url: str
    port: int

    @property
    def registry(self):  # type: ignore[no-untyped-def]
        return self.app.state.registry

    @property
    def simulator(self):  # type: ignore[no-untyped-def]
        return self.app.state.registry.simulator


@contextlib.asynccontextmanager
async def serve(settings: AppSettings) -> AsyncIterator[RunningApp]:
    app = create_app(settings)
    server, sock = make_server(app, "127.0.0.1", 0)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        port = sock.getsockname()[1]
        yield RunningApp(app, f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def wait_connected(http: httpx.AsyncClient, telescope_id: str = "simulator") -> None:
    for _ in range(200):
        state = (await http.get(f"/api/telescopes/{telescope_id}")).json()
        if state["connection"]["control"] == "connected":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the telescope never connected")


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(AppSettings(simulator_fps=5.0)) as app:
        app.simulator.telescope.mount.slew_rate_deg_s = 120.0
        yield app


@pytest.fixture
async def http(running: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=running.base_url, timeout=20) as client:
        await wait_connected(client)
        yield client
