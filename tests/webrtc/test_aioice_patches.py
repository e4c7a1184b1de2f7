"""The server's ICE agent follows the browser's later nomination, and resolves mDNS candidates on
any event loop (`webrtc/aioice_patches.py`).

The browser side here is a small controlling ICE agent of our own over real UDP sockets, because
the case needs exact control of which checks get answered when; Chromium does the same across
real NATs in `tests/nat/test_chromium.py`, but only some of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aioice.ice
import pytest
from aioice import Candidate, Connection, stun
from aioice.ice import CandidatePair

from scopelink.webrtc import aioice_patches

aioice_patches.apply()

BROWSER_UFRAG = "brws"
BROWSER_PASSWORD = "browser-password-of-24ch"


@dataclass(eq=False)
class BrowserCandidate(asyncio.DatagramProtocol):
    """One UDP candidate of the pretend browser: answers the server's checks while `answering`,
    sends its own checks, and keeps the media bytes it receives."""

    server: Connection
    answering: bool = True
    checks_seen: asyncio.Event = field(default_factory=asyncio.Event)
    #: When each of the server's checks arrived (loop time).
    check_times: list[float] = field(default_factory=list)
    media: list[bytes] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = stun.parse_message(data)
        except ValueError:
            self.media.append(data)
            return
        if message.message_class != stun.Class.REQUEST:
            return  # the server's answers to our checks
        self.checks_seen.set()
        self.check_times.append(asyncio.get_running_loop().time())
        if not self.answering:
            return
        response = stun.Message(
            message_method=stun.Method.BINDING,
            message_class=stun.Class.RESPONSE,
            transaction_id=message.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        response.add_message_integrity(BROWSER_PASSWORD.encode())
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)

    def nominate(self, to: tuple[str, int]) -> None:
        """Send a check with USE-CANDIDATE, as a controlling browser does on the pair it picks."""
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        request.attributes["USERNAME"] = f"{self.server.local_username}:{BROWSER_UFRAG}"
        request.attributes["PRIORITY"] = 1_853_817_087
        request.attributes["ICE-CONTROLLING"] = 1
        request.attributes["USE-CANDIDATE"] = None
        request.add_message_integrity(self.server.local_password.encode())
        assert self.transport is not None
        self.transport.sendto(bytes(request), to)


@contextlib.asynccontextmanager
async def server_agent() -> AsyncIterator[Connection]:
    server = Connection(ice_controlling=False, use_ipv6=False)
    try:
        await server.gather_candidates()
        if not server.local_candidates:
            pytest.fail("no non-loopback IPv4 address to gather a host candidate on")
        server.remote_username = BROWSER_UFRAG
        server.remote_password = BROWSER_PASSWORD
        yield server
    finally:
        await server.close()


async def browser_candidate(server: Connection, *, answering: bool) -> BrowserCandidate:
    host = server.local_candidates[0].host
    loop = asyncio.get_running_loop()
    _, candidate = await loop.create_datagram_endpoint(
        lambda: BrowserCandidate(server, answering=answering), local_addr=(host, 0)
    )
    return candidate


def as_remote(candidate: BrowserCandidate, host: str, priority: int) -> Candidate:
    return Candidate(
        foundation=f"f{candidate.port}",
        component=1,
        transport="udp",
        priority=priority,
        host=host,
        port=candidate.port,
        type="host",
    )


async def until_media_reaches(server: Connection, candidate: BrowserCandidate) -> None:
    for _ in range(60):
        await server.send(b"\x80video")
        await asyncio.sleep(0.05)
        if candidate.media:
            return
    raise AssertionError("the server's media never went to the candidate the browser nominated")


async def test_the_server_switches_to_the_pair_the_browser_nominates_later() -> None:
    async with server_agent() as server:
        local = server.local_candidates[0]
        relay_like = await browser_candidate(server, answering=True)
        direct = await browser_candidate(server, answering=False)  # its answers are late
        try:
            # The direct candidate ranks first, so its check is in flight when ICE completes.
            await server.add_remote_candidate(as_remote(direct, local.host, 2_000_000_000))
            await server.add_remote_candidate(as_remote(relay_like, local.host, 1_000))
            await server.add_remote_candidate(None)
            connecting = asyncio.create_task(server.connect())
            await asyncio.wait_for(direct.checks_seen.wait(), 2)
            await asyncio.wait_for(relay_like.checks_seen.wait(), 2)
            relay_like.nominate((local.host, local.port))
            await asyncio.wait_for(connecting, 3)
            await until_media_reaches(server, relay_like)

            # The direct pair's check now succeeds and the browser nominates it.
            direct.answering = True
            direct.nominate((local.host, local.port))
            await until_media_reaches(server, direct)
        finally:
            for candidate in (relay_like, direct):
                assert candidate.transport is not None
                candidate.transport.close()


async def test_a_check_cancelled_by_completion_can_run_again() -> None:
    async with server_agent() as server:
        local = server.local_candidates[0]
        answered = await browser_candidate(server, answering=True)
        silent = await browser_candidate(server, answering=False)
        try:
            await server.add_remote_candidate(as_remote(silent, local.host, 2_000_000_000))
            await server.add_remote_candidate(as_remote(answered, local.host, 1_000))
            await server.add_remote_candidate(None)
            connecting = asyncio.create_task(server.connect())
            await asyncio.wait_for(silent.checks_seen.wait(), 2)
            answered.nominate((local.host, local.port))
            await asyncio.wait_for(connecting, 3)
            states = {pair.remote_addr[1]: pair for pair in server._check_list}
            assert states[silent.port].state == CandidatePair.State.FAILED
            assert states[silent.port].task is None
        finally:
            for candidate in (answered, silent):
                assert candidate.transport is not None
                candidate.transport.close()


async def test_a_check_from_the_browser_resends_the_servers_check_at_once() -> None:
    """The server's first check was lost (the browser's router dropped it): the browser's own
    check on that pair makes the server send it again at once, not at its 500 ms STUN timer."""
    async with server_agent() as server:
        local = server.local_candidates[0]
        behind_nat = await browser_candidate(server, answering=False)
        try:
            await server.add_remote_candidate(as_remote(behind_nat, local.host, 2_000_000_000))
            await server.add_remote_candidate(None)
            connecting = asyncio.create_task(server.connect())
            await asyncio.wait_for(behind_nat.checks_seen.wait(), 2)  # dropped
            behind_nat.answering = True  # the browser's check opened its router
            behind_nat.nominate((local.host, local.port))
            await asyncio.wait_for(connecting, 3)
            first, again = behind_nat.check_times[:2]
            # aioice's own retransmission comes 500 ms after the first check.
            assert again - first < 0.3, behind_nat.check_times
        finally:
            assert behind_nat.transport is not None
            behind_nat.transport.close()


class _SlowMdns:
    """Stands in for aioice's multicast resolver: tests may not send to the LAN's multicast group.
    It is slow enough that two lookups overlap and contend for aioice's lock."""

    transport = None

    async def resolve(self, name: str) -> None:
        await asyncio.sleep(0.05)

    async def close(self) -> None:
        return None


def test_mdns_candidates_resolve_on_a_second_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    async def create() -> _SlowMdns:
        await asyncio.sleep(0.01)
        return _SlowMdns()

    monkeypatch.setattr(aioice.ice.mdns, "create_mdns_protocol", create)

    async def two_overlapping_lookups() -> None:
        server = Connection(ice_controlling=False, use_ipv6=False)
        names = (
            "1f0c6a3e-0000-4000-8000-000000000001.local",
            "1f0c6a3e-0000-4000-8000-000000000002.local",
        )
        await asyncio.gather(
            *(
                server.add_remote_candidate(
                    Candidate("f1", 1, "udp", 2_000_000_000, name, 9, "host")
                )
                for name in names
            )
        )
        await server.close()

    # Each `asyncio.run` is a new loop on this thread, as each test or benchmark run is.
    asyncio.run(two_overlapping_lookups())
    asyncio.run(two_overlapping_lookups())
