"""On the telescope's own network a browser reaches the proxy directly, without the broker:
the proxy announces its page by mDNS/DNS-SD, and a broker's grant, presented once to that
page, becomes a session there with the grant's role."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from scopelink.proxy.lan import SERVICE_TYPE, LanAdvertiser, lan_hostname
from tests.e2e import netns as netns_harness
from tests.e2e.netns import BrowserNetns
from tests.remote.conftest import Remote, sign_up


async def grant_for(remote: Remote, person_http: httpx.AsyncClient) -> str:
    r = await person_http.post(f"/api/telescopes/{remote.telescope_id}/grant")
    assert r.status_code == 200, r.text
    return str(r.json()["grant"])


async def test_a_grant_becomes_a_session_on_the_proxys_own_page_once(remote: Remote) -> None:
    async with httpx.AsyncClient(base_url=remote.proxy.base_url, timeout=20) as page:
        grant = await grant_for(remote, remote.owner.http)
        r = await page.post("/api/session/grant", json={"grant": grant})
        assert r.status_code == 200, r.text
        assert r.json()["role"] == "operator"
        assert "httponly" in r.headers["set-cookie"].lower()
        # The cookie now names the owner: commands run, and are audited with the name.
        r = await page.post(
            "/api/telescopes/simulator/commands", json={"type": "set_gain", "gain": 77}
        )
        assert r.status_code == 200, r.text
        audit = remote.proxy.app.state.commands.audit.recent
        assert audit[-1]["who"] == "ada" and audit[-1]["command"] == "set_gain"
        # The same grant again (another page, or a replay): refused with the reason.
        async with httpx.AsyncClient(base_url=remote.proxy.base_url) as other:
            r = await other.post("/api/session/grant", json={"grant": grant})
            assert r.status_code == 401 and "replayed" in r.json()["detail"]


async def test_a_viewers_lan_session_watches_but_cannot_command(remote: Remote) -> None:
    r = await remote.owner.http.post(
        f"/api/telescopes/{remote.telescope_id}/invitations", json={"role": "viewer"}
    )
    bob = await sign_up(remote.broker, "bob")
    remote.people.append(bob)
    await bob.http.post("/api/invitations/accept", json={"code": r.json()["code"]})
    async with httpx.AsyncClient(base_url=remote.proxy.base_url, timeout=20) as page:
        r = await page.post("/api/session/grant", json={"grant": await grant_for(remote, bob.http)})
        assert r.json()["role"] == "viewer"
        assert (await page.get("/api/telescopes/simulator")).status_code == 200
        r = await page.post("/api/telescopes/simulator/commands", json={"type": "park"})
        assert r.status_code == 403
        # Revoked: the LAN session ends with the role.
        r = await remote.owner.http.delete(
            f"/api/telescopes/{remote.telescope_id}/members/{bob.account_id}"
        )
        assert r.status_code == 204
        await asyncio.sleep(0.3)
        r = await page.get("/api/telescopes/simulator")
        assert r.status_code == 401, "the revoked viewer's LAN session should have ended"


async def test_serve_takes_no_grants(remote: Remote) -> None:
    from scopelink.settings import ServeSettings
    from scopelink.web.server import serving

    async with serving(ServeSettings(simulator=False)) as app:
        async with httpx.AsyncClient(base_url=app.base_url) as page:
            r = await page.post("/api/session/grant", json={"grant": "x"})
            assert r.status_code == 404 and "not a proxy" in r.json()["detail"]


BROWSE = """
import asyncio, json, sys
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

async def main():
    zc = AsyncZeroconf()
    found = asyncio.get_running_loop().create_future()
    def changed(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added and not found.done():
            found.set_result(name)
    browser = AsyncServiceBrowser(zc.zeroconf, [sys.argv[1]], handlers=[changed])
    name = await asyncio.wait_for(found, 10)
    info = AsyncServiceInfo(sys.argv[1], name)
    await info.async_request(zc.zeroconf, 3000)
    print(json.dumps({"name": name, "server": info.server, "port": info.port,
        "addresses": info.parsed_addresses(),
        "properties": {k.decode(): (v or b"").decode() for k, v in info.properties.items()}}))
    await browser.async_cancel()
    await zc.async_close()

asyncio.run(main())
"""


async def test_a_browser_on_the_same_network_finds_the_proxy_by_mdns(tmp_path: Path) -> None:
    why = netns_harness.available()
    if why:
        pytest.fail(f"{why}; the network tests need root")
    with BrowserNetns.create() as net:
        advertiser = LanAdvertiser("tel_1a2b3c4d5e6f", 8123, [net.root_v4])
        await advertiser.start()
        try:
            script = tmp_path / "browse.py"
            script.write_text(BROWSE)
            process = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                net.name,
                sys.executable,
                str(script),
                SERVICE_TYPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 20)
            assert process.returncode == 0, err.decode()
            seen = json.loads(out)
        finally:
            await advertiser.stop()
    assert seen["server"] == lan_hostname("tel_1a2b3c4d5e6f") + "."
    assert seen["port"] == 8123 and seen["addresses"] == [net.root_v4]
    assert seen["properties"]["telescope"] == "tel_1a2b3c4d5e6f"
    assert advertiser.url == "http://scopelink-1a2b3c4d.local:8123/"
