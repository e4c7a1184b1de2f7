"""Two homes behind NATs and a public network between them, in network namespaces.

`NatTopology` builds, per run, five namespaces named `slnat-<pid>-<tag>-<role>`:

    proxy_host ── nat_a ──┐                 ┌── nat_b ── browser_host
    10.1.0.2     10.1.0.1 │     public      │ 10.2.0.1   10.2.0.2
    2001:db8:a:1::2       │ 203.0.113.1 turn│            2001:db8:b:1::2
                   WAN .10└ 203.0.113.2 brkr┘ WAN .20

- `public` is the Internet: a router with a /31 link to each home router's WAN address
  (203.0.113.10 and .20, TEST-NET-3, never routed; IPv6 2001:db8:0:a::2 and 2001:db8:0:b::2,
  documentation prefix) and two server addresses on its loopback: `TURN_V4`/`TURN_V6` for coturn
  and `BROKER_V4`/`BROKER_V6` for the signaling broker. It has no route to private addresses.
- `nat_a` / `nat_b` are home routers: WAN on the public side, LAN 10.1.0.0/24 / 10.2.0.0/24 and
  (IPv6) the delegated 2001:db8:a::/48 / 2001:db8:b::/48 with a 2001:db8:X:1::/64 LAN. Their IPv4
  behaviour is a `NatMode` (nftables, see `router_ruleset`); their IPv6 is routed, no NAT66, behind
  a stateful firewall that lets in only replies to flows the LAN started (what home IPv6 is).
- `proxy_host` / `browser_host` sit on the LANs with a default route through their router.

Every namespace gets an /etc/netns/<name>/hosts (which `ip netns exec` mounts over /etc/hosts)
naming `TURN_HOST` and `BROKER_HOST`, so processes can use names (TLS certificates, aiortc's TURN
URL parser, which takes no IPv6 literal).

Processes run inside a namespace with `popen()` / `spawn()` / `python()` (`ip netns exec NAME
...`), Chromium through `chromium_wrapper()` (Playwright's `executable_path`). `start_turn()` runs
coturn in `public` (UDP+TCP 3478, TLS 5349, shared-secret credentials, the production
`DENIED_PEER_RANGES`). `traffic()` reads nftables counters in `public`: bytes per protocol between
each home and each server address, and between the two homes directly.

Needs root, iproute2 and nftables (coturn for `start_turn`). Leaving the context (or `close()`)
kills every process left in the namespaces and deletes them; `cleanup_stale()` removes what a
killed run left behind (its pid is in the name). Imports no pytest, so scripts can use it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from tests.e2e.netns import NetnsError, run

#: Namespace names are PREFIX-<pid>-<tag>-<role>; the pid tells a stale one from a live one.
PREFIX = "slnat"
ROOT = Path(__file__).resolve().parents[2]
NETNS_ETC = Path("/etc/netns")
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
#: Set to 1 to skip (not fail) the NAT tests where namespaces cannot be made (not root).
SKIP_ENV = "SCOPELINK_SKIP_NETNS"

NatMode = Literal["cone", "full_cone", "symmetric", "udp_blocked"]
NAT_MODES: tuple[NatMode, ...] = ("cone", "full_cone", "symmetric", "udp_blocked")
Family = Literal["ipv4", "ipv6", "dual"]
Site = Literal["a", "b"]

#: The "servers" in the public namespace (on its loopback).
TURN_V4 = "203.0.113.1"
BROKER_V4 = "203.0.113.2"
TURN_V6 = "2001:db8:0:1::1"
BROKER_V6 = "2001:db8:0:1::2"
TURN_HOST = "turn.scopelink.test"
BROKER_HOST = "broker.scopelink.test"
TABLE = "slnat"

#: What a production TURN server must refuse to relay to (coturn `denied-peer-ip`, ranges as
#: coturn 4.6 takes them): private, loopback, link-local, CGNAT, "this network", multicast and
#: reserved IPv4; IPv6 loopback, unique-local, link-local, multicast and IPv4-mapped. The public
#: addresses of the peers' NATs are none of these, so no `allowed-peer-ip` is needed.
DENIED_PEER_RANGES: tuple[str, ...] = (
    "0.0.0.0-0.255.255.255",  # "this network"
    "10.0.0.0-10.255.255.255",  # RFC 1918
    "100.64.0.0-100.127.255.255",  # CGNAT shared space (RFC 6598)
    "127.0.0.0-127.255.255.255",  # loopback
    "169.254.0.0-169.254.255.255",  # link-local, cloud metadata (169.254.169.254)
    "172.16.0.0-172.31.255.255",  # RFC 1918
    "192.0.0.0-192.0.0.255",  # IETF protocol assignments
    "192.168.0.0-192.168.255.255",  # RFC 1918
    "198.18.0.0-198.19.255.255",  # benchmarking
    "224.0.0.0-255.255.255.255",  # multicast, reserved, broadcast
    "::1",  # loopback
    "::ffff:0.0.0.0-::ffff:255.255.255.255",  # IPv4-mapped: the IPv4 list, bypassed
    "64:ff9b::-64:ff9b::ffff:ffff",  # NAT64: the IPv4 list again, through a translator
    "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",  # unique local
    "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",  # link-local
    "ff00::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",  # multicast
)


def available() -> str | None:
    """Why topologies cannot be built here, or None when they can (as tests/e2e/netns.py)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no {tool}: apt-get install {package}"
    return None


