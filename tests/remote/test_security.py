"""Every way in is refused with a clear reason, and nothing else is disturbed: no token, an
expired or replayed grant, a proxy claiming a telescope it was not paired for, a flood of
connection attempts, a cross-origin page, a revoked member."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.link import BrokerLink, LinkRefusedError, LinkState
from scopelink.schema.signaling import IceServer
from scopelink.simulator.simulator import Simulator
from tests.remote.conftest import (
    FAST,
    Remote,
    connect_and_detach,
    pair_proxy,
    remote_stack,
    sign_up,
)
from tests.web.dc_client import DcClient
from tests.web.signaling_client import next_message


class MemoryBrowser:
    """A browser's end of a conversation inside the broker: what the proxy sent it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []
        self.finished: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    async def deliver(self, text: str) -> None:
        self.messages.append(json.loads(text))

    async def finish(self, code: int, reason: str) -> None:
        if not self.finished.done():
            self.finished.set_result((code, reason))


async def open_with_grant(remote: Remote, grant: str) -> MemoryBrowser:
    """Open a conversation on the proxy through the real hub, with the grant given."""
    hub = remote.broker.broker.hub
    browser = MemoryBrowser()
    ice: list[IceServer] = []
    await hub.connect(
        hub.new_conv(), remote.telescope_id, remote.owner.account_id, grant, ice, ice, browser
    )
    return browser


async def test_a_browser_without_a_token_is_refused_with_the_reason(remote: Remote) -> None:
    url = f"{remote.broker.ws_url}/api/telescopes/{remote.telescope_id}/signaling"
    async with connect(url) as ws:
        error = await next_message(ws, "error")
        assert error["problem"]["status"] == 401 and "sign in" in error["problem"]["detail"]
        await asyncio.wait_for(ws.wait_closed(), 5)
        assert ws.close_code == 4401
    async with httpx.AsyncClient(base_url=remote.broker.url) as anonymous:
        assert (await anonymous.get("/api/me")).status_code == 401
        r = await anonymous.get("/api/me", headers={"authorization": "Bearer slk_forged"})
        assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


async def test_an_expired_grant_is_refused_by_the_proxy(remote: Remote) -> None:
    signer = remote.broker.broker.signer
    expired = signer.issue(
        remote.owner.account_id, "ada", remote.telescope_id, "owner", now=time.time() - 600
    )
    browser = await open_with_grant(remote, expired)
    code, reason = await asyncio.wait_for(browser.finished, 5)
    assert code == 4401 and "expired" in reason
    (error,) = browser.messages
    assert error["type"] == "error" and error["problem"]["status"] == 401  # type: ignore[index]


async def test_a_replayed_grant_is_refused_and_the_first_use_is_unharmed(remote: Remote) -> None:
    signer = remote.broker.broker.signer
    grant = signer.issue(remote.owner.account_id, "ada", remote.telescope_id, "owner")
    first = await open_with_grant(remote, grant)
    replay = await open_with_grant(remote, grant)
    code, reason = await asyncio.wait_for(replay.finished, 5)
    assert code == 4401 and "replayed" in reason
    assert first.messages[0]["type"] == "hello" and not first.finished.done()


async def test_a_grant_signed_by_another_key_is_refused(remote: Remote) -> None:
    from scopelink.grants import GrantSigner, generate_private_key

    forged = GrantSigner(generate_private_key()).issue(
        remote.owner.account_id, "ada", remote.telescope_id, "owner"
    )
    browser = await open_with_grant(remote, forged)
    code, reason = await asyncio.wait_for(browser.finished, 5)
    assert code == 4401 and "signature" in reason


