"""The remote stack across home NATs with Debian's Chromium as the browser
(tests/nat/test_chromium.py, bench/bench_remote.py).

`remote_stack()` runs the real commands in a `NatTopology`: `scopelink broker` and coturn in
`public`, `scopelink simulate` and `scopelink proxy` in `proxy_host`; their output is read all the
time (a full pipe would block them) and kept for failure messages. `chromium()` launches Chromium
inside `browser_host` through `net.chromium_wrapper` with tests/e2e's flags.

Trust: Chromium is given `--ignore-certificate-errors-spki-list` with the SHA-256 of the public
keys of the broker's development certificate and of coturn's certificate (`spki_hash`). It is a
pin, not a blanket (any other certificate is still checked), and it is browser-wide, so it also
covers the TLS connection of TURN over TLS (`turns:`), which a context's
`ignore_https_errors=True` does not: with that option instead, the page and its signaling socket
worked but Chromium allocated no TLS relay (tried in the UDP-blocked home: relay candidates over
TCP only). Chromium takes the list only with a `--user-data-dir`, which Playwright always gives.

DNS: Chromium resolves the STUN and TURN servers of a peer connection over DNS and not from the
namespace's hosts file, so `browser_host` gets a resolv.conf naming a stub resolver on its own
loopback (`serve_dns`), which answers the public names and nothing else.

`BrokerPage` drives the broker's page as a user does: create an account, pair by the proxy's
code, Connect, Disconnect; `MARKS` records in the page, on its clock, when each step of a
connection happened (the click, the signaling socket open, the proxy's hello, the offer sent,
the answer, ICE connected, the data channel's welcome, the first frame with a stamp).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright, expect

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP
from tests.nat.topology import (
    BROKER_HOST,
    BROKER_V4,
    BROKER_V6,
    NETNS_ETC,
    TURN_HOST,
    TURN_V4,
    TURN_V6,
    NatTopology,
    Turn,
)

BROKER_PORT = 8443
BROKER_URL = f"https://{BROKER_HOST}:{BROKER_PORT}"
PASSWORD = "correct horse battery"
TELESCOPE = "Backyard"
#: Every TURN URL the broker hands out. The proxy (aiortc) uses the first TURN URL only, so UDP
#: comes first; Chromium uses them all.
TURN_URLS = (
    f"turn:{TURN_HOST}:3478?transport=udp",
    f"turn:{TURN_HOST}:3478?transport=tcp",
    f"turns:{TURN_HOST}:5349?transport=tcp",
)
STATUS_DIRECT = f"Connected to {TELESCOPE} · direct (peer to peer)"
STATUS_RELAYED = f"Connected to {TELESCOPE} · through a relay (TURN)"


def spki_hash(cert_pem: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate: Chromium's
    `--ignore-certificate-errors-spki-list` entry for it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Output:
    """A process's stdout (stderr merged), read line by line as it comes."""

    process: Any
    name: str
    lines: list[str] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace"))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern: str, timeout_s: float = 30.0) -> str:
        """The first group of the first line matching `pattern` (from the start of the output)."""
        async with asyncio.timeout(timeout_s):
            seen = 0
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match[1]
                seen = len(self.lines)
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"{self.name} exited before {pattern!r}:\n{self.tail()}")
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.process.wait(), 10)
        if self._reader is not None:
            self._reader.cancel()

    def tail(self, chars: int = 3000) -> str:
        return "".join(self.lines)[-chars:]


@dataclass
class RemoteStack:
    """The broker, coturn, the simulator and the proxy, running in a topology."""

    net: NatTopology
    turn: Turn
    broker_cert: Path
    code: str
    outputs: dict[str, Output]

    @property
    def spki(self) -> list[str]:
        """What Chromium must trust: the broker's and coturn's certificates."""
        return [spki_hash(self.broker_cert), spki_hash(self.turn.cert)]

    def logs(self, chars: int = 2500) -> str:
        """Each process's latest output, for an assertion message."""
        return "\n".join(f"--- {name}\n{out.tail(chars)}" for name, out in self.outputs.items())


