"""Running the app under uvicorn: the listening socket, and a shutdown that ends live streams."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from scopelink.settings import AppSettings
from scopelink.web.app import create_app
from scopelink.web.mjpeg import listening_socket


class AppServer(uvicorn.Server):
    """uvicorn waits for open responses before the app's lifespan shutdown runs; MJPEG and SSE
    responses never finish on their own, so end them first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after serving, which tears the loop down mid-cleanup;
        # handling it in the loop lets the simulator and the links close in order.
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app = self.config.app
        if isinstance(app, FastAPI) and hasattr(app.state, "registry"):
            await app.state.telemetry.stop()
            for session in app.state.registry:
                await session.pipeline.stop()
        await super().shutdown(sockets)


def make_server(
    app: FastAPI, host: str, port: int, log_level: str = "warning"
) -> tuple[AppServer, socket.socket]:
    """A server and its listening socket (port 0 picks a free port)."""
    sock = listening_socket(host, port)
    return AppServer(uvicorn.Config(app, log_level=log_level)), sock


def run(settings: AppSettings) -> None:
    """Serve until interrupted."""
    server, sock = make_server(create_app(settings), settings.host, settings.port, "info")
    asyncio.run(server.serve(sockets=[sock]))