async def test_a_proxy_claiming_a_telescope_it_was_not_paired_for_is_refused(
    remote: Remote, tmp_path: Path
) -> None:
    # A second proxy, paired for a telescope of its own, claims the first one's.
    other = ProxyIdentity(tmp_path / "other-proxy")
    own = await pair_proxy(remote.broker, other, remote.owner, name="Balcony")
    claim = Pairing(own.broker_url, remote.telescope_id, own.broker_key)
    impostor = BrokerLink(other, claim, remote.link.telescope, remote.link.host, backoff=FAST)
    with pytest.raises(LinkRefusedError, match=r"this proxy is paired with telescope .*, not"):
        await asyncio.wait_for(impostor.run(), 10)
    assert impostor.state is LinkState.REFUSED
    # The real proxy kept its link and still answers browsers.
    assert remote.link.state is LinkState.ONLINE
    ws = await remote.owner.signaling(remote.telescope_id, remote.broker.ws_url)
    try:
        assert (await next_message(ws, "hello"))["type"] == "hello"
    finally:
        await ws.close()


async def test_a_cross_origin_page_can_neither_connect_nor_sign_in(remote: Remote) -> None:
    url = f"{remote.broker.ws_url}/api/telescopes/{remote.telescope_id}/signaling"
    evil = {"Origin": "https://evil.example"}
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with connect(f"{url}?token={remote.owner.token}", additional_headers=evil) as ws:
            await ws.recv()
    async with httpx.AsyncClient(base_url=remote.broker.url) as page:
        r = await page.post("/api/login", json={"name": "ada", "password": "x" * 12}, headers=evil)
        assert r.status_code == 403 and "own pages" in r.json()["detail"]
        r = await page.get("/api/me", headers={"Host": "evil.example"})
        assert r.status_code == 421


async def test_a_flood_of_connection_attempts_is_refused_and_others_still_connect(
    tmp_path: Path, simulator: Simulator
) -> None:
    async with remote_stack(tmp_path, simulator, connect_rate_per_min=5.0) as remote:
        broker, owner, telescope_id = remote.broker, remote.owner, remote.telescope_id
        codes = []
        for _ in range(8):
            ws = await owner.signaling(telescope_id, broker.ws_url)
            first = json.loads(await ws.recv())
            codes.append(first["type"] if first["type"] != "error" else first["problem"]["status"])
            await ws.close()
        assert codes[:5] == ["hello"] * 5 and codes[5:] == [429] * 3
        # Another account is not held back by the first one's flood.
        r = await owner.http.post(
            f"/api/telescopes/{telescope_id}/invitations", json={"role": "viewer"}
        )
        bob = await sign_up(broker, "bob")
        remote.people.append(bob)
        await bob.http.post("/api/invitations/accept", json={"code": r.json()["code"]})
        # From another address: the limits are per account and per address.
        ws = await connect(
            f"{broker.ws_url}/api/telescopes/{telescope_id}/signaling?token={bob.token}",
            local_addr=("127.0.0.2", 0),
        )
        assert (await next_message(ws, "hello"))["type"] == "hello"
        await ws.close()


async def test_a_revoked_member_loses_the_live_session_at_once(remote: Remote) -> None:
    r = await remote.owner.http.post(
        f"/api/telescopes/{remote.telescope_id}/invitations", json={"role": "operator"}
    )
    bob = await sign_up(remote.broker, "bob")
    remote.people.append(bob)
    await bob.http.post("/api/invitations/accept", json={"code": r.json()["code"]})
    ws = await bob.signaling(remote.telescope_id, remote.broker.ws_url)
    client = DcClient(remote.proxy.base_url)
    try:
        await connect_and_detach(ws, client)
        r = await remote.owner.http.delete(
            f"/api/telescopes/{remote.telescope_id}/members/{bob.account_id}"
        )
        assert r.status_code == 204
        deadline = time.monotonic() + 5
        while client.pc.connectionState not in ("closed", "failed"):
            assert time.monotonic() < deadline, "the revoked member's peer stayed open"
            await asyncio.sleep(0.05)
        r = await bob.http.post(f"/api/telescopes/{remote.telescope_id}/grant")
        assert r.status_code == 403
    finally:
        await client.close()
        await ws.close()
