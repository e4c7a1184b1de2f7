"""Network conditions for browser tests: Chromium in its own network namespace, on a veth link.

`BrowserNetns.create()` makes a namespace joined to the root namespace by a veth pair with an
IPv4 /30 and an IPv6 ULA /64 on both ends (`nodad`: usable at once). The app binds the root end
(`root_v4`); Chromium runs inside the namespace through `chromium_wrapper()` (a script that is
Playwright's `executable_path`: `ip netns exec NS chromium "$@"`, Playwright talks to it over the
inherited pipe), so every byte between browser and app crosses the veth, where it can be shaped:

- `rate_cap(kbit)`: tbf on the root end's egress, i.e. the server → browser direction;
- `loss(percent)`: nftables `numgen random` drops UDP in the namespace, both directions;
- `block_udp(family)`: nftables drops all UDP in the namespace (HTTP over TCP still works);
- `link_down()` / `link_up()`: the link itself goes down (the root end, so the browser's end
  loses its carrier, as when Wi-Fi drops) and comes back with its addresses;
- `UdpDelayRelay`: a user-space UDP relay that holds datagrams for a while (this kernel has no
  netem); put it in front of a TURN server and force the browser to relay-only ICE to get the
  delay on the media path.

ICE is pinned to the veth: the namespace's only interface besides `lo` is the veth, and a guard
table drops anything the namespace sends to an address other than the veth link's (so the
browser reaches no other address of the host, and nothing leaves the machine; the default routes
exist only because Chromium gathers no host candidates without one). aiortc, in the root
namespace, still gathers every address of the machine (eth0's too) and offers them; that is
harmless: the browser cannot reach them, and aiortc's checks towards the browser from them
still cross the veth.

Everything here needs root and iproute2 + nftables; it imports no pytest, so benchmarks can use
it. `close()` (or leaving `create()`'s context) deletes the namespace, which takes the veth pair,
its qdisc and the namespace's nftables tables with it. Namespaces left behind by a killed run
(named after a process that no longer exists) are removed by the next `create()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Namespace names are PREFIX-<pid>-<index>; the pid tells a stale one from a live one.
PREFIX = "slnet"
#: The 10.203.0.0/16 range is split into /30 links; the IPv6 links share this /48.
V4_NET = ipaddress.IPv4Network("10.203.0.0/16")
V6_PREFIX = "fd53:6c6e:7400"
NFT_TABLE = "scopelink"


class NetnsError(RuntimeError):
    """A command that sets up or changes the network failed (with its stderr)."""


def run(*command: str, stdin: str | None = None) -> str:
    """Run a command; raise `NetnsError` with its stderr when it fails."""
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(command)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def available() -> str | None:
    """Why the harness cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no {tool}: apt-get install {package}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Delete namespaces of ours whose creating process is gone (a killed run)."""
    for line in run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == PREFIX and parts[1].isdigit():
            if not _pid_alive(int(parts[1])):
                with contextlib.suppress(NetnsError):
                    run("ip", "netns", "delete", name)


@dataclass
class BrowserNetns:
    """A namespace for the browser and its veth link to the root namespace (see module doc)."""

    name: str
    index: int
    #: The veth ends: in the root namespace (the app's side) and in the browser's namespace.
    root_dev: str
    ns_dev: str
    root_v4: str
    ns_v4: str
    root_v6: str
    ns_v6: str

    @classmethod
    @contextlib.contextmanager
    def create(cls) -> Iterator[BrowserNetns]:
        """A fresh namespace and link, deleted on exit whatever happened."""
        why = available()
        if why:
            raise NetnsError(why)
        remove_stale()
        netns = cls._claim()
        try:
            netns._configure()
            yield netns
        finally:
            netns.close()

    @classmethod
    def _claim(cls) -> BrowserNetns:
        # `ip netns add` fails when the name exists and `ip link add` when a device does, so a
        # clash with a parallel run only costs a retry with another index.
        links = V4_NET.num_addresses // 4
        for _ in range(20):
            index = random.randrange(1, links)
            name = f"{PREFIX}-{os.getpid()}-{index}"
            base = V4_NET.network_address + 4 * index
            netns = cls(
                name=name,
                index=index,
                root_dev=f"slr{index}",
                ns_dev=f"slb{index}",
                root_v4=str(base + 1),
                ns_v4=str(base + 2),
                root_v6=f"{V6_PREFIX}:{index:x}::1",
                ns_v6=f"{V6_PREFIX}:{index:x}::2",
            )
            if f" {netns.root_v4}/" in run("ip", "-br", "-4", "addr"):
                continue
            try:
                run("ip", "netns", "add", name)
            except NetnsError:
                continue
            try:
                run(
                    "ip",
                    "link",
                    "add",
                    netns.root_dev,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    netns.ns_dev,
                )
            except NetnsError:
                run("ip", "netns", "delete", name)
                continue
            return netns
        raise NetnsError("no free namespace name / veth index after 20 tries")

    def _configure(self) -> None:
        run("ip", "link", "set", self.ns_dev, "netns", self.name)
        run("ip", "addr", "add", f"{self.root_v4}/30", "dev", self.root_dev)
        run("ip", "-6", "addr", "add", f"{self.root_v6}/64", "dev", self.root_dev, "nodad")
        run("ip", "link", "set", self.root_dev, "up")
        # No duplicate address detection, not even for the link-local address: an address that
        # stops being tentative later is a network change to Chromium, which then aborts its
        # requests in flight (ERR_NETWORK_CHANGED).
        self.ns("sh", "-c", f"echo 0 > /proc/sys/net/ipv6/conf/{self.ns_dev}/accept_dad")
        self.ns("ip", "link", "set", "lo", "up")
        self.ns("ip", "addr", "add", f"{self.ns_v4}/30", "dev", self.ns_dev)
        self.ns("ip", "-6", "addr", "add", f"{self.ns_v6}/64", "dev", self.ns_dev, "nodad")
        self.ns("ip", "link", "set", self.ns_dev, "up")
        # Chromium gathers no host candidates without a default route; the guard below keeps
        # everything on the link anyway (and the root namespace does not forward).
        self.ns("ip", "route", "add", "default", "via", self.root_v4)
        self.ns("ip", "-6", "route", "add", "default", "via", self.root_v6)
        self._settled()
        v4 = f"{self.root_v4}/30"
        v6 = f"{self.root_v6}/64"
        self.nft(f"""
            table inet {NFT_TABLE} {{
                chain block {{ }}
                chain loss {{ }}
                chain input {{
                    type filter hook input priority 0; policy accept;
                    iif lo accept
                    jump block
                    jump loss
                }}
                chain output {{
                    type filter hook output priority 0; policy accept;
                    oif lo accept
                    meta nfproto ipv4 ip daddr != {v4} drop
                    meta nfproto ipv6 ip6 daddr != {{ {v6}, fe80::/10, ff02::/16 }} drop
                    jump block
                    jump loss
                }}
            }}
        """)

    def _settled(self, timeout: float = 5.0) -> None:
        """Wait until no address in the namespace is tentative (a safety net for the above)."""
        deadline = time.monotonic() + timeout
        while self.ns("ip", "-6", "addr", "show", "tentative").strip():
            if time.monotonic() > deadline:
                raise NetnsError(f"addresses still tentative in {self.name}")
            time.sleep(0.05)

    def close(self) -> None:
        """Delete the namespace (with it the veth pair, its qdisc and the nftables rules)."""
        with contextlib.suppress(NetnsError):
            run("ip", "netns", "delete", self.name)
        # The pair goes with its namespace end; this only matters if the move never happened.
        with contextlib.suppress(NetnsError):
            run("ip", "link", "delete", self.root_dev)

    # -- running things in the namespace ----------------------------------------------------------

    def ns(self, *command: str, stdin: str | None = None) -> str:
        """Run a command inside the namespace."""
        return run("ip", "netns", "exec", self.name, *command, stdin=stdin)

    def nft(self, script: str) -> None:
        """Apply an nftables script inside the namespace (atomically)."""
        self.ns("nft", "-f", "-", stdin=script)

    def chromium_wrapper(self, directory: Path, chromium: str = "/usr/bin/chromium") -> Path:
        """A script that starts `chromium` inside the namespace, for Playwright's
        `executable_path`."""
        path = directory / f"chromium-{self.name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {chromium} "$@"\n')
        path.chmod(0o755)
        return path

    # -- conditions -------------------------------------------------------------------------------

    def rate_cap(self, kbit: int, *, burst_bytes: int = 16_000, queue_ms: int = 200) -> None:
        """Cap the server → browser direction at `kbit` kbit/s (tbf: a `queue_ms` queue, then
        drops)."""
        run(
            "tc", "qdisc", "replace", "dev", self.root_dev, "root", "tbf",
            "rate", f"{kbit}kbit", "burst", str(burst_bytes), "latency", f"{queue_ms}ms",
        )  # fmt: skip

    def lift_rate_cap(self) -> None:
        with contextlib.suppress(NetnsError):  # no cap: nothing to lift
            run("tc", "qdisc", "del", "dev", self.root_dev, "root")

    def loss(self, percent: float) -> None:
        """Drop `percent` % of UDP datagrams at random, each way (0 stops it)."""
        rules = ""
        if percent > 0:
            per_mille = round(percent * 10)
            rules = (
                f"add rule inet {NFT_TABLE} loss "
                f"meta l4proto udp numgen random mod 1000 < {per_mille} drop"
            )
        self.nft(f"flush chain inet {NFT_TABLE} loss\n{rules}\n")

    def block_udp(self, family: str | None = None) -> None:
        """Drop all UDP in and out of the namespace (`family` "ipv4" or "ipv6": only that one)."""
        match = f"meta nfproto {family} " if family else ""
        self.nft(
            f"flush chain inet {NFT_TABLE} block\n"
            f"add rule inet {NFT_TABLE} block {match}meta l4proto udp drop\n"
        )

    def unblock_udp(self) -> None:
        self.nft(f"flush chain inet {NFT_TABLE} block\n")

    def link_down(self) -> None:
        """Take the link down at the root end: the browser's end loses its carrier and nothing
        crosses until `link_up()`."""
        run("ip", "link", "set", self.root_dev, "down")

    def link_up(self) -> None:
        """Bring the link back as it was (IPv6 addresses are dropped with a link that goes down,
        so they are put back)."""
        run("ip", "link", "set", self.root_dev, "up")
        run("ip", "-6", "addr", "replace", f"{self.root_v6}/64", "dev", self.root_dev, "nodad")

    def clear(self) -> None:
        """No cap, no loss, no block; the link up."""
        self.link_up()
        self.lift_rate_cap()
        self.loss(0)
        self.unblock_udp()

    def counters(self) -> str:
        """The namespace's nftables rules, for a failure message."""
        return self.ns("nft", "list", "table", "inet", NFT_TABLE)