@contextlib.asynccontextmanager
async def remote_stack(
    net: NatTopology,
    tmp: Path,
    *,
    fps: float = 5.0,
    turn_urls: Sequence[str] = TURN_URLS,
    stun_url: str = f"stun:{TURN_HOST}:3478",
) -> AsyncIterator[RemoteStack]:
    """Start coturn, `scopelink broker` (with STUN and `turn_urls`), `scopelink simulate` (at
    `fps`) and `scopelink proxy`; yield once the proxy shows its pairing code. Everything is
    stopped on the way out, while the event loop still runs."""
    turn = net.start_turn(tmp / "turn")
    outputs: dict[str, Output] = {}
    pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.STDOUT}

    async def spawn(name: str, namespace: Any, *args: str) -> Output:
        process = await net.spawn_python(namespace, "-m", "scopelink.cli", *args, **pipes)
        out = outputs[name] = Output(process, name)
        out.start()
        return out

    try:
        turns = [arg for url in turn_urls for arg in ("--turn", url)]
        broker = await spawn(
            "broker", net.public, "broker",
            "--host", net.broker_address, "--port", str(BROKER_PORT), "--name", BROKER_HOST,
            "--state-dir", str(tmp / "broker"), "--instance", "pub",
            "--stun", stun_url, *turns, "--turn-secret", turn.secret,
        )  # fmt: skip
        telescope = await spawn(
            "simulate", net.proxy_host, "simulate", "--fps", str(fps), "--no-discovery"
        )
        cert = Path(await broker.wait_for(r"self-signed\): (\S+)"))
        await broker.wait_for(r"(scopelink broker on)")
        await telescope.wait_for(r"(Simulated Seestar)")
        proxy = await spawn(
            "proxy", net.proxy_host, "proxy",
            "--broker", BROKER_URL, "--broker-ca", str(cert), "--telescope", "127.0.0.1",
            "--state-dir", str(tmp / "proxy"), "--host", "0.0.0.0", "--port", "8000",
        )  # fmt: skip
        code = await proxy.wait_for(r"type the code\s+(\w{4}-\w{4})")
        yield RemoteStack(net, turn, cert, code, outputs)
    finally:
        for out in reversed(list(outputs.values())):
            await out.stop()


# -- DNS for the browser's home -------------------------------------------------------------------

#: The names the public network serves, and their addresses by family.
PUBLIC_NAMES = {
    TURN_HOST: (TURN_V4, TURN_V6),
    BROKER_HOST: (BROKER_V4, BROKER_V6),
}


def serve_dns(family: str, port: int = 53) -> None:
    """A stub resolver on 127.0.0.1:`port` answering `PUBLIC_NAMES` (A records for "ipv4" and
    "dual", AAAA for "ipv6" and "dual") and NXDOMAIN for every other name; runs until killed.

    Chromium resolves the STUN and TURN servers of a peer connection over DNS, not from
    /etc/hosts (seen in these namespaces: it asked the system's name server for
    `turn.scopelink.test` although the namespace's hosts file names it); with no answer it
    gathered no server-reflexive and no UDP relay candidate at all, and its TCP and TLS relay
    candidates came 13 s late. This stands in for the Internet's DNS, and keeps every query
    Chromium makes (its own background look-ups too) on the namespace's loopback."""
    import socket

    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    wanted = {
        dns.rdatatype.A: family in ("ipv4", "dual"),
        dns.rdatatype.AAAA: family in ("ipv6", "dual"),
    }
    names = {f"{name}.": addresses for name, addresses in PUBLIC_NAMES.items()}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    print("dns: listening", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            query = dns.message.from_wire(data)
            question = query.question[0]
        except Exception:  # not a query we can read: no answer, as a real server
            continue
        response = dns.message.make_response(query)
        name = question.name.to_text().lower()
        if name not in names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif wanted.get(question.rdtype):
            v4, v6 = names[name]
            address = v4 if question.rdtype == dns.rdatatype.A else v6
            kind = dns.rdatatype.to_text(question.rdtype)
            response.answer.append(dns.rrset.from_text(name, 60, "IN", kind, address))
        sock.sendto(response.to_wire(), peer)


# -- Chromium -------------------------------------------------------------------------------------


def prepare_browser_home(net: NatTopology) -> None:
    """Chromium is there, and `browser_host` has its own resolv.conf naming `serve_dns`
    (`ip netns exec` mounts /etc/netns/<name>/* over /etc/)."""
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    (NETNS_ETC / net.browser_host.name / "resolv.conf").write_text("nameserver 127.0.0.1\n")


@contextlib.asynccontextmanager
async def chromium(
    net: NatTopology, tmp: Path, spki: Sequence[str], *, extra_args: Sequence[str] = ()
) -> AsyncIterator[Browser]:
    """Debian's Chromium inside `browser_host`, trusting the certificates of `spki`, resolving
    names through `serve_dns` on the namespace's loopback."""
    prepare_browser_home(net)
    resolver = None
    if ("udp", 53) not in net.listening(net.browser_host):  # one for every browser there
        pipes = {"stdout": asyncio.subprocess.PIPE, "stderr": asyncio.subprocess.STDOUT}
        dns = ("-m", "tests.nat.browser", "dns", net.family)
        resolver = Output(await net.spawn_python(net.browser_host, *dns, **pipes), "dns")
        resolver.start()
    try:
        if resolver is not None:
            await resolver.wait_for(r"(listening)", timeout_s=10)
        wrapper = net.chromium_wrapper(net.browser_host, tmp, CHROMIUM)
        spki_list = f"--ignore-certificate-errors-spki-list={','.join(spki)}"
        args = [*CHROMIUM_ARGS, spki_list, *extra_args]
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(wrapper), args=args)
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        if resolver is not None:
            await resolver.stop()


