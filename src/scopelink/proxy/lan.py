"""The proxy on its own network: it announces its page by mDNS/DNS-SD, so that a browser there
reaches it directly, without the broker.

- Service `_scopelink._tcp.local.`, instance `scopelink <id>`, TXT `telescope=<broker's id>`,
  `path=/`, `v=1`, at the page's port: for a tool or another app browsing the network.
- Host name `scopelink-<id>.local.` (`<id>`: the first 8 characters of the telescope's id
  after `tel_`), with the machine's LAN addresses: a browser resolves it through the
  operating system's mDNS resolver (Bonjour, Avahi, Windows 10+), so the broker's page can
  offer `http://scopelink-<id>.local:8000/` as "connect directly on this network".

Browsers cannot browse DNS-SD themselves, and a page served over HTTPS cannot fetch an HTTP
address on the LAN (mixed content, private network access), so the direct path is a link the
user follows, with a grant in its fragment (`#grant=…`, never sent to a server); the proxy's
page exchanges it once for a session (`POST /api/session/grant`).
"""

from __future__ import annotations

import ipaddress
import logging

import ifaddr
from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_scopelink._tcp.local."


def lan_hostname(telescope_id: str) -> str:
    """The proxy's mDNS host name, without the trailing dot: `scopelink-1a2b3c4d.local`."""
    short = telescope_id.removeprefix("tel_")[:8].lower()
    return f"scopelink-{short}.local"


def lan_addresses(bind: str) -> list[str]:
    """The addresses a page bound to `bind` is reachable at on the LAN (none on loopback)."""
    if bind in ("0.0.0.0", "::", ""):
        found = []
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                address = ipaddress.ip_address(text)
                if not (address.is_loopback or address.is_link_local):
                    found.append(text)
        return found
    address = ipaddress.ip_address(bind)
    return [] if address.is_loopback else [bind]


class LanAdvertiser:
    """Announces the proxy's page while it runs (`start`/`stop`)."""

    def __init__(self, telescope_id: str, port: int, addresses: list[str]) -> None:
        self.telescope_id = telescope_id
        self.port = port
        self.addresses = addresses
        self.hostname = lan_hostname(telescope_id)
        self._zeroconf: AsyncZeroconf | None = None
        self._info: ServiceInfo | None = None

    @property
    def url(self) -> str:
        return f"http://{self.hostname}:{self.port}/"

    async def start(self) -> None:
        short = self.hostname.removesuffix(".local")
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{short}.{SERVICE_TYPE}",
            port=self.port,
            properties={"telescope": self.telescope_id, "path": "/", "v": "1"},
            server=f"{self.hostname}.",
            parsed_addresses=self.addresses,
        )
        v4 = [a for a in self.addresses if ":" not in a]
        self._zeroconf = AsyncZeroconf(interfaces=v4 or self.addresses)
        await self._zeroconf.async_register_service(self._info, allow_name_change=True)
        log.info("announced on the LAN as %s (%s)", self.url, ", ".join(self.addresses))

    async def stop(self) -> None:
        if self._zeroconf is None:
            return
        if self._info is not None:
            await self._zeroconf.async_unregister_service(self._info)
        await self._zeroconf.async_close()
        self._zeroconf = None


__all__ = ["SERVICE_TYPE", "LanAdvertiser", "lan_addresses", "lan_hostname"]
