"""Listening for our ASGI apps (the app, the broker) under uvicorn: a socket that keeps streams
fresh and responses prompt, and a server that ends live streams before its shutdown waits for
them. Nothing here knows the services, so the broker loads none of them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

#: Unsent bytes a connection may hold in the kernel; see `listening_socket`.
NOTSENT_LOWAT = 32 * 1024


def listening_socket(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A listening socket for uvicorn (`Server.serve(sockets=[...])`) that keeps MJPEG fresh.

    Linux grows a connection's send buffer to megabytes; a viewer on a slow link would get
    seconds of old frames queued in the kernel, out of reach of "latest frame wins". With
    TCP_NOTSENT_LOWAT (inherited by accepted connections) a slow viewer's writes block after
    `NOTSENT_LOWAT` unsent bytes, and its stream skips to the newest frame instead.

    TCP_NODELAY too (also inherited): asyncio sets it only on sockets whose `proto` is
    IPPROTO_TCP, and `create_server`'s have 0. Without it a response written in two parts
    (uvicorn writes the headers, then the body) waits for the client's delayed ACK: 40 ms on
    every request of a kept-alive connection after its first few.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=backlog)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if hasattr(socket, "TCP_NOTSENT_LOWAT"):  # Linux and macOS; elsewhere buffers stay default
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, NOTSENT_LOWAT)
    return sock


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
                for camera in session.cameras.values():
                    await camera.pipeline.stop()
        await super().shutdown(sockets)


def make_server(
    app: FastAPI, host: str, port: int, log_level: str = "warning", **config: Any
) -> tuple[AppServer, socket.socket]:
    """A server and its listening socket (port 0 picks a free port); `config`: more of
    uvicorn's settings (`ssl_certfile`, `ssl_keyfile`)."""
    sock = listening_socket(host, port)
    return AppServer(uvicorn.Config(app, log_level=log_level, **config)), sock
