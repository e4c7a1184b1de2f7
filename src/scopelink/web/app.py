"""The application factory: wires settings, services and transports into one ASGI app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from scopelink import __version__
from scopelink.auth import GrantBook
from scopelink.catalog import Catalogue
from scopelink.embedded import start_simulator
from scopelink.services.audit import AuditLog
from scopelink.services.command_service import CommandService
from scopelink.services.journal import IdempotencyJournal
from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telemetry import TelemetryHub
from scopelink.settings import HostSettings, ServeSettings
from scopelink.web import UI_DIR, api, mjpeg, problems, signaling, sse, whep
from scopelink.web.rtc import PeerHost
from scopelink.web.security import SecurityMiddleware, SecurityPolicy
from scopelink.webrtc.ice import IceSettings
from scopelink.webrtc.sessions import PeerManager, WebRtcSettings

log = logging.getLogger(__name__)


def webrtc_settings(settings: HostSettings) -> WebRtcSettings:
    """The WebRTC settings the app's settings describe."""
    if settings.turn_urls and not settings.turn_secret:
        raise ValueError("TURN servers need a TURN secret (--turn-secret)")
    ice = IceSettings(
        stun_urls=list(settings.stun_urls),
        turn_urls=list(settings.turn_urls),
        turn_secret=settings.turn_secret,
        turn_ttl_s=settings.turn_ttl_s,
    )
    return WebRtcSettings(
        ice=ice,
        max_peers=settings.max_peers,
        max_channel_peers=settings.max_channel_peers,
        connect_timeout_s=settings.webrtc_connect_timeout_s,
        adaptive=settings.webrtc_adaptive,
        passthrough=settings.webrtc_passthrough,
    )


#: Something an entry point runs beside the app while it serves (the proxy's broker link),
#: entered once the telescopes are known and left before they are stopped.
Beside = Callable[[FastAPI], AbstractAsyncContextManager[object]]


def create_app(
    settings: HostSettings | None = None,
    beside: Sequence[Beside] = (),
    grants: GrantBook | None = None,
) -> FastAPI:
    """The app for `scopelink serve` (`ServeSettings`: the built-in simulator when no telescope
    is given) or for the telescope-side proxy (which never carries the simulator, and runs its
    broker link `beside` the app, and takes its broker's `grants` on its LAN page)."""
    settings = settings or ServeSettings()
    policy = SecurityPolicy(settings, settings.tokens, grants)
    audit = AuditLog(Path(settings.audit_log).expanduser() if settings.audit_log else None)
    journal = (
        IdempotencyJournal(Path(settings.idempotency_journal).expanduser())
        if settings.idempotency_journal
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = TelescopeRegistry(settings)
        app.state.registry = registry
        app.state.telemetry = TelemetryHub(registry)
        app.state.commands = CommandService(
            registry,
            app.state.catalogue,
            rate=settings.command_rate,
            audit=audit,
            journal=journal,
        )
        peers = PeerManager.from_settings(app.state.webrtc_settings)
        app.state.peers = peers
        app.state.peer_host = PeerHost(
            peers, app.state.webrtc_settings, app.state.commands, app.state.telemetry
        )
        # A telescope's live source changes with its view mode: its peers move with it.
        registry.on_added(
            lambda s: s.pipeline.add_source_listener(lambda: peers.source_changed(s.id, s.pipeline))
        )
        await registry.start()
        # No telescope given: the built-in simulator, in this process (scopelink.embedded).
        simulator = None
        if isinstance(settings, ServeSettings) and settings.simulator and not len(registry):
            simulator = await start_simulator(registry, settings)
        app.state.simulator = simulator
        try:
            async with contextlib.AsyncExitStack() as stack:
                for start in beside:
                    await stack.enter_async_context(start(app))
                yield
        finally:
            await app.state.peers.close_all()
            await app.state.commands.close()
            await app.state.telemetry.stop()
            await registry.stop()
            if simulator is not None:
                await simulator.stop()

    app = FastAPI(
        title="scopelink",
        version=__version__,
        description="Control a Seestar smart telescope and watch it live.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.policy = policy
    app.state.catalogue = Catalogue()
    app.state.webrtc_settings = webrtc_settings(settings)
    problems.install(app)
    app.include_router(api.router)
    app.include_router(sse.router)
    app.include_router(mjpeg.router)
    app.include_router(whep.router)
    app.include_router(signaling.router)
    if UI_DIR.is_dir():
        app.mount("/", StaticFiles(directory=UI_DIR, html=True), name="ui")
    app.add_middleware(SecurityMiddleware, policy=policy)
    return app