def skip_requested() -> bool:
    """SCOPELINK_SKIP_NETNS=1: the caller may skip instead of failing when `available()` says no."""
    return os.environ.get(SKIP_ENV, "") == "1"


def _pid_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _namespaces() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line.strip()]


def _kill_inside(name: str) -> None:
    """SIGKILL every process still in namespace `name` (ours: started by this harness)."""
    with contextlib.suppress(NetnsError):
        for pid in run("ip", "netns", "pids", name).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def _delete_namespace(name: str) -> None:
    _kill_inside(name)
    with contextlib.suppress(NetnsError):
        run("ip", "netns", "delete", name)
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


def cleanup_stale(*, every_run: bool = False) -> list[str]:
    """Delete the namespaces (processes inside, /etc/netns files) of runs whose process is gone,
    or of every run with `every_run`; returns their names."""
    removed = []
    names = set(_namespaces())
    if NETNS_ETC.is_dir():  # a run killed between deleting a namespace and its files
        names |= {path.name for path in NETNS_ETC.iterdir()}
    for name in sorted(names):
        parts = name.split("-")
        if len(parts) != 4 or parts[0] != PREFIX or not parts[1].isdigit():
            continue
        if every_run or not _pid_alive(int(parts[1])):
            _delete_namespace(name)
            removed.append(name)
    return removed


@dataclass(frozen=True)
class Namespace:
    """One namespace of a topology."""

    name: str
    role: str

    def argv(self, *command: str) -> list[str]:
        """`command` run inside this namespace."""
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, stdin: str | None = None) -> str:
        return run(*self.argv(*command), stdin=stdin)

    def ip(self, *args: str) -> str:
        return run("ip", "-n", self.name, *args)

    def ip_batch(self, commands: Sequence[str]) -> None:
        run("ip", "-n", self.name, "-batch", "-", stdin="\n".join(commands) + "\n")

    def nft(self, script: str) -> None:
        """Apply an nftables script in this namespace, atomically."""
        self.run("nft", "-f", "-", stdin=script)

    def sysctl(self, **settings: int | str) -> None:
        """Set net.* sysctls in this namespace (`net__ipv4__ip_forward=1`). Written through
        /proc/sys from a shell inside it: /proc/sys/net shows the opener's namespace, and the
        `sysctl` tool (procps) is not on every minimal machine."""
        script = "; ".join(
            f"echo {value} > /proc/sys/{key.replace('__', '/')}" for key, value in settings.items()
        )
        self.run("sh", "-ec", script)


