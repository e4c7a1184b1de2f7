"""Discovery over real UDP on loopback: the client finds the simulator and shrugs off garbage."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from scopelink.seestar.discovery import (
    DiscoveredTelescope,
    discover,
    parse_reply,
    probe,
    scan,
)
from scopelink.simulator.discovery_server import DiscoveryResponder

SERIAL = "4ddb0535"
#: A second loopback address, so that two responders can share one port.
OTHER_LOOPBACK = "127.0.0.2"


@pytest.fixture
async def responder() -> AsyncIterator[DiscoveryResponder]:
    async with DiscoveryResponder(
        "127.0.0.1", 0, SERIAL, clients=lambda: 2, uptime=lambda: 1234.5
    ) as r:
        yield r


class Inbox(asyncio.DatagramProtocol):
    """A bare UDP socket for tests: remembers what arrives."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.put_nowait((data, (str(addr[0]), int(addr[1]))))


async def open_socket(
    host: str = "127.0.0.1", port: int = 0
) -> tuple[asyncio.DatagramTransport, Inbox]:
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(Inbox, local_addr=(host, port))


async def test_client_finds_the_simulated_telescope(responder: DiscoveryResponder) -> None:
    found = await discover("127.0.0.1", responder.port, timeout=0.3)
    assert found == [
        DiscoveredTelescope(
            serial=SERIAL,
            model="Seestar S50",
            ip="127.0.0.1",
            ssid="S50_4ddb0535",
            is_verified=True,
        )
    ]


async def test_malformed_replies_are_skipped_and_counted_while_the_good_one_is_found(
    responder: DiscoveryResponder,
) -> None:
    # A neighbour that answers like buggy firmware: the probe's name echoed unescaped, binary
    # junk, a JSON array, an error reply without a serial, and a second copy of a good reply.
    noisy, inbox = await open_socket(OTHER_LOOPBACK, responder.port)
    good_copy = {"method": "scan_iscope", "result": {"sn": SERIAL, "ip": "10.0.0.9"}, "id": 201}

    async def answer_like_broken_firmware() -> None:
        _, client = await inbox.received.get()
        for datagram in (
            b'{"jsonrpc":"2.0","result":{"name":"my"phone"}}\r\n',
            b"\xff\xfe\x00garbage",
            b"[1, 2, 3]",
            b'{"jsonrpc":"2.0","method":"scan_iscope","error":"Second root","code":101,"id":201}',
            json.dumps(good_copy).encode(),
        ):
            noisy.sendto(datagram, client)

    neighbour = asyncio.create_task(answer_like_broken_firmware())
    try:
        report = await scan(["127.0.0.1", OTHER_LOOPBACK], responder.port, timeout=0.3)
    finally:
        noisy.close()
        await neighbour
    assert [t.serial for t in report.telescopes] == [SERIAL]
    assert report.malformed == 3
    assert report.ignored == 1


async def test_two_telescopes_on_the_network_are_both_found(
    responder: DiscoveryResponder,
) -> None:
    async with DiscoveryResponder(OTHER_LOOPBACK, responder.port, "deadbeef", model="Seestar S30"):
        found = await discover(["127.0.0.1", OTHER_LOOPBACK], responder.port, timeout=0.3)
    assert sorted((t.serial, t.ssid, t.ip) for t in found) == [
        (SERIAL, "S50_4ddb0535", "127.0.0.1"),
        ("deadbeef", "S30_deadbeef", OTHER_LOOPBACK),
    ]


async def test_no_responder_returns_an_empty_list_after_the_timeout() -> None:
    silent, _ = await open_socket()
    port = silent.get_extra_info("sockname")[1]
    started = time.monotonic()
    try:
        found = await discover("127.0.0.1", port, timeout=0.2)
    finally:
        silent.close()
    assert found == []
    assert time.monotonic() - started < 1.0


async def test_nothing_listening_at_all_is_not_an_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await discover("127.0.0.1", port, timeout=0.2) == []


@pytest.mark.parametrize(
    "datagram",
    [
        b'{"id": 201, "method": "scan_iscope", "name": "iphone", "ip": "127.0.0.1"}\r\n',
        b'{"id":201,"method":"scan_iscope","name":"seestarproxy","ip":"127.0.0.1"}',
        b'{"id": 1, "method": "scan_iscope", "params": ""}',
    ],
    ids=["esc", "proxy", "alp"],
)
async def test_responder_answers_every_probe_variant_in_the_firmware_shape(
    responder: DiscoveryResponder, datagram: bytes
) -> None:
    client, inbox = await open_socket()
    try:
        client.sendto(datagram, ("127.0.0.1", responder.port))
        data, source = await asyncio.wait_for(inbox.received.get(), 2.0)
    finally:
        client.close()
    assert data.endswith(b"\r\n")
    reply = json.loads(data)
    assert source == ("127.0.0.1", responder.port)
    assert list(reply) == ["jsonrpc", "Timestamp", "method", "result", "code", "id"]
    assert reply["Timestamp"] == "1234.500000000"
    assert reply["method"] == "scan_iscope" and reply["code"] == 0
    assert reply["id"] == json.loads(datagram)["id"]
    result = reply["result"]
    assert result["product_model"] == "Seestar S50"
    assert result["sn"] == SERIAL and result["ssid"] == "S50_4ddb0535"
    assert result["ip"] == "127.0.0.1"
    assert result["is_verified"] is True and result["tcp_client_num"] == 2
    assert result["can_star_mode_sel_cam"] is False and result["serc"] == "WPA-PSK"
    assert len(result["bssid"].split(":")) == 6


async def test_responder_ignores_garbage_and_keeps_answering(
    responder: DiscoveryResponder,
) -> None:
    client, inbox = await open_socket()
    target = ("127.0.0.1", responder.port)
    try:
        for junk in (b"", b"\x00\xff", b"not json", b"[]", b'{"method":"get_device_state"}'):
            client.sendto(junk, target)
        client.sendto(probe("tester", "127.0.0.1"), target)
        data, _ = await asyncio.wait_for(inbox.received.get(), 2.0)
        await asyncio.sleep(0.05)
    finally:
        client.close()
    assert json.loads(data)["result"]["sn"] == SERIAL
    assert inbox.received.empty()


async def test_responder_binds_a_free_port_and_stops_cleanly() -> None:
    r = DiscoveryResponder("127.0.0.1", 0, SERIAL)
    await r.start()
    assert r.port != 0
    await r.stop()
    await r.stop()
    assert await discover("127.0.0.1", r.port, timeout=0.1) == []


def test_reply_ip_falls_back_to_the_datagram_source() -> None:
    reply = {"method": "scan_iscope", "result": {"sn": SERIAL, "product_model": "Seestar S50"}}
    found = parse_reply(reply, "192.168.1.40")
    assert found is not None and found.ip == "192.168.1.40"
    assert found.ssid == "" and found.is_verified is False


def test_probe_is_the_esc_datagram_and_refuses_names_the_firmware_would_garble() -> None:
    assert json.loads(probe("scopelink", "10.0.0.2")) == {
        "id": 201,
        "method": "scan_iscope",
        "name": "scopelink",
        "ip": "10.0.0.2",
    }
    assert probe("scopelink", "10.0.0.2").endswith(b"\r\n")
    with pytest.raises(ValueError, match="probe name"):
        probe("my-phone", "10.0.0.2")
