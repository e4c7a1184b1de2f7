"""What each layer may carry: the services, the WebRTC peer and identity run in a telescope-side
proxy, which must not carry the simulator (the entry points start it: `scopelink.embedded`)."""

from __future__ import annotations

import subprocess
import sys


def modules_loaded_by(*imports: str) -> set[str]:
    """Every module in `sys.modules` after a fresh interpreter imports `imports`."""
    code = f"import sys\nimport {', '.join(imports)}\nprint('\\n'.join(sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(out.stdout.split())
    assert set(imports) <= loaded, out.stdout  # the listing is whole, not empty
    return loaded


def roots(modules: set[str]) -> set[str]:
    """The top-level packages of `modules`."""
    return {m.split(".")[0] for m in modules}


def test_the_services_the_peer_and_identity_do_not_load_the_simulator() -> None:
    loaded = modules_loaded_by(
        "scopelink.auth",
        "scopelink.services.registry",
        "scopelink.services.command_service",
        "scopelink.services.telemetry",
        "scopelink.webrtc.negotiation",
    )
    assert sorted(m for m in loaded if m.startswith("scopelink.simulator")) == []


def test_the_peer_and_its_signaling_do_not_load_a_web_framework() -> None:
    """The proxy answers offers that reach it over its own link to the broker: the signaling
    conversation and the peer must run without Starlette or FastAPI."""
    loaded = modules_loaded_by(
        "scopelink.auth", "scopelink.webrtc.signaling", "scopelink.webrtc.sessions"
    )
    assert sorted(roots(loaded) & {"starlette", "fastapi"}) == []


def test_the_broker_carries_no_media_stack() -> None:
    """The broker is signaling only: it loads no WebRTC, codec, image or telescope-service
    module (its memory per link and its garbage collector's passes stay small); the catalogue
    and its ephemerides load only when someone searches it."""
    loaded = modules_loaded_by(
        "scopelink.broker.app", "scopelink.broker.cli", "scopelink.web.listen"
    )
    heavy = roots(loaded) & {"aiortc", "av", "numpy", "cv2", "ephem"}
    ours = {m for m in loaded if m.startswith(("scopelink.services", "scopelink.simulator"))}
    assert sorted(heavy | ours) == []