@dataclass(frozen=True)
class Home:
    """The addresses of one home (router and host)."""

    site: Site
    wan_v4: str
    public_v4: str  # the public router's end of the /31
    lan_v4_router: str
    lan_v4_host: str
    lan_v4_prefix: str
    wan_v6: str
    public_v6: str
    delegated_v6: str  # the prefix routed to the home
    lan_v6_router: str
    lan_v6_host: str

    @classmethod
    def make(cls, site: Site, n: int) -> Home:
        return cls(
            site=site,
            wan_v4=f"203.0.113.{10 * n}",
            public_v4=f"203.0.113.{10 * n + 1}",
            lan_v4_router=f"10.{n}.0.1",
            lan_v4_host=f"10.{n}.0.2",
            lan_v4_prefix=f"10.{n}.0.0/24",
            wan_v6=f"2001:db8:0:{site}::2",
            public_v6=f"2001:db8:0:{site}::1",
            delegated_v6=f"2001:db8:{site}::/48",
            lan_v6_router=f"2001:db8:{site}:1::1",
            lan_v6_host=f"2001:db8:{site}:1::2",
        )


HOMES: dict[Site, Home] = {"a": Home.make("a", 1), "b": Home.make("b", 2)}


def router_ruleset(home: Home, mode: NatMode, family: Family) -> str:
    """The nftables table of a home router (replacing any previous one).

    - every mode: the router itself accepts only its LAN, loopback, ICMP and replies; forwarding
      accepts LAN → WAN and replies (`ct state established,related`), and drops the rest, so
      unsolicited inbound packets are dropped before conntrack confirms an entry for them (an
      entry for a stray inbound packet would take the mapping a later outbound flow needs);
    - "cone": `masquerade persistent`: Linux keeps the source port when the resulting tuple is
      free, so one LAN socket keeps one WAN port whatever the destination (endpoint-independent
      mapping), but conntrack lets in only replies from the exact address and port a flow went
      to (address-and-port-dependent filtering): a "port-restricted cone"; ICE gets through it
      because both peers send checks (the first one out opens the way for the other's);
    - "full_cone": the same plus endpoint-independent filtering, emulated: a dynamic map records
      WAN port → LAN port of every UDP flow going out (a filter chain right after srcnat sees the
      translated port), and a dstnat rule sends any new inbound UDP to a recorded WAN port to the
      LAN host (Linux has no full-cone NAT of its own);
    - "symmetric": `masquerade fully-random`: a random WAN port for every new flow, so the port
      STUN saw is not the one the peer would have to use;
    - "udp_blocked": the cone NAT, and no UDP is forwarded at all (both families): only TCP
      leaves the home.

    IPv6 is never translated: it is routed under the same stateful forwarding rules.
    """
    v4 = family in ("ipv4", "dual")
    nat = {
        "cone": "masquerade persistent",
        "full_cone": "masquerade persistent",
        "udp_blocked": "masquerade persistent",
        "symmetric": "masquerade fully-random",
    }[mode]
    full_cone = v4 and mode == "full_cone"
    lines = [
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
        "  counter dropped_in { }",
        "  counter dropped_forward { }",
        "  counter blocked_udp { }",
    ]
    if full_cone:
        lines += [
            "  map fullcone {",
            "    type inet_service : inet_service; flags dynamic,timeout; timeout 5m;",
            "  }",
        ]
    lines += [
        "  chain input {",
        "    type filter hook input priority filter; policy drop;",
        '    iif "lo" accept',
        "    ct state established,related accept",
        '    iifname "lan" accept',
        "    meta l4proto { icmp, ipv6-icmp } accept",
        "    counter name dropped_in drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        "    ct state established,related accept",
        "    ct state invalid drop",
    ]
    if mode == "udp_blocked":
        lines.append('    iifname "lan" meta l4proto udp counter name blocked_udp drop')
    lines.append('    iifname "lan" oifname "wan" accept')
    if full_cone:
        lines.append('    iifname "wan" oifname "lan" ct status dnat accept')
    lines += ["    counter name dropped_forward drop", "  }"]
    if v4:
        lines += [
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f'    oifname "wan" meta nfproto ipv4 {nat}',
            "  }",
        ]
    if full_cone:
        lines += [
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            '    iifname "wan" meta nfproto ipv4 meta l4proto udp'
            f" dnat ip to {home.lan_v4_host} : udp dport map @fullcone",
            "  }",
            "  chain record_mapping {",
            "    type filter hook postrouting priority srcnat + 1; policy accept;",
            '    oifname "wan" meta nfproto ipv4 meta l4proto udp'
            " update @fullcone { udp sport : ct original proto-src }",
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


#: Endpoints the public namespace counts traffic between.
ENDPOINTS = ("a", "b", "turn", "broker")
PROTOCOLS = ("udp", "tcp")


def public_ruleset() -> str:
    """Counters in the public namespace: `<from>_<to>_<proto>` bytes for a ↔ b (forwarded) and
    a/b ↔ turn/broker (delivered to / sent from a server address)."""
    servers = {"turn": (TURN_V4, TURN_V6), "broker": (BROKER_V4, BROKER_V6)}
    counters, forward, inbound, outbound = [], [], [], []
    for proto in PROTOCOLS:
        for src, dst in (("a", "b"), ("b", "a")):
            counters.append(f"{src}_{dst}_{proto}")
            forward.append(
                f'iifname "p{src}" oifname "p{dst}" meta l4proto {proto}'
                f" counter name {src}_{dst}_{proto}"
            )
        for site in ("a", "b"):
            for server, (v4, v6) in servers.items():
                counters += [f"{site}_{server}_{proto}", f"{server}_{site}_{proto}"]
                for match in (f"ip daddr {v4}", f"ip6 daddr {v6}"):
                    inbound.append(
                        f'iifname "p{site}" {match} meta l4proto {proto}'
                        f" counter name {site}_{server}_{proto}"
                    )
                for match in (f"ip saddr {v4}", f"ip6 saddr {v6}"):
                    outbound.append(
                        f'oifname "p{site}" {match} meta l4proto {proto}'
                        f" counter name {server}_{site}_{proto}"
                    )
    body = [f"  counter {name} {{ }}" for name in counters]
    for chain, hook, rules in (
        ("forward", "forward", forward),
        ("input", "input", inbound),
        ("output", "output", outbound),
    ):
        body += [
            f"  chain {chain} {{",
            f"    type filter hook {hook} priority filter; policy accept;",
            *[f"    {rule}" for rule in rules],
            "  }",
        ]
    return "\n".join([f"table inet {TABLE} {{", *body, "}"]) + "\n"


@dataclass(frozen=True)
class Traffic:
    """A reading of the public namespace's counters (bytes and packets by counter name)."""

    bytes: Mapping[str, int]
    packets: Mapping[str, int]

    def between(self, x: str, y: str, proto: str | None = None) -> int:
        """Bytes between endpoints `x` and `y` ("a", "b", "turn", "broker"), both ways."""
        protos = [proto] if proto else PROTOCOLS
        return sum(self.bytes.get(f"{s}_{d}_{p}", 0) for p in protos for s, d in ((x, y), (y, x)))

    def direct(self, proto: str | None = None) -> int:
        """Bytes the two homes exchanged without a server in between."""
        return self.between("a", "b", proto)

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(
            {k: v - other.bytes.get(k, 0) for k, v in self.bytes.items()},
            {k: v - other.packets.get(k, 0) for k, v in self.packets.items()},
        )

    def summary(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.bytes.items()) if v)