#: Installed before the page's own scripts: every signaling message's type and time, both ways.
WATCH_SOCKETS = """(() => {
  window.__ws = [];
  const Original = window.WebSocket;
  window.WebSocket = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        let type = "?";
        try { type = JSON.parse(event.data).type; } catch {}
        window.__ws.push({ t: performance.now(), dir: "in", type });
      });
    }
    send(data) {
      let type = "?";
      let candidate;
      try { ({ type, candidate } = JSON.parse(data)); } catch {}
      window.__ws.push({ t: performance.now(), dir: "out", type, candidate });
      return super.send(data);
    }
  };
})()"""

#: Once the page has started: marks (on the page's clock, `performance.now()` ms) of what the
#: user does and what the page's own services report. `window.__marks` is a list of
#: {t, what}; `window.__clearMarks()` empties it (and the socket log).
MARKS = """() => {
  const s = window.scopelink;
  const marks = (window.__marks = []);
  const mark = (what, t = performance.now()) => marks.push({ t, what });
  window.__clearMarks = () => { marks.length = 0; window.__ws.length = 0; };
  document.addEventListener("click", (event) => {
    const id = event.target?.closest?.("[data-testid]")?.dataset.testid;
    if (id === "remote-connect" || id === "remote-disconnect") mark(`click:${id}`, event.timeStamp);
  }, true);
  const connector = s.transport.connector;
  connector.addEventListener("signaling", (e) => mark(`signaling:${e.detail.phase}`));
  connector.addEventListener("statechange", () => mark(`connector:${connector.state}`));
  s.remote.addEventListener("statechange", (e) => mark(`remote:${e.detail.to}`));
  s.transport.addEventListener("frame", (e) => {
    if (e.detail.stamp && !marks.some((m) => m.what === "frame")) {
      mark("frame", e.detail.shownAt);
      mark("frame-callback");
    }
  });
}"""

#: The selected candidate pair of the live view's connection: types, relay protocol, addresses;
#: and every local relay candidate's protocol (what TURN transports Chromium could allocate on).
SELECTED_PAIR = """async () => {
  const pc = window.scopelink.transport.connector.pc;
  if (!pc) return null;
  const stats = new Map();
  (await pc.getStats()).forEach((s) => stats.set(s.id, s));
  const transport = [...stats.values()].find((s) => s.type === "transport");
  const pair = transport && stats.get(transport.selectedCandidatePairId);
  if (!pair) return null;
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  const relays = [...stats.values()]
    .filter((s) => s.type === "local-candidate" && s.candidateType === "relay")
    .map((s) => s.relayProtocol);
  return {
    local: { type: local.candidateType, address: local.address, protocol: local.protocol,
             relayProtocol: local.relayProtocol ?? null },
    remote: { type: remote.candidateType, address: remote.address },
    bytesReceived: pair.bytesReceived,
    relayProtocols: [...new Set(relays)].sort(),
  };
}"""


