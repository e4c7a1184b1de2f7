"""The live view through a TURN relay: a real coturn on loopback, Chromium forced to relay only.

coturn (Debian's `coturn` package) runs as a subprocess with `use-auth-secret`, so the app mints
time-limited credentials from the shared secret (scopelink.webrtc.ice). With `?ice=relay` the page
asks for `iceTransportPolicy: "relay"`: the browser offers only relay candidates, so every media
packet must pass through coturn. A wrong secret means no allocation, and the page falls back to
MJPEG.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from scopelink.settings import ServeSettings
from scopelink.web.rtc import SERVER_TURN_USER
from tests.e2e.conftest import DESKTOP, UI, open_ui
from tests.e2e.test_webrtc import NEWER_FRAME, SHOWN_FRAME, playing, stamps_advance
from tests.web.conftest import serve

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"

pytestmark = pytest.mark.skipif(
    not Path(TURNSERVER).exists(),
    reason="no coturn: apt-get install coturn (it provides /usr/bin/turnserver)",
)

#: Keep every RTCPeerConnection the page makes, so the test can read its getStats().
KEEP_PEER_CONNECTIONS = """(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
})()"""

#: The selected candidate pair of the connected peer connection: both candidates (type,
#: address, port), the bytes, the ICE policy, and the server's candidates as its answer listed
#: them (shared with the network-condition tests).
SELECTED_PAIR = """async () => {
  const pc = window.__pcs.filter((p) => p.connectionState === 'connected').at(-1);
  if (!pc) return null;
  const stats = new Map();
  (await pc.getStats()).forEach((s) => stats.set(s.id, s));
  const transport = [...stats.values()].find((s) => s.type === 'transport');
  const pair = transport && stats.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const offered = pc.remoteDescription.sdp.split('\\r\\n')
    .filter((line) => line.startsWith('a=candidate:'))
    .map((line) => line.split(' ')[4]);
  return {
    policy: pc.getConfiguration().iceTransportPolicy,
    local: local.candidateType, localAddress: local.address, localPort: local.port,
    remote: remote.candidateType, remoteAddress: remote.address,
    bytesReceived: pair.bytesReceived, offered,
  };
}"""


@dataclass
class Turn:
    port: int
    secret: str
    log: Path
    min_port: int
    max_port: int

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


@pytest.fixture
def turn(tmp_path: Path) -> Iterator[Turn]:
    """coturn on 127.0.0.1, a free port, shared-secret auth, loopback peers allowed."""
    port = _free_port()
    base = 50000 + secrets.randbelow(300) * 50
    server = Turn(port, secrets.token_hex(16), tmp_path / "turn.log", base, base + 49)
    process = subprocess.Popen(
        [
            TURNSERVER,
            "-n",  # no configuration file
            "--verbose",  # allocations and sessions in the log
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--use-auth-secret",
            f"--static-auth-secret={server.secret}",
            "--realm=scopelink.test",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            f"--min-port={server.min_port}",
            f"--max-port={server.max_port}",
            "--no-cli",
            f"--log-file={server.log}",
            "--simple-log",
            "--no-stdout-log",
            f"--pidfile={tmp_path / 'turn.pid'}",
            f"--db={tmp_path / 'turndb'}",  # not the system's /var/lib/turn/turndb
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once its TCP listener answers
            assert process.poll() is None, f"turnserver exited: {_text(server.log)}"
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert time.monotonic() < deadline, f"turnserver not listening: {_text(server.log)}"
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


@contextlib.asynccontextmanager
async def relayed_ui(browser: Browser, turn: Turn, secret: str) -> AsyncIterator[UI]:
    settings = ServeSettings(simulator_fps=5.0, turn_urls=[turn.url], turn_secret=secret)
    async with serve(settings) as app:
        async with open_ui(browser, app, viewport=DESKTOP) as ui:
            await ui.page.add_init_script(KEEP_PEER_CONNECTIONS)
            yield ui


async def test_with_relay_only_ice_the_video_flows_through_coturn(
    browser: Browser, turn: Turn
) -> None:
    async with relayed_ui(browser, turn, turn.secret) as ui:
        await ui.open(query="?transport=webrtc&ice=relay")
        await playing(ui, "WebRTC")
        await stamps_advance(ui)
        assert not await ui.page.evaluate("() => window.scopelink.transport.fellBack")

        # The browser's end of the selected pair is a relay candidate on coturn's relay ports,
        # and the media arrived over it.
        pair: dict[str, Any] | None = await ui.page.evaluate(SELECTED_PAIR)
        assert pair is not None, "no connected peer connection with a selected pair"
        assert pair["policy"] == "relay"
        assert pair["local"] == "relay", pair
        assert pair["localAddress"] == "127.0.0.1", pair
        assert turn.min_port <= pair["localPort"] <= turn.max_port, pair
        assert pair["bytesReceived"] > 10_000, pair
        # coturn accepted the browser's minted credentials (aiortc allocates as its own user).
        log = _text(turn.log)
        browser_allocations = [
            line
            for line in log.splitlines()
            if "ALLOCATE processed, success" in line and f":{SERVER_TURN_USER}>" not in line
        ]
        assert browser_allocations, log[-3000:]
        assert ui.errors == []


async def test_with_a_wrong_turn_secret_the_page_falls_back_to_mjpeg(
    browser: Browser, turn: Turn
) -> None:
    async with relayed_ui(browser, turn, "not-" + turn.secret) as ui:
        await ui.open(query="?transport=webrtc&ice=relay")
        await expect(ui.by("live-state")).to_contain_text("MJPEG", timeout=10_000)
        await playing(ui, "MJPEG")
        assert await ui.page.evaluate("() => window.scopelink.transport.fellBack")
        shown = await ui.page.evaluate(SHOWN_FRAME)
        await ui.page.wait_for_function(NEWER_FRAME, arg=shown if shown is not None else -1)
        await expect(ui.by("live-transport-toggle")).to_have_text("Use WebRTC")
        # coturn refused the credentials: no allocation succeeded, for the browser or aiortc.
        log = _text(turn.log)
        assert "401: Unauthorized" in log, log[-3000:]
        assert "ALLOCATE processed, success" not in log, log[-3000:]
