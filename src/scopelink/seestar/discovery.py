"""Finding telescopes on the local network: the `scan_iscope` probe on 4720/udp and its replies.

A client broadcasts one probe and collects replies until a timeout. Replies can be garbage: the
firmware echoes the probe's `name` unescaped, so another client's probe can make a telescope
answer with malformed JSON, and error replies can be malformed too. Those are skipped and
counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.messages import decode_json, encode_json_line
from scopelink.settings import DISCOVERY_PORT

log = logging.getLogger(__name__)

#: The id every known client puts on its probe.
PROBE_ID = 201
#: Names the firmware echoes back safely: it does not escape them (a dash already breaks it).
_SAFE_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")


@dataclass(frozen=True, slots=True)
class DiscoveredTelescope:
    """One telescope that answered a probe."""

    serial: str
    model: str
    #: Where to connect: the reply's `result.ip`, else the datagram's source address.
    ip: str
    ssid: str
    is_verified: bool


@dataclass(frozen=True, slots=True)
class DiscoveryReport:
    """Everything one scan heard: the telescopes, and how many replies were skipped and why."""

    telescopes: tuple[DiscoveredTelescope, ...] = ()
    #: Replies that were not a JSON object.
    malformed: int = 0
    #: JSON replies that did not name a telescope (no `result.sn`), e.g. firmware errors.
    ignored: int = 0


class _Collector(asyncio.DatagramProtocol):
    """Parses replies as they arrive; keeps the first reply of each serial."""

    def __init__(self) -> None:
        self.found: dict[str, DiscoveredTelescope] = {}
        self.malformed = 0
        self.ignored = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            reply = decode_json(data.strip())
        except ProtocolError as exc:
            self.malformed += 1
            log.debug("skipping malformed discovery reply from %s: %s", addr[0], exc)
            return
        telescope = parse_reply(reply, str(addr[0]))
        if telescope is None:
            self.ignored += 1
            log.debug("ignoring discovery reply without a serial from %s", addr[0])
            return
        self.found.setdefault(telescope.serial, telescope)

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" and the like: nobody is listening there, keep waiting.
        log.debug("discovery socket error: %s", exc)

    def report(self) -> DiscoveryReport:
        return DiscoveryReport(tuple(self.found.values()), self.malformed, self.ignored)


def parse_reply(reply: dict[str, Any], source_ip: str) -> DiscoveredTelescope | None:
    """The telescope a `scan_iscope` reply describes, or None when it names none."""
    method = reply.get("method")
    if method is not None and method != "scan_iscope":
        return None
    result = reply.get("result")
    if not isinstance(result, dict):
        return None
    serial = result.get("sn")
    if not isinstance(serial, str) or not serial:
        return None
    ip = result.get("ip")
    return DiscoveredTelescope(
        serial=serial,
        model=_text(result.get("product_model")),
        ip=ip if isinstance(ip, str) and ip else source_ip,
        ssid=_text(result.get("ssid")),
        is_verified=result.get("is_verified") is True,
    )


def probe(name: str, local_ip: str) -> bytes:
    """The `scan_iscope` datagram, in the esc client's form (with `\\r\\n`)."""
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"probe name {name!r} must be 1-32 letters, digits or underscores")
    return encode_json_line({"id": PROBE_ID, "method": "scan_iscope", "name": name, "ip": local_ip})


async def scan(
    address: str | Sequence[str] = "255.255.255.255",
    port: int = DISCOVERY_PORT,
    timeout: float = 2.0,
    name: str = "scopelink",
    local_ip: str | None = None,
    *,
    source_port: int = 0,
) -> DiscoveryReport:
    """Probe `address` (a broadcast or unicast address, or several) and report who answered.

    `source_port` 0 sends from an ephemeral port, as esc and alp do; some firmware is said to
    answer only probes from port 4720 (see the protocol notes), which `source_port=4720` gives.
    Raises OSError when the socket cannot be opened.
    """
    addresses = [address] if isinstance(address, str) else list(address)
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        _Collector, local_addr=("0.0.0.0", source_port), allow_broadcast=True
    )
    try:
        for target in addresses:
            datagram = probe(name, local_ip or _local_ip_toward(target, port))
            transport.sendto(datagram, (target, port))
        await asyncio.sleep(timeout)
    finally:
        transport.close()
    return collector.report()


async def discover(
    address: str | Sequence[str] = "255.255.255.255",
    port: int = DISCOVERY_PORT,
    timeout: float = 2.0,
    name: str = "scopelink",
    local_ip: str | None = None,
    *,
    source_port: int = 0,
) -> list[DiscoveredTelescope]:
    """The telescopes that answer a probe within `timeout` seconds, one per serial number."""
    report = await scan(address, port, timeout, name, local_ip, source_port=source_port)
    return list(report.telescopes)


def _local_ip_toward(address: str, port: int) -> str:
    """Our address on the interface that routes to `address`; no packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.connect((address, port))
        except OSError as exc:
            log.debug("no route to %s for the probe's ip field: %s", address, exc)
            return "0.0.0.0"
        return str(sock.getsockname()[0])


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
