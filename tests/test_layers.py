"""What each layer may carry: the services, the WebRTC peer and identity run in a telescope-side
proxy, which must not carry the simulator (the entry points start it: `scopelink.embedded`)."""

from __future__ import annotations

import subprocess
import sys


def test_the_services_the_peer_and_identity_do_not_load_the_simulator() -> None:
    code = (
        "import sys\n"
        "import scopelink.auth, scopelink.services.registry, scopelink.services.command_service\n"
        "import scopelink.services.telemetry, scopelink.webrtc.negotiation\n"
        "print(sorted(m for m in sys.modules if m.startswith('scopelink.simulator')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_peer_and_its_signaling_do_not_load_a_web_framework() -> None:
    """The proxy answers offers that reach it over its own link to the broker: the signaling
    conversation and the peer must run without Starlette or FastAPI."""
    code = (
        "import sys\n"
        "import scopelink.auth, scopelink.webrtc.signaling, scopelink.webrtc.sessions\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'fastapi')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_broker_carries_no_media_stack() -> None:
    """The broker is signaling only: it loads no WebRTC, codec, image or telescope-service
    module (its memory per link and its garbage collector's passes stay small); the catalogue
    and its ephemerides load only when someone searches it."""
    code = (
        "import sys\n"
        "import scopelink.broker.app, scopelink.broker.cli, scopelink.web.listen\n"
        "heavy = ('aiortc', 'av', 'numpy', 'cv2', 'ephem')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}\n"
        "    | {m for m in sys.modules if m.startswith(('scopelink.services', "
        "'scopelink.simulator'))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
