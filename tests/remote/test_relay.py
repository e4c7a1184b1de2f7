"""A browser reaches a telescope through the broker: the broker relays the signaling only, the
proxy checks the grant and the role, and commands and video then go peer to peer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from scopelink.simulator.simulator import Simulator
from tests.remote.conftest import Remote, exchange_over, remote_stack, sign_up
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message


async def test_an_owner_connects_through_the_broker_and_commands_the_telescope(
    remote: Remote,
) -> None:
    ws = await remote.owner.signaling(remote.telescope_id, remote.broker.ws_url)
    client = DcClient(remote.proxy.base_url)
    try:
        hello = await next_message(ws, "hello")
        assert hello["max_peers"] >= 1
        welcome = await client.connect(exchange=exchange_over(ws))
        assert welcome is not None and welcome["type"] == "welcome"
        ack, result = await client.run("park")
        assert ack["accepted"] and result["ok"], result
        await ws.send(json.dumps({"type": "detach"}))
        detached = await next_message(ws, "detached")
        assert detached["session_id"]
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 1000
        # The peer outlives its signaling: commands still go over the data channel.
        ack, result = await client.run("set_gain", {"gain": 80})
        assert ack["accepted"], ack
    finally:
        await client.close()
        await ws.close()


async def test_a_viewer_watches_but_cannot_move_the_mount(remote: Remote) -> None:
    r = await remote.owner.http.post(
        f"/api/telescopes/{remote.telescope_id}/invitations", json={"role": "viewer"}
    )
    code = r.json()["code"]
    bob = await sign_up(remote.broker, "bob")
    remote.people.append(bob)
    r = await bob.http.post("/api/invitations/accept", json={"code": code})
    assert r.json()["role"] == "viewer"
    ws = await bob.signaling(remote.telescope_id, remote.broker.ws_url)
    client = DcClient(remote.proxy.base_url)
    try:
        await next_message(ws, "hello")
        await client.connect(exchange=exchange_over(ws))
        ack, _ = await client.run("goto", {"target": "M31"})
        assert not ack["accepted"]
        assert ack["problem"]["status"] == 403
        assert "viewers may watch" in ack["problem"]["detail"]
    finally:
        await client.close()
        await ws.close()


async def test_the_proxy_audit_log_names_who_commanded_what_and_how_it_ended(
    remote: Remote,
) -> None:
    ws = await remote.owner.signaling(remote.telescope_id, remote.broker.ws_url)
    client = DcClient(remote.proxy.base_url)
    try:
        await next_message(ws, "hello")
        await client.connect(exchange=exchange_over(ws))
        ack, result = await client.run("set_gain", {"gain": 81})
        assert ack["accepted"] and result["ok"]
        ack, result = await client.run("goto", {"target": "no such object"})
        assert not ack["accepted"] or not result["ok"]
    finally:
        await client.close()
        await ws.close()
    records = list(remote.proxy.app.state.commands.audit.recent)
    gain = [r for r in records if r["command"] == "set_gain"]
    assert gain[0] | {"t": 0} == {
        "t": 0, "telescope": "simulator", "client": f"account-{remote.owner.account_id}",
        "who": "ada", "role": "operator", "command": "set_gain", "params": {"gain": 81},
        "outcome": "completed", "repeat": False,
    }  # fmt: skip
    (goto,) = [r for r in records if r["command"] == "goto"]
    assert goto["outcome"] in ("refused", "failed") and goto["who"] == "ada"
    assert "no such object" in goto["detail"]


async def test_the_proxy_sleeps_until_a_viewer_arrives_and_again_after_the_last_leaves(
    remote: Remote,
) -> None:
    """No telescope stream and no encoder while nobody watches: on a small computer beside the
    telescope, idle costs nothing but the link's heartbeats."""
    pipeline = remote.link.telescope.pipeline
    pipeline.linger_s = 0.3
    stats = remote.simulator.imaging.stats
    peers = remote.proxy.app.state.peers
    sent = stats.frames_sent
    await asyncio.sleep(1.0)
    assert stats.frames_sent == sent and not pipeline.viewers and not peers.encoders("simulator")
    ws = await remote.owner.signaling(remote.telescope_id, remote.broker.ws_url)
    client = DcClient(remote.proxy.base_url)
    try:
        await next_message(ws, "hello")
        await client.connect(exchange=exchange_over(ws))
        await asyncio.sleep(1.5)
        assert stats.frames_sent > sent + 2 and peers.encoders("simulator")
    finally:
        await client.close()
        await ws.close()
    deadline = asyncio.get_running_loop().time() + 10
    while pipeline.viewers or peers.encoders("simulator"):
        assert asyncio.get_running_loop().time() < deadline, "still streaming with no viewer"
        await asyncio.sleep(0.1)
    await asyncio.sleep(pipeline.linger_s + 0.5)
    sent = stats.frames_sent
    await asyncio.sleep(1.0)
    assert stats.frames_sent == sent, "the telescope kept streaming after the last viewer left"


async def test_a_renegotiated_peer_gets_fresh_turn_credentials_from_the_broker(
    tmp_path: Path, simulator: Simulator
) -> None:
    """TURN credentials expire: a peer negotiated over the data channel long after its
    conversation opened asks the broker for new ones through the link."""
    turn = {"turn_urls": ["turn:127.0.0.1:9?transport=udp"], "turn_secret": "s3cret"}
    async with remote_stack(tmp_path, simulator, turn_ttl_s=60, **turn) as remote:
        link = remote.link
        first = await link.fresh_ice()
        assert first is not None
        (turn_server,) = [s for s in first if s.get("username")]
        expires, user = turn_server["username"].split(":", 1)
        assert user == f"proxy-{remote.telescope_id}"
        assert 0 < int(expires) - time.time() <= 61
        await asyncio.sleep(1.1)
        (again,) = [s for s in await link.fresh_ice() or [] if s.get("username")]
        assert int(again["username"].split(":")[0]) > int(expires)
