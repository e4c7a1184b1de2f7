"""The simulator's answer to discovery: replies to `scan_iscope` probes on 4720/udp.

Accepts every probe variant seen in the wild (esc's and the proxy's `name`/`ip` form, alp's
`params` form, with or without `\\r\\n`) and answers in the firmware's reply shape from the port
it is bound to. Anything else is ignored; nothing a peer sends can stop the responder.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.messages import decode_json, encode_json_line, format_uptime

log = logging.getLogger(__name__)

_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


class DiscoveryResponder:
    """Answers `scan_iscope` probes as a telescope with serial number `serial`.

    `ip` is the address put in replies; by default the bound host, or, when bound to all
    interfaces, our address on the route back to whoever asked. `clients` counts the open
    control connections (`tcp_client_num`); `uptime` gives seconds since boot (`Timestamp`).
    """

    def __init__(
        self,
        host: str,
        port: int,
        serial: str,
        model: str = "Seestar S50",
        ip: str | None = None,
        clients: Callable[[], int] = lambda: 0,
        uptime: Callable[[], float] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.serial = serial
        self.model = model
        self.ip = ip
        self._clients = clients
        started = time.monotonic()
        self._uptime = uptime or (lambda: time.monotonic() - started)
        self._transport: asyncio.DatagramTransport | None = None

    @property
    def ssid(self) -> str:
        """The access point's name: the model's short name and the serial, e.g. `S50_4ddb0535`."""
        short = self.model.split()[-1] if self.model.strip() else "S50"
        return f"{short}_{self.serial}"

    async def start(self) -> None:
        """Bind the socket; with port 0 the system picks a free port, readable from `.port`."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ProbeProtocol(self), local_addr=(self.host, self.port)
        )
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        log.info("discovery responder for %s on %s:%d/udp", self.serial, self.host, self.port)

    async def stop(self) -> None:
        """Close the socket; safe to call twice."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> DiscoveryResponder:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def reply_to(self, probe: dict[str, Any], source_ip: str) -> dict[str, Any] | None:
        """The reply to one decoded datagram, or None when it is not a `scan_iscope` probe."""
        if probe.get("method") != "scan_iscope":
            return None
        rid = probe.get("id")
        return {
            "jsonrpc": "2.0",
            "Timestamp": format_uptime(self._uptime()),
            "method": "scan_iscope",
            "result": {
                "product_model": self.model,
                "sn": self.serial,
                "ssid": self.ssid,
                "ip": self.ip or self._address_for(source_ip),
                "is_verified": True,
                "tcp_client_num": self._clients(),
                "can_star_mode_sel_cam": False,
                "serc": "WPA-PSK",
                "bssid": _bssid(self.serial),
            },
            "code": 0,
            "id": rid if isinstance(rid, int) and not isinstance(rid, bool) else 0,
        }

    def _address_for(self, source_ip: str) -> str:
        if self.host not in _WILDCARDS:
            return self.host
        return _local_ip_toward(source_ip)

    def handle_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """Answer one datagram from `addr` if it is a probe; ignore it otherwise."""
        if self._transport is None:
            return
        try:
            probe = decode_json(data.strip())
        except ProtocolError as exc:
            log.debug("ignoring discovery datagram from %s: %s", addr[0], exc)
            return
        reply = self.reply_to(probe, addr[0])
        if reply is None:
            log.debug("ignoring non-probe datagram from %s", addr[0])
            return
        self._transport.sendto(encode_json_line(reply), addr)


class _ProbeProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: DiscoveryResponder) -> None:
        self._responder = responder

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self._responder.handle_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:
            # A bug in building one reply must not take the responder down for everyone else.
            log.exception("discovery responder failed on a datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP unreachable after replying to a prober that has gone away.
        log.debug("discovery responder socket error: %s", exc)


def _bssid(serial: str) -> str:
    """A stable, locally administered MAC address for the simulated access point."""
    digest = bytearray(hashlib.sha256(serial.encode()).digest()[:6])
    digest[0] = (digest[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in digest)


def _local_ip_toward(address: str) -> str:
    """Our address on the route to `address`; connecting a UDP socket sends nothing."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((address, 9))
        except OSError as exc:
            log.debug("no route back to %s: %s", address, exc)
            return "127.0.0.1"
        return str(sock.getsockname()[0])
