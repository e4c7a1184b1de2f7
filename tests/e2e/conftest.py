"""End to end: the real app (with its embedded simulator) on a free port, driven in Chromium.

Debian's Chromium runs headless through Playwright for Python. Tests wait on what the page shows
(never on fixed sleeps), so they are as fast as the app and the simulator allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from scopelink.settings import ServeSettings
from tests.e2e import netns as netns_harness
from tests.e2e.netns import BrowserNetns
from tests.web.conftest import RunningApp, serve

CHROMIUM = os.environ.get("SCOPELINK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Where screenshots go; a run's tmp directory unless this names one (e.g. to look at them).
SCREENSHOTS = os.environ.get("SCOPELINK_SCREENSHOTS")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "has_touch": True,
    "is_mobile": True,
    "device_scale_factor": 2,
}

expect.set_options(timeout=10_000)

#: Page-side script text, for the start of an async page function: `recordDecoded(track)` puts
#: the stamp of every frame a track delivers (decoded, read before any presentation can drop
#: it) into `window.__received`.
RECORD_DECODED = """
  const { readFrameStampFrom } = await import("/lib/framestamp.js");
  window.__received = [];
  const recordDecoded = async (track) => {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const stamp = readFrameStampFrom(value, value.displayWidth, value.displayHeight);
      if (stamp) window.__received.push(stamp.frame);
      value.close();
    }
  };
"""


@dataclass
class UI:
    """A page showing the app, what it logged, and the app behind it."""

    page: Page
    app: RunningApp
    context: BrowserContext
    errors: list[str] = field(default_factory=list)

    def by(self, test_id: str):  # type: ignore[no-untyped-def]
        return self.page.get_by_test_id(test_id)

    @property
    def a_command(self):  # type: ignore[no-untyped-def]
        """A control that is enabled exactly when commands can be sent (Stop)."""
        return self.by("stop")

    async def open(self, base_url: str | None = None, query: str = "") -> None:
        """Open the app (`query`, e.g. `"?transport=mjpeg"`, is appended to the URL)."""
        await self.page.goto((base_url or self.app.base_url) + "/" + query)
        # Connected: the status says so and the command controls are enabled.
        await expect(self.by("status-link")).to_have_text("Connected")
        await expect(self.a_command).to_be_enabled()


class Relay:
    """A TCP relay between the browser and the app that can be cut: scopelink "going away"
    (its process killed, the network between gone) and coming back, on a real socket."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = False
        self._pipes: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def sever(self) -> None:
        """Close every connection now; new ones are closed as soon as they open."""
        self.cut = True
        for writer in list(self._pipes):
            writer.close()

    def restore(self) -> None:
        self.cut = False

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_writer}
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pipes -= {writer, up_writer}
            writer.close()
            up_writer.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


@pytest.fixture
async def relay(app: RunningApp) -> AsyncIterator[Relay]:
    relay = Relay(app.port)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    path = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
async def app() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=5.0)) as running:
        running.simulator.telescope.mount.slew_rate_deg_s = 60.0  # slews of a few seconds
        yield running


@pytest.fixture
async def s30_app() -> AsyncIterator[RunningApp]:
    """The app with an S30 simulated: a main and a wide-angle camera."""
    async with serve(ServeSettings(simulator_model="S30", simulator_fps=5.0)) as running:
        yield running


@pytest.fixture(scope="session")
def chromium() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (or SCOPELINK_CHROMIUM)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def open_ui(
    browser: Browser, app: RunningApp, **context_options: object
) -> AsyncIterator[UI]:
    """A fresh browser context on `app`, its page's errors collected; closed afterwards."""
    context = await browser.new_context(**context_options)  # type: ignore[arg-type]
    try:
        page = await context.new_page()
        ui = UI(page, app, context)
        page.on("console", lambda m: ui.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: ui.errors.append(f"uncaught: {e}"))
        yield ui
    finally:
        await context.close()


@pytest.fixture
async def ui(browser: Browser, app: RunningApp) -> AsyncIterator[UI]:
    """The app in a desktop-sized window."""
    async with open_ui(browser, app, viewport=DESKTOP) as ui:
        yield ui


@pytest.fixture
async def s30_ui(browser: Browser, s30_app: RunningApp) -> AsyncIterator[UI]:
    """The app with an S30 simulated, in a desktop-sized window."""
    async with open_ui(browser, s30_app, viewport=DESKTOP) as ui:
        yield ui


@pytest.fixture
async def phone(browser: Browser, app: RunningApp) -> AsyncIterator[UI]:
    """The app on a phone-sized touch screen."""
    async with open_ui(browser, app, **PHONE) as ui:
        yield ui


# -- the browser in its own network namespace (tests/e2e/netns.py) ---------------------------------


@pytest.fixture
def netns() -> Iterator[BrowserNetns]:
    """A network namespace for Chromium on a veth link to this one; deleted afterwards."""
    why = netns_harness.available()
    if why:
        # Never a silent skip: only a developer's explicit SCOPELINK_SKIP_NETNS=1 skips.
        if os.environ.get("SCOPELINK_SKIP_NETNS") == "1":
            pytest.skip(f"{why} (SCOPELINK_SKIP_NETNS=1)")
        pytest.fail(f"{why}; the network tests need root; set SCOPELINK_SKIP_NETNS=1 to skip them")
    with BrowserNetns.create() as created:
        yield created


@contextlib.asynccontextmanager
async def ui_in_netns(
    netns: BrowserNetns, chromium: str, scripts: Path, settings: ServeSettings | None = None
) -> AsyncIterator[UI]:
    """The app bound to the veth's root end (so allowed as `Host`), shown in a Chromium that
    runs inside `netns` and so reaches the app, ICE included, only across the veth."""
    settings = dataclasses.replace(settings or ServeSettings(simulator_fps=5.0), host=netns.root_v4)
    async with serve(settings, host=netns.root_v4) as app:
        args = [
            *CHROMIUM_ARGS,
            # Real addresses in the browser's candidates, so tests can see which link is used.
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            # Plain http on a non-localhost address is otherwise not a secure context.
            f"--unsafely-treat-insecure-origin-as-secure={app.base_url}",
        ]
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=netns.chromium_wrapper(scripts, chromium), args=args
            )
            try:
                async with open_ui(browser, app, viewport=DESKTOP) as ui:
                    yield ui
            finally:
                await browser.close()


@pytest.fixture
async def netns_ui(netns: BrowserNetns, chromium: str, tmp_path: Path) -> AsyncIterator[UI]:
    """The app at 5 fps shown in a Chromium inside `netns`; conditions are cleared afterwards."""
    try:
        async with ui_in_netns(netns, chromium, tmp_path) as ui:
            yield ui
    finally:
        netns.clear()
