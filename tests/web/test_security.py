"""No web page a user happens to open can move the telescope; tokens and roles hold."""

from __future__ import annotations

import httpx

from scopelink.settings import ServeSettings
from tests.web.conftest import RunningApp, serve, wait_connected

PARK = "/api/telescopes/simulator/park"


async def test_cross_origin_state_change_is_refused(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    r = await http.post(PARK, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert running.simulator.telescope.operations == {}, "nothing reached the telescope"


async def test_cross_site_fetch_without_origin_is_refused(http: httpx.AsyncClient) -> None:
    r = await http.post(PARK, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403


async def test_null_origin_is_refused(http: httpx.AsyncClient) -> None:
    r = await http.post(PARK, headers={"Origin": "null"})
    assert r.status_code == 403


async def test_same_origin_state_change_is_accepted(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    r = await http.post(
        "/api/telescopes/simulator/settings/gain",
        json={"gain": 90},
        headers={"Origin": running.base_url, "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200, r.text


async def test_unknown_host_header_is_refused_even_for_reads(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/telescopes", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 421


async def test_configured_origin_and_host_are_accepted() -> None:
    settings = ServeSettings(
        allowed_hosts=["scope.example"], allowed_origins=["https://ui.example"]
    )
    async with serve(settings) as app, httpx.AsyncClient(base_url=app.base_url) as http:
        await wait_connected(http)
        r = await http.get("/api/telescopes", headers={"Host": "scope.example"})
        assert r.status_code == 200
        r = await http.post(
            "/api/telescopes/simulator/settings/gain",
            json={"gain": 90},
            headers={"Origin": "https://ui.example"},
        )
        assert r.status_code == 200


async def test_tokens_and_roles() -> None:
    settings = ServeSettings(tokens={"op-secret": "operator", "view-secret": "viewer"})
    async with serve(settings) as app, httpx.AsyncClient(base_url=app.base_url) as http:
        assert (await http.get("/api/telescopes")).status_code == 401
        assert (await http.get("/api/session")).json() == {
            "role": "viewer",
            "token_required": True,
            "webrtc_default": True,
        }
        viewer = {"Authorization": "Bearer view-secret"}
        operator = {"Authorization": "Bearer op-secret"}
        async with httpx.AsyncClient(base_url=app.base_url, headers=operator) as op_http:
            await wait_connected(op_http)
        assert (await http.get("/api/telescopes", headers=viewer)).status_code == 200
        r = await http.post(PARK, headers=viewer)
        assert r.status_code == 403 and "viewers may watch" in r.json()["detail"]
        assert (
            await http.post(
                "/api/telescopes/simulator/settings/gain", json={"gain": 90}, headers=operator
            )
        ).status_code == 200
        r = await http.get("/api/telescopes", params={"token": "op-secret"})
        assert r.status_code == 200
        assert (
            await http.get("/api/telescopes", headers={"Authorization": "Bearer x"})
        ).status_code == 401
        assert (
            await http.post("/api/telescopes", json={"host": "10.0.0.9"}, headers=viewer)
        ).status_code == 403