@dataclass
class Turn:
    """coturn running in the public namespace (see `NatTopology.start_turn`)."""

    secret: str
    realm: str
    cert: Path
    log: Path
    v4: str | None
    v6: str | None
    port: int = 3478
    tls_port: int = 5349
    process: subprocess.Popen[bytes] | None = None

    def credentials(
        self, user: str = "scopelink", ttl_s: int = 3600, *, secret: str | None = None
    ) -> tuple[str, str]:
        """TURN REST credentials (coturn `use-auth-secret`): username `expiry:user`, password
        base64(HMAC-SHA1(secret, username)); another `secret` mints credentials coturn refuses."""
        username = f"{int(time.time()) + ttl_s}:{user}"
        key = (secret if secret is not None else self.secret).encode()
        digest = hmac.new(key, username.encode(), hashlib.sha1).digest()
        return username, base64.b64encode(digest).decode()

    def ice_servers(
        self,
        transport: Literal["udp", "tcp", "tls"] = "udp",
        *,
        user: str = "scopelink",
        host: str | None = None,
        stun: bool = True,
    ) -> list[dict[str, Any]]:
        """RTCIceServer dicts: STUN (unless `stun=False`) and ONE TURN URL over `transport`
        (aiortc uses only the first TURN URL). `host` defaults to the IPv4 address, else
        `TURN_HOST`: aiortc cannot parse an IPv6 literal."""
        host = host or self.v4 or TURN_HOST
        username, password = self.credentials(user)
        turn = {
            "udp": f"turn:{host}:{self.port}?transport=udp",
            "tcp": f"turn:{host}:{self.port}?transport=tcp",
            "tls": f"turns:{host}:{self.tls_port}?transport=tcp",
        }[transport]
        servers: list[dict[str, Any]] = []
        if stun:
            servers.append({"urls": f"stun:{host}:{self.port}"})
        servers.append({"urls": turn, "username": username, "credential": password})
        return servers

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log)"


