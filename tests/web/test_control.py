"""The control lease over REST: two tabs of one browser (`Scopelink-Client`), contending."""

from __future__ import annotations

import asyncio

import httpx

from tests.web.conftest import RunningApp

T = "/api/telescopes/simulator"
ALICE = {"Scopelink-Client": "alice-tab-0001"}
BOB = {"Scopelink-Client": "bob-tab-000002"}


async def test_two_tabs_contend_for_control_and_hand_it_over(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    state = (await http.get(f"{T}/control", headers=ALICE)).json()
    assert state["holder"] is None and not state["yours"]
    taken = await http.post(f"{T}/control", json={"action": "take"}, headers=ALICE)
    assert taken.status_code == 200 and taken.json()["yours"] is True
    assert taken.json()["holder"] == {"name": None, "transport": "rest"}

    refused = await http.post(f"{T}/commands", json={"type": "park"}, headers=BOB)
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/not-in-control")
    assert refused.json()["outcome"] == "not_run"
    seen_by_bob = (await http.get(f"{T}/control", headers=BOB)).json()
    assert seen_by_bob["holder"] is not None and not seen_by_bob["yours"]
    assert "alice" not in str(seen_by_bob), "a holder's client id is never shown to others"
    stop = await http.post(f"{T}/commands", json={"type": "stop"}, headers=BOB)
    assert stop.status_code == 200, "anyone may stop"

    # Bob asks; the request waits for Alice's answer.
    asking = asyncio.create_task(http.post(f"{T}/control", json={"action": "request"}, headers=BOB))
    for _ in range(50):
        alice_sees = (await http.get(f"{T}/control", headers=ALICE)).json()
        if alice_sees["requested_by"] is not None:
            break
        await asyncio.sleep(0.05)
    assert alice_sees["requested_by"] == {"name": None, "transport": "rest"}
    granted = await http.post(f"{T}/control", json={"action": "grant"}, headers=ALICE)
    assert granted.status_code == 200 and granted.json()["yours"] is False
    answer = await asking
    assert answer.status_code == 200 and answer.json()["yours"] is True
    ok = await http.post(f"{T}/commands", json={"type": "set_gain", "gain": 70}, headers=BOB)
    assert ok.status_code == 200
    assert running.simulator.telescope.gain == 70
    released = await http.post(f"{T}/control", json={"action": "release"}, headers=BOB)
    assert released.json()["holder"] is None


async def test_bad_client_ids_and_viewers_are_refused(http: httpx.AsyncClient) -> None:
    bad = await http.get(f"{T}/control", headers={"Scopelink-Client": "no spaces!"})
    assert bad.status_code == 400
    nothing = await http.post(f"{T}/control", json={"action": "grant"}, headers=ALICE)
    assert nothing.status_code == 409
    wrong = await http.post(f"{T}/control", json={"action": "steal"}, headers=ALICE)
    assert wrong.status_code == 422