@dataclass
class BrokerPage:
    """The broker's page in a Chromium context, with what it logged."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def by(self, test_id: str):  # type: ignore[no-untyped-def]
        return self.page.get_by_test_id(test_id)

    def telescope(self, name: str = TELESCOPE):  # type: ignore[no-untyped-def]
        return self.by("remote-telescope").filter(has=self.page.get_by_text(name, exact=True))

    async def sign_up(self, name: str = "ada") -> None:
        """Create an account (the page at `#pair` then opens the pairing form by itself)."""
        await expect(self.by("signin")).to_be_visible()
        await self.by("signin-name").fill(name)
        await self.by("signin-password").fill(PASSWORD)
        await self.by("sign-up").click()
        await expect(self.by("account-name")).to_have_text(name)

    async def pair(self, code: str, name: str = TELESCOPE) -> None:
        """Type the proxy's code, then wait until the telescope is listed online."""
        await expect(self.by("pair-dialog")).to_be_visible()
        await self.by("pair-code").fill(code)
        await self.by("pair-name").fill(name)
        await self.by("pair-submit").click()
        await expect(self.by("pair-dialog")).to_be_hidden()
        facts = self.telescope(name).get_by_test_id("remote-telescope-facts")
        await expect(facts).to_have_text("owner · online", timeout=30_000)
        await self.page.evaluate(MARKS)

    async def connect(self, name: str = TELESCOPE, timeout_ms: float = 30_000) -> None:
        await self.telescope(name).get_by_test_id("remote-connect").click()
        await expect(self.by("remote-state")).to_have_attribute(
            "data-state", "connected", timeout=timeout_ms
        )
        await expect(self.by("live-state")).to_have_attribute(
            "data-state", "playing", timeout=timeout_ms
        )

    async def disconnect(self, name: str = TELESCOPE) -> None:
        await self.telescope(name).get_by_test_id("remote-disconnect").click()
        await expect(self.telescope(name).get_by_test_id("remote-connect")).to_be_visible()
        await self.page.wait_for_function("() => window.scopelink.transport.connector.pc === null")

    async def status(self, expected: str, timeout_ms: float = 10_000) -> None:
        """The status line says `expected` (the path is learnt from getStats once a second)."""
        await expect(self.by("remote-state")).to_have_text(expected, timeout=timeout_ms)

    async def selected_pair(self) -> dict[str, Any] | None:
        return await self.page.evaluate(SELECTED_PAIR)  # type: ignore[no-any-return]

    async def marks(self) -> dict[str, float]:
        """The first time of each mark since the last `clear_marks()`, plus the signaling
        messages (`ws:out:offer`, `ws:in:answer`, …), in page ms."""
        raw = await self.page.evaluate("() => ({marks: window.__marks, ws: window.__ws})")
        found: dict[str, float] = {}
        for m in raw["marks"]:
            found.setdefault(m["what"], m["t"])
        for m in raw["ws"]:
            found.setdefault(f"ws:{m['dir']}:{m['type']}", m["t"])
        return found

    async def clear_marks(self) -> None:
        await self.page.evaluate("() => window.__clearMarks()")

    async def wait_first_frame(self, timeout_ms: float = 30_000) -> None:
        await self.page.wait_for_function(
            "() => window.__marks.some((m) => m.what === 'frame')", timeout=timeout_ms
        )


@contextlib.asynccontextmanager
async def broker_page(
    browser: Browser, url: str = BROKER_URL + "/#pair"
) -> AsyncIterator[BrokerPage]:
    """A fresh context on the broker's page (`#pair`: the form the proxy's address opens)."""
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        await context.add_init_script(WATCH_SOCKETS)
        page = await context.new_page()
        ui = BrokerPage(page)
        page.on("console", lambda m: ui.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: ui.errors.append(f"uncaught: {e}"))
        await page.goto(url)
        yield ui
    finally:
        await context.close()


async def signed_in_and_paired(ui: BrokerPage, stack: RemoteStack) -> None:
    """From the page at `#pair`: an account, the proxy paired by its code, online."""
    await ui.sign_up()
    await ui.pair(stack.code)


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "dns":
        serve_dns(sys.argv[2])
    else:
        raise SystemExit("usage: python -m tests.nat.browser dns ipv4|ipv6|dual")