class UdpDelayRelay:
    """A UDP relay that holds every datagram `delay_ms` (each way) and drops `loss` of them.

    Clients send to `address`; each client gets its own socket towards `upstream`, whose replies
    go back to that client. It runs its own event loop in a thread, so the app's busy loop does not
    add to the delay. `delay_ms` and `loss` may be changed while it runs.
    """

    def __init__(
        self, host: str, upstream: tuple[str, int], *, delay_ms: float = 0.0, loss: float = 0.0
    ) -> None:
        self.host = host
        self.upstream = upstream
        self.delay_ms = delay_ms
        self.loss = loss
        self.port = 0
        self.forwarded = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._front: asyncio.DatagramTransport | None = None
        self._backs: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._random = random.Random(0)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(10)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> UdpDelayRelay:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _open(self) -> None:
        relay = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                relay._from_client(data, addr)

        self._front, _ = await self._loop.create_datagram_endpoint(Front, local_addr=(self.host, 0))
        self.port = self._front.get_extra_info("sockname")[1]

    async def _close(self) -> None:
        for transport in [self._front, *self._backs.values()]:
            if transport is not None:
                transport.close()
        self._backs.clear()

    def _from_client(self, data: bytes, client: tuple[str, int]) -> None:
        back = self._backs.get(client)
        if back is not None:
            self._later(back.sendto, data)
        elif client in self._pending:  # its socket is being opened
            self._pending[client].append(data)
        else:
            self._pending[client] = [data]
            self._loop.create_task(self._connect(client))

    async def _connect(self, client: tuple[str, int]) -> None:
        relay = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if relay._front is not None:
                    relay._later(relay._front.sendto, data, client)

        back, _ = await self._loop.create_datagram_endpoint(Back, remote_addr=self.upstream)
        self._backs[client] = back
        for data in self._pending.pop(client):
            self._later(back.sendto, data)

    def _later(self, send: object, *args: object) -> None:
        if self.loss > 0 and self._random.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        self._loop.call_at(self._loop.time() + self.delay_ms / 1000, send, *args)  # type: ignore[arg-type]