def make_certificate(directory: Path, names: Sequence[str], addresses: Sequence[str]) -> Path:
    """A self-signed certificate for `names` and `addresses` in `directory`: `cert.pem` (returned)
    and `key.pem` (0600). It is its own CA, so pointing SSL_CERT_FILE (Python's default trust
    store) at it makes clients trust it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    sans += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path


@dataclass
class NatTopology:
    """Public network, two NATed homes, a host in each (see the module doc).

    `with NatTopology("cone", "symmetric") as net:` builds it and tears it down whatever
    happens; `nat_a` is the proxy's home, `nat_b` the browser's.
    """

    mode_a: NatMode = "cone"
    mode_b: NatMode = "cone"
    family: Family = "ipv4"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: dict[str, Namespace] = field(default_factory=dict)
    _processes: list[Any] = field(default_factory=list)
    _created: bool = False

    ROLES: ClassVar[tuple[str, ...]] = ("public", "nat_a", "nat_b", "proxy_host", "browser_host")
    _SHORT: ClassVar[dict[str, str]] = {
        "public": "pub",
        "nat_a": "na",
        "nat_b": "nb",
        "proxy_host": "ph",
        "browser_host": "bh",
    }

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> NatTopology:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> NatTopology:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def create(self) -> None:
        why = available()
        if why:
            raise NetnsError(why)
        for mode in (self.mode_a, self.mode_b):
            if mode not in NAT_MODES:
                raise ValueError(f"unknown NAT mode {mode!r}: one of {NAT_MODES}")
        cleanup_stale()
        self._created = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop every process started here, kill what is left inside, delete the namespaces."""
        for process in self._processes:
            running = process.poll() is None if isinstance(process, subprocess.Popen) else None
            if running or (running is None and process.returncode is None):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for process in self._processes:
            if isinstance(process, subprocess.Popen):
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self._processes.clear()
        for namespace in self.namespaces.values():
            _delete_namespace(namespace.name)
        self._created = False

    # -- the pieces -------------------------------------------------------------------------------

    @property
    def public(self) -> Namespace:
        return self.namespaces["public"]

    @property
    def nat_a(self) -> Namespace:
        return self.namespaces["nat_a"]

    @property
    def nat_b(self) -> Namespace:
        return self.namespaces["nat_b"]

    @property
    def proxy_host(self) -> Namespace:
        return self.namespaces["proxy_host"]

    @property
    def browser_host(self) -> Namespace:
        return self.namespaces["browser_host"]

    @property
    def v4(self) -> bool:
        return self.family in ("ipv4", "dual")

    @property
    def v6(self) -> bool:
        return self.family in ("ipv6", "dual")

    def router(self, site: Site) -> Namespace:
        return self.namespaces[f"nat_{site}"]

    def host(self, site: Site) -> Namespace:
        return self.proxy_host if site == "a" else self.browser_host

    def host_address(self, site: Site) -> str:
        """The host's address of the topology's family (IPv6 for "ipv6", else IPv4)."""
        home = HOMES[site]
        return home.lan_v6_host if self.family == "ipv6" else home.lan_v4_host

    def wan_address(self, site: Site) -> str:
        home = HOMES[site]
        return home.wan_v6 if self.family == "ipv6" else home.wan_v4

    @property
    def turn_address(self) -> str:
        return TURN_V6 if self.family == "ipv6" else TURN_V4

    @property
    def broker_address(self) -> str:
        return BROKER_V6 if self.family == "ipv6" else BROKER_V4

    def _build(self) -> None:
        for role in self.ROLES:
            name = f"{PREFIX}-{os.getpid()}-{self.tag}-{self._SHORT[role]}"
            run("ip", "netns", "add", name)
            self.namespaces[role] = Namespace(name, role)
            self._write_hosts(name)
        for role, namespace in self.namespaces.items():
            forwarding = 0 if role.endswith("_host") else 1
            # A new namespace inherits the root's IPv4 settings (net.core.devconf_inherit_init_net
            # = 0) and IPv6 defaults: set what matters. No duplicate address detection (addresses
            # usable at once, no late "network change" for Chromium), no router advertisements.
            namespace.sysctl(
                net__ipv4__ip_forward=forwarding,
                net__ipv4__conf__all__rp_filter=1,
                net__ipv4__conf__default__rp_filter=1,
                net__ipv6__conf__all__forwarding=forwarding,
                net__ipv6__conf__default__forwarding=forwarding,
                net__ipv6__conf__all__accept_dad=0,
                net__ipv6__conf__default__accept_dad=0,
                net__ipv6__conf__default__accept_ra=0,
            )
        # The veth pairs are created directly inside their namespaces, so their names never meet
        # another run's in the root namespace.
        for site in ("a", "b"):
            router = self.router(site).name
            self._veth(self.public.name, f"p{site}", router, "wan")
            self._veth(router, "lan", self.host(site).name, "eth0")
        self._address_public()
        for site in ("a", "b"):
            self._address_home(site)
        self.public.nft(public_ruleset())
        for site, mode in (("a", self.mode_a), ("b", self.mode_b)):
            self.router(site).nft(router_ruleset(HOMES[site], mode, self.family))

    @staticmethod
    def _veth(ns1: str, dev1: str, ns2: str, dev2: str) -> None:
        peer = ("peer", "name", dev2, "netns", ns2)
        run("ip", "link", "add", dev1, "netns", ns1, "type", "veth", *peer)

    def _write_hosts(self, name: str) -> None:
        directory = NETNS_ETC / name
        directory.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
        for host, v4, v6 in ((TURN_HOST, TURN_V4, TURN_V6), (BROKER_HOST, BROKER_V4, BROKER_V6)):
            if self.v6:
                lines.append(f"{v6} {host}")
            if self.v4:
                lines.append(f"{v4} {host}")
        (directory / "hosts").write_text("\n".join(lines) + "\n")

    def _address_public(self) -> None:
        commands = ["link set lo up"]
        if self.v4:
            commands += [f"addr add {TURN_V4}/32 dev lo", f"addr add {BROKER_V4}/32 dev lo"]
        if self.v6:
            commands += [f"addr add {TURN_V6}/128 dev lo", f"addr add {BROKER_V6}/128 dev lo"]
        for site, home in HOMES.items():
            dev = f"p{site}"
            if self.v4:
                commands.append(f"addr add {home.public_v4}/31 dev {dev}")
            if self.v6:
                commands.append(f"addr add {home.public_v6}/64 dev {dev} nodad")
            commands.append(f"link set {dev} up")
            if self.v6:
                commands.append(f"route add {home.delegated_v6} via {home.wan_v6} dev {dev}")
        self.public.ip_batch(commands)

    def _address_home(self, site: Site) -> None:
        home = HOMES[site]
        router = ["link set lo up"]
        host = ["link set lo up"]
        if self.v4:
            router += [
                f"addr add {home.wan_v4}/31 dev wan",
                f"addr add {home.lan_v4_router}/24 dev lan",
            ]
            host.append(f"addr add {home.lan_v4_host}/24 dev eth0")
        if self.v6:
            router += [
                f"addr add {home.wan_v6}/64 dev wan nodad",
                f"addr add {home.lan_v6_router}/64 dev lan nodad",
            ]
            host.append(f"addr add {home.lan_v6_host}/64 dev eth0 nodad")
        router += ["link set wan up", "link set lan up"]
        host.append("link set eth0 up")
        if self.v4:
            router.append(f"route add default via {home.public_v4} dev wan")
            host.append(f"route add default via {home.lan_v4_router} dev eth0")
        if self.v6:
            router.append(f"route add default via {home.public_v6} dev wan")
            host.append(f"route add default via {home.lan_v6_router} dev eth0")
        self.router(site).ip_batch(router)
        self.host(site).ip_batch(host)

    def set_nat(self, site: Site, mode: NatMode) -> None:
        """Change a home router's behaviour (existing conntrack entries stay)."""
        self.router(site).nft(router_ruleset(HOMES[site], mode, self.family))
        if site == "a":
            self.mode_a = mode
        else:
            self.mode_b = mode

    # -- running things ---------------------------------------------------------------------------

    def popen(self, namespace: Namespace, *command: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `command` inside `namespace`; it is stopped at `close()` if still running."""
        process = subprocess.Popen(namespace.argv(*command), **kwargs)
        self._processes.append(process)
        return process

    async def spawn(self, namespace: Namespace, *command: str, **kwargs: Any) -> Any:
        """`popen` for asyncio: an `asyncio.subprocess.Process` (killed at `close()`)."""
        process = await asyncio.create_subprocess_exec(*namespace.argv(*command), **kwargs)
        self._processes.append(process)
        return process

    def python_argv(self, namespace: Namespace, *args: str) -> list[str]:
        """This interpreter inside `namespace` (run it with cwd=ROOT so `-m tests...` works)."""
        return namespace.argv(sys.executable, *args)

    async def spawn_python(self, namespace: Namespace, *args: str, **kwargs: Any) -> Any:
        kwargs.setdefault("cwd", ROOT)
        return await self.spawn(namespace, sys.executable, *args, **kwargs)

    def chromium_wrapper(
        self, namespace: Namespace, directory: Path, chromium: str = "/usr/bin/chromium"
    ) -> Path:
        """A script starting `chromium` inside `namespace`, for Playwright's `executable_path`."""
        path = directory / f"chromium-{namespace.name}"
        path.write_text(f'#!/bin/sh\nexec ip netns exec {namespace.name} {chromium} "$@"\n')
        path.chmod(0o755)
        return path

    # -- coturn -----------------------------------------------------------------------------------

    def start_turn(
        self,
        directory: Path,
        *,
        secret: str | None = None,
        realm: str = "scopelink.test",
        denied_peers: Sequence[str] = DENIED_PEER_RANGES,
        extra_args: Sequence[str] = (),
        timeout_s: float = 10.0,
    ) -> Turn:
        """coturn in `public` on the TURN addresses: UDP+TCP 3478, TLS 5349 with a fresh
        self-signed certificate for `TURN_HOST` and the addresses (`Turn.cert`), shared-secret
        (TURN REST) credentials, relay ports 49152-65535 on the same addresses, peers in
        `denied_peers` refused. Returns once it listens; stopped at `close()`."""
        if not Path(TURNSERVER).exists():
            raise NetnsError("no coturn: apt-get install coturn (it provides turnserver)")
        directory.mkdir(parents=True, exist_ok=True)
        v4 = TURN_V4 if self.v4 else None
        v6 = TURN_V6 if self.v6 else None
        addresses = [a for a in (v4, v6) if a]
        cert = make_certificate(directory, [TURN_HOST], addresses)
        turn = Turn(
            secret=secret or secrets.token_hex(16),
            realm=realm,
            cert=cert,
            log=directory / "turn.log",
            v4=v4,
            v6=v6,
        )
        args = [TURNSERVER, "-n", "--verbose"]
        for address in addresses:
            args += [f"--listening-ip={address}", f"--relay-ip={address}"]
        args += [
            f"--listening-port={turn.port}",
            f"--tls-listening-port={turn.tls_port}",
            f"--cert={cert}",
            f"--pkey={directory / 'key.pem'}",
            "--use-auth-secret",
            f"--static-auth-secret={turn.secret}",
            f"--realm={realm}",
            "--fingerprint",
            "--no-dtls",
            "--no-tlsv1",
            "--no-tlsv1_1",
            "--no-cli",
            "--no-multicast-peers",
            "--no-tcp-relay",  # WebRTC relays UDP only; no TCP connections to peers (RFC 6062)
            "--no-software-attribute",
            # A relay of the client's own family (aioice asks for none; coturn's default is IPv4).
            "--allocation-default-address-family=keep",
            "--min-port=49152",
            "--max-port=65535",
            *[f"--denied-peer-ip={peer}" for peer in denied_peers],
            f"--log-file={turn.log}",
            "--simple-log",
            "--no-stdout-log",
            f"--pidfile={directory / 'turn.pid'}",
            f"--db={directory / 'turndb'}",  # not the system's /var/lib/turn/turndb
            *extra_args,
        ]
        turn.process = process = self.popen(
            self.public, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        wanted = {("tcp", turn.port), ("udp", turn.port), ("tcp", turn.tls_port)}
        while True:
            if process.poll() is not None:
                raise NetnsError(f"turnserver exited: {turn.log_text()[-3000:]}")
            if wanted <= self.listening(self.public):
                return turn
            if time.monotonic() > deadline:
                raise NetnsError(f"turnserver not listening: {turn.log_text()[-3000:]}")
            time.sleep(0.05)

    @staticmethod
    def listening(namespace: Namespace) -> set[tuple[str, int]]:
        """(protocol, port) of the listening sockets in `namespace`."""
        found = set()
        for line in namespace.run("ss", "-Hlnut").splitlines():
            parts = line.split()
            if len(parts) >= 5:
                port = parts[4].rsplit(":", 1)[-1]
                if port.isdigit():
                    found.add((parts[0], int(port)))
        return found

    # -- what crossed the public network ----------------------------------------------------------

    def traffic(self) -> Traffic:
        """The public namespace's counters now (subtract an earlier reading for a delta)."""
        out = self.public.run("nft", "-j", "list", "counters", "table", "inet", TABLE)
        byte_counts: dict[str, int] = {}
        packet_counts: dict[str, int] = {}
        for item in json.loads(out)["nftables"]:
            counter = item.get("counter")
            if counter:
                byte_counts[counter["name"]] = counter["bytes"]
                packet_counts[counter["name"]] = counter["packets"]
        return Traffic(byte_counts, packet_counts)

    def link_bytes(self, site: Site) -> tuple[int, int]:
        """(received, sent) bytes of the public router's link to home `site` (`ip -s link`)."""
        out = self.public.ip("-j", "-s", "link", "show", "dev", f"p{site}")
        stats = json.loads(out)[0]["stats64"]
        return stats["rx"]["bytes"], stats["tx"]["bytes"]

    def router_counters(self, site: Site) -> dict[str, int]:
        """Bytes each home router dropped: dropped_in, dropped_forward, blocked_udp."""
        out = self.router(site).run("nft", "-j", "list", "counters", "table", "inet", TABLE)
        return {
            item["counter"]["name"]: item["counter"]["bytes"]
            for item in json.loads(out)["nftables"]
            if "counter" in item
        }

    def describe(self) -> str:
        """The routers' rules with their counters and the public counters, for failure messages."""
        parts = [f"topology {self.tag}: a={self.mode_a} b={self.mode_b} family={self.family}"]
        for namespace in (self.nat_a, self.nat_b):
            with contextlib.suppress(NetnsError):
                parts.append(f"--- {namespace.role}\n" + namespace.run("nft", "list", "ruleset"))
        with contextlib.suppress(NetnsError):
            parts.append("--- public: " + self.traffic().summary())
        return "\n".join(parts)


@contextlib.contextmanager
def topology(
    mode_a: NatMode = "cone", mode_b: NatMode = "cone", family: Family = "ipv4"
) -> Iterator[NatTopology]:
    """`NatTopology(mode_a, mode_b, family=family)` as a context manager."""
    with NatTopology(mode_a, mode_b, family=family) as net:
        yield net
