"""WebSocket signaling over the real app, its simulator, a real socket and a real aiortc peer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiortc import RTCSessionDescription
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scopelink.settings import ServeSettings
from tests.web.conftest import RunningApp, serve, wait_connected
from tests.web.dc_client import DcClient
from tests.web.test_whep import Player, configure

PATH = "/api/telescopes/simulator/signaling"


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=10)) as app:
        app.registry.get("simulator").pipeline.linger_s = 0.3
        async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as http:
            await wait_connected(http)
        yield app


def socket(app: RunningApp, query: str = "", origin: str | None = None) -> Any:
    url = f"ws://127.0.0.1:{app.port}{PATH}{query}"
    return connect(url, origin=origin, proxy=None, open_timeout=5)  # type: ignore[arg-type]


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def receive(ws: ClientConnection, kind: str, timeout: float = 10) -> dict[str, Any]:
    """The next message of type `kind` (stats are skipped unless asked for)."""
    deadline = time.monotonic() + timeout
    while True:
        raw = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
        message = json.loads(raw)
        if message["type"] == kind:
            return message
        assert message["type"] in ("stats", "session"), message


async def error(ws: ClientConnection) -> dict[str, Any]:
    return (await receive(ws, "error"))["problem"]


async def state(ws: ClientConnection) -> tuple[str, str, str | None]:
    event = await receive(ws, "session")
    return event["session_id"], event["state"], event.get("reason")


async def test_watch_events_stats_bye_renegotiation_and_close(running: RunningApp) -> None:
    pipeline = running.registry.get("simulator").pipeline
    manager = running.app.state.peers
    origin = f"http://127.0.0.1:{running.port}"
    players: list[Player] = []
    try:
        async with socket(running, origin=origin) as ws:
            hello = await receive(ws, "hello")
            assert hello["ice_servers"] == [] and hello["max_peers"] == 16

            players.append(player := Player())
            await send(ws, {"type": "offer", "sdp": await player.offer(), "tier": "full"})
            answer = await receive(ws, "answer")
            first = answer["session_id"]
            assert "a=candidate:" in answer["sdp"] and len(first) > 20
            await player.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            assert await state(ws) == (first, "connecting", None)
            assert await state(ws) == (first, "connected", None)
            stamps = await player.stamps(5)
            assert stamps == sorted(stamps) and len(set(stamps)) == 5
            stats = (await receive(ws, "stats"))["stats"]
            assert stats["id"] == first and stats["tier"] == "full"
            assert "client" not in stats
            assert pipeline.viewers == 1

            # A trickled candidate and the end of candidates are taken without complaint.
            line = next(x for x in player.pc.localDescription.sdp.splitlines() if "candidate:" in x)
            await send(ws, {"type": "candidate", "candidate": line[2:], "sdpMid": "0"})
            await send(ws, {"type": "candidate", "candidate": None})
            await send(ws, {"type": "restart"})
            assert (await error(ws))["status"] == 422  # the first error: the candidates were fine

            await send(ws, {"type": "bye"})
            assert await state(ws) == (first, "closed", "bye")
            assert len(manager) == 0 and pipeline.viewers == 0

            # Renegotiation: a second offer ends the session it replaces.
            players.append(player := Player())
            await send(ws, {"type": "offer", "sdp": await player.offer()})
            second = (await receive(ws, "answer"))["session_id"]
            players.append(player := Player())
            await send(ws, {"type": "offer", "sdp": await player.offer(), "tier": "reduced"})
            assert await state(ws) == (second, "connecting", None)
            assert await state(ws) == (second, "closed", "renegotiated")
            answer = await receive(ws, "answer")
            third = answer["session_id"]
            assert len({first, second, third}) == 3
            await player.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            assert await state(ws) == (third, "connecting", None)
            assert await state(ws) == (third, "connected", None)
            assert (await receive(ws, "stats"))["stats"]["tier"] == "reduced"
            assert len(await player.stamps(2)) == 2
            assert [s.id for s in manager.sessions()] == [third]
        # Closing the socket closes its session; the stream stops after the last viewer.
        deadline = time.monotonic() + 5
        while (len(manager) or pipeline.viewers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(manager) == 0 and pipeline.viewers == 0
        await asyncio.sleep(pipeline.linger_s + 0.5)
        assert not pipeline.imaging.streaming
    finally:
        for p in players:
            await p.pc.close()


async def test_hostile_messages_are_errors_and_a_flood_closes(running: RunningApp) -> None:
    async with socket(running) as ws:
        await receive(ws, "hello")
        await send(ws, {"type": "restart"})
        restart = await error(ws)
        assert restart["status"] == 422 and restart["title"] == "ICE restart unsupported"
        cases: list[tuple[str | bytes, int]] = [
            ("not json {", 400),
            ("[1, 2]", 400),
            ('{"type": 7}', 400),
            ('{"type": "dance"}', 400),
            (json.dumps({"type": "offer", "sdp": "x" * (70 * 1024)}), 413),
            ('{"type": "offer", "sdp": 12}', 400),
            ('{"type": "offer", "sdp": "v=0", "tier": "ultra"}', 400),
            ('{"type": "offer", "sdp": "hello"}', 400),
            ('{"type": "candidate", "candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host"}', 409),
            (b"\x00\x01", 400),
        ]
        for raw, status in cases:
            await ws.send(raw)
            problem = await error(ws)
            assert problem["status"] == status, (raw[:40], problem)
            assert problem["title"] and problem["detail"]
        # Still usable after all that.
        await send(ws, {"type": "bye"})
        await send(ws, {"type": "restart"})
        assert (await error(ws))["status"] == 422

        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(200):
                await send(ws, {"type": "restart"})
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 5))
                assert message["type"] == "error"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_peer_limit_is_a_503_error(running: RunningApp) -> None:
    configure(running, max_peers=1)
    player = Player()
    try:
        offer = await player.offer()
        async with socket(running) as one, socket(running) as two:
            assert (await receive(one, "hello"))["max_peers"] == 1
            await receive(two, "hello")
            await send(one, {"type": "offer", "sdp": offer})
            await receive(one, "answer")
            await send(two, {"type": "offer", "sdp": offer})
            problem = await error(two)
            assert problem["status"] == 503 and "limit of 1" in problem["detail"]
    finally:
        await player.pc.close()


async def test_origin_tokens_ice_servers_and_the_webrtc_default() -> None:
    settings = ServeSettings(
        simulator_fps=10,
        tokens={"op": "operator", "eye": "viewer"},
        stun_urls=["stun:stun.scope.lan:3478"],
        turn_urls=["turn:turn.scope.lan:3478?transport=udp"],
        turn_secret="s3cret",
        max_peers=3,
        webrtc_default=False,
    )
    assert "s3cret" not in repr(settings)
    async with serve(settings) as app:
        with pytest.raises(InvalidStatus):
            async with socket(app):
                pass
        with pytest.raises(InvalidStatus):
            async with socket(app, "?token=wrong"):
                pass
        with pytest.raises(InvalidStatus):
            async with socket(app, "?token=eye", origin="http://evil.example"):
                pass
        async with socket(app, "?token=eye", origin=f"http://127.0.0.1:{app.port}") as ws:
            hello = await receive(ws, "hello")
        assert hello["max_peers"] == 3
        stun, turn = hello["ice_servers"]
        assert stun == {"urls": ["stun:stun.scope.lan:3478"]}
        assert turn["urls"] == ["turn:turn.scope.lan:3478?transport=udp"]
        assert turn["username"].endswith(":token-" + turn["username"].rsplit("-", 1)[1])
        assert turn["credential"]
        async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as http:
            info = (await http.get("/api/session?token=eye")).json()
        assert info == {"role": "viewer", "token_required": True, "webrtc_default": False}


async def test_unknown_telescope_is_an_error_and_a_close(running: RunningApp) -> None:
    url = f"ws://127.0.0.1:{running.port}/api/telescopes/nope/signaling"
    async with connect(url, proxy=None) as ws:
        assert (await error(ws))["status"] == 404
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


async def test_detach_lets_the_socket_go_and_the_data_channel_renegotiates(
    running: RunningApp,
) -> None:
    """Once the data channel is open the page can close its signaling socket: the session lives
    on, commands and renegotiation go over the channel, and closing the peer ends it."""
    manager = running.app.state.peers
    pipeline = running.registry.get("simulator").pipeline
    client = DcClient(running.base_url)
    client.pc.addTransceiver("video", direction="recvonly")
    second = DcClient(running.base_url, client_id=client.client_id)
    second.pc.addTransceiver("video", direction="recvonly")
    try:
        async with socket(running) as ws:
            await receive(ws, "hello")
            # Nothing to let go yet: refused, the socket stays.
            await send(ws, {"type": "detach"})
            problem = await error(ws)
            assert problem["status"] == 409 and "control" in problem["detail"]

            await client.pc.setLocalDescription(await client.pc.createOffer())
            await send(ws, {"type": "offer", "sdp": client.pc.localDescription.sdp})
            answer = await receive(ws, "answer")
            await client.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
            await client.opened()
            await client.hello()
            await send(ws, {"type": "detach"})
            detached = await receive(ws, "detached")
            assert detached["session_id"] == answer["session_id"]
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
            assert closed.value.rcvd.reason == "detached"

        # A session of data channels only takes trickled candidates too (as a browser sends
        # them).
        async with socket(running) as ws:
            await receive(ws, "hello")
            only = DcClient(running.base_url)
            try:
                await only.pc.setLocalDescription(await only.pc.createOffer())
                await send(ws, {"type": "offer", "sdp": only.pc.localDescription.sdp})
                await receive(ws, "answer")
                line = next(
                    x for x in only.pc.localDescription.sdp.splitlines() if "candidate:" in x
                )
                await send(ws, {"type": "candidate", "candidate": line[2:], "sdpMid": "0"})
                await send(ws, {"type": "candidate", "candidate": ""})
                await send(ws, {"type": "restart"})
                assert (await error(ws))["status"] == 422  # the first error: not the candidates
            finally:
                await only.close()

        # The socket is gone; the session, its video and its channel are not.
        await asyncio.sleep(0.3)
        assert [s.id for s in manager.sessions()] == [answer["session_id"]]
        assert pipeline.viewers == 1
        _, result = await client.run("set_gain", {"gain": 120})
        assert result["ok"], result

        # Renegotiation over the channel: a new peer connection with its own session.
        await second.pc.setLocalDescription(await second.pc.createOffer())
        client.send(
            {"v": 1, "type": "offer", "sdp": second.pc.localDescription.sdp, "tier": "reduced"}
        )
        renegotiated = await client.next("answer")
        assert renegotiated["session_id"] != answer["session_id"]
        await second.pc.setRemoteDescription(RTCSessionDescription(renegotiated["sdp"], "answer"))
        await second.opened()
        await second.hello()
        assert {s.id for s in manager.sessions()} == {
            answer["session_id"],
            renegotiated["session_id"],
        }
        # The page closes the old connection once the new one plays: the server notices.
        await client.close()
        deadline = time.monotonic() + 10
        while len(manager) > 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert [s.id for s in manager.sessions()] == [renegotiated["session_id"]]
        _, result = await second.run("set_gain", {"gain": 80})
        assert result["ok"], result
    finally:
        await client.close()
        await second.close()


async def test_candidates_being_looked_up_do_not_hold_up_the_socket(running: RunningApp) -> None:
    """Chromium's host candidates are mDNS names, which take aioice up to a second each to look
    up; the socket's next messages (a detach, a bye) must not wait behind them."""
    player = Player()
    try:
        async with socket(running) as ws:
            await receive(ws, "hello")
            # As a browser offers: its candidates still to come (aiortc's offer ends them).
            offer = (await player.offer()).replace("a=end-of-candidates\r\n", "")
            await send(ws, {"type": "offer", "sdp": offer})
            await receive(ws, "answer")
            for n in range(3):
                name = f"{n}a4b2c1d-5e6f-4a1b-9c8d-0e1f2a3b4c5{n}.local"
                line = f"candidate:{n} 1 udp 2122260223 {name} {50000 + n} typ host"
                await send(ws, {"type": "candidate", "candidate": line, "sdpMid": "0"})
            started = time.monotonic()
            await send(ws, {"type": "restart"})
            problem = await error(ws)
            took = time.monotonic() - started
            assert problem["status"] == 422
            # Three lookups in a row would take about three seconds.
            assert took < 1.5, f"the socket waited {took:.1f} s behind the candidates"
    finally:
        await player.pc.close()
