"""The signaling conversation with no web framework: fed messages by hand, it answers an offer
with a real peer, refuses hostile input with errors and ends on a flood, as the proxy's link to
the broker will use it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiortc import RTCSessionDescription

from scopelink.webrtc.encoder import tier_named
from scopelink.webrtc.peer import Peer
from scopelink.webrtc.sessions import PeerManager
from scopelink.webrtc.signaling import CLOSE_POLICY, SignalingConversation
from tests.webrtc.conftest import Source, Telescope, viewer_offer, wait_until


class MemoryOutlet:
    """A conversation's messages kept in a list, as a relay would forward them."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def send(self, text: str) -> bool:
        if self.closed is not None:
            return False
        self.sent.append(json.loads(text))
        return True

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.sent if m["type"] == kind]


def starting_peers(manager: PeerManager, telescope: Telescope) -> Any:
    """How the conversation starts a peer: one viewer "c" of telescope "t" in `manager`."""

    async def start(sdp: str, tier: str | None) -> tuple[Peer, str]:
        return await manager.create("t", telescope, sdp, client="c", tier=tier_named(tier))

    return start


async def test_an_offer_fed_by_hand_is_answered_and_the_peer_connects(source: Source) -> None:
    manager = PeerManager(max_peers=2)
    outlet = MemoryOutlet()
    talk = SignalingConversation(outlet, starting_peers(manager, Telescope(source)))
    client, offer = await viewer_offer()
    player = asyncio.create_task(source.play(400, 20))
    try:
        await talk.receive(json.dumps({"type": "offer", "sdp": offer, "tier": "reduced"}))
        (answer,) = outlet.of("answer")
        await client.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        await wait_until(
            lambda: any(m.get("state") == "connected" for m in outlet.of("session")), 10
        )
        assert manager.stats("t")[0].tier == "reduced"
        await talk.receive('{"type": "bye"}')
        assert outlet.of("session")[-1] == {
            "type": "session", "session_id": answer["session_id"], "state": "closed",
            "reason": "bye",
        }  # fmt: skip
        assert len(manager) == 0
        await talk.receive(json.dumps({"type": "offer", "sdp": offer}))
        assert len(manager) == 1
        await talk.ended()
        assert len(manager) == 0, "the end of the conversation closes its peer"
    finally:
        player.cancel()
        await client.close()
        await manager.close_all()


async def test_hostile_messages_get_errors_and_a_flood_ends_the_conversation() -> None:
    async def start(sdp: str, tier: str | None) -> tuple[Peer, str]:
        raise AssertionError("no offer is valid here")

    outlet = MemoryOutlet()
    talk = SignalingConversation(outlet, start)
    for text in (None, "{", "[]", '{"type": 3}', '{"type": "nope"}', '{"type": "offer"}'):
        await talk.receive(text)
    await talk.receive(json.dumps({"type": "candidate", "candidate": "candidate:1 1 udp"}))
    statuses = [m["problem"]["status"] for m in outlet.of("error")]
    assert statuses == [400, 400, 400, 400, 400, 400, 409]
    assert talk.open and outlet.closed is None
    for _ in range(60):
        await talk.receive('{"type": "bye"}')
    assert outlet.closed == (CLOSE_POLICY, "too many messages") and not talk.open
    assert outlet.of("error")[-1]["problem"]["status"] == 429


async def test_an_mdns_candidate_does_not_hold_up_the_candidates_behind_it(
    source: Source,
) -> None:
    """Chromium hides its host address behind an mDNS name that the server usually cannot
    resolve from another network (a lookup of up to a second): the candidates trickled after
    it (server-reflexive, relay) are added at once, not after that lookup."""
    manager = PeerManager(max_peers=2)
    outlet = MemoryOutlet()
    talk = SignalingConversation(outlet, starting_peers(manager, Telescope(source)))
    client, offer = await viewer_offer()
    # A browser's offer: its candidates trickle after it, so it ends no candidate list.
    offer = "".join(f"{line}\r\n" for line in offer.splitlines() if "end-of-candidates" not in line)
    try:
        await talk.receive(json.dumps({"type": "offer", "sdp": offer}))
        assert talk.peer is not None
        ice = talk.peer._transceiver.receiver.transport.transport  # type: ignore[union-attr]
        hidden = "candidate:1 1 udp 2122260223 0c6c1b5e-unknown-host.local 50000 typ host"
        reflexive = (
            "candidate:2 1 udp 1686052607 203.0.113.9 50001 typ srflx raddr 10.2.0.2 rport 50000"
        )
        for candidate in (hidden, reflexive):
            await talk.receive(json.dumps({"type": "candidate", "candidate": candidate}))
        await wait_until(
            lambda: any(c.host == "203.0.113.9" for c in ice._connection.remote_candidates),
            timeout=0.4,
        )
        assert not outlet.of("error"), outlet.of("error")
    finally:
        await talk.ended()
        await client.close()
        await manager.close_all()
