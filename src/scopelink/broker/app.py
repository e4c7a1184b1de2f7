"""The broker's application factory: `Broker` (the service) behind its HTTP and WebSocket
routes, with the same Host and Origin checks as `serve`, and the web UI in broker mode."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from scopelink import __version__
from scopelink.broker import web
from scopelink.broker.refusal import BrokerRefusal
from scopelink.broker.service import Broker
from scopelink.settings import BrokerSettings
from scopelink.web import UI_DIR
from scopelink.web.http_problems import install_http, problem_response
from scopelink.web.security import SecurityMiddleware, SecurityPolicy


def create_broker_app(settings: BrokerSettings, broker: Broker | None = None) -> FastAPI:
    """The broker's ASGI app; it opens (or takes) a `Broker` when it starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = broker or await Broker.open(settings)
        app.state.broker = service
        await service.start()
        # What start-up made lives as long as the broker: out of the collector's full passes,
        # which otherwise walk it each time and hold every link and browser up while they do.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="scopelink broker",
        version=__version__,
        description="Signaling only: accounts, telescopes, grants and the relay of offers.",
        lifespan=lifespan,
    )
    install_http(app)

    @app.exception_handler(BrokerRefusal)
    async def _refused(request: Request, exc: BrokerRefusal) -> JSONResponse:
        problem = web.refusal_problem(exc)
        headers = {"Retry-After": "60"} if problem.status == 429 else None
        return problem_response(problem, headers)

    app.include_router(web.router)
    if UI_DIR.is_dir():
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")
    app.add_middleware(SecurityMiddleware, policy=SecurityPolicy(settings))
    return app
